"""The input size a Qwen-VL model sees for an image, and its visual-token count, before any call.

The Qwen-VL processors resize every image once with ``smart_resize`` (transformers'
``transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize``, used here as is): both
sides are rounded to multiples of a *factor* (patch size × spatial merge size) keeping the aspect
ratio; when the rounded area is above ``max_pixels`` the image is scaled down and each side
floored to a multiple, when it is below ``min_pixels`` scaled up and each side ceiled. So the
result usually lies inside ``[min_pixels, max_pixels]`` but not always: in a narrow range (and
always when ``min_pixels == max_pixels``) the floor can land below ``min_pixels`` and the ceiling
above ``max_pixels``, and a side clamped to one factor (extreme aspect ratios) can overshoot
``max_pixels``. It refuses an image whose aspect ratio exceeds 200. The factor is a property of
the family:

=============  ======  ======================================================
family         factor  source
=============  ======  ======================================================
``qwen2_vl``   28      patch 14 × merge 2 (Qwen2-VL ``preprocessor_config``)
``qwen2_5_vl`` 28      patch 14 × merge 2 (Qwen2.5-VL ``preprocessor_config``)
``qwen3_vl``   32      patch 16 × merge 2 (Qwen3-VL ``preprocessor_config``)
=============  ======  ======================================================

One visual token stands for one ``factor × factor`` tile of the resized image, so an image
costs ``(width / factor) × (height / factor)`` tokens of the language model's sequence. Sizes
are ``(width, height)`` in pixels throughout this module (``smart_resize`` itself takes height
first).

**Served models** (:func:`served_input`). A server runs the same processor on whatever it
receives, so the model's input, and with it Qwen2.5-VL's pixel frame, is ``smart_resize`` of the
*sent* size under the server's settings. The client therefore sends a *fixed point*: a size
``S`` with ``smart_resize(S) == S`` (both sides multiples of the factor, area inside the range),
which the server keeps as is (also a server whose range contains the client's). It is found by
applying ``smart_resize`` again from the size a local processor would make, at most
:data:`FIXED_POINT_STEPS` times; with the released ranges the local size is one already, and in
narrow ranges one to three more passes reach one. When none is reached (the passes alternate
above and below the range, as they do for nearly every size when ``min_pixels == max_pixels``),
the client sends the local processor's size and the frame is the server's one further pass over
it: exact when the server's range equals the client's and it runs the processor once on what it
receives (vLLM), but the picture is resampled twice (client, then server). Such a sent size lies
outside the range, and SGLang's own first resize (factor 28, at least 3,136 pixels) changes one
below 3,136 pixels, possible when ``max_pixels`` ≤ 6,272: with SGLang the frame is exact for
every picture when ``min_pixels`` ≥ 3,136 and ``max_pixels`` > 6,272, or the range is
3,136–6,272 (measured in ``docs/scaling.md``; for Qwen3-VL only for kept sizes). The
alternative, sending the decoded picture at its own size so that only
the server resamples it, was rejected: the frame would then be known only for a server that runs
exactly this ``smart_resize`` once, and SGLang first resizes every image with its own copy of it
(different rounding, its own pixel limits) before the processor runs; a size that is already a
multiple of 28 whose area lies inside SGLang's limits passes that first resize unchanged.
The client logs the double resample (once per adapter) and refuses an image whose sent size has
an aspect ratio above 200 (:class:`ImageSizeError`), which a server would refuse (SGLang
also refuses Qwen3-VL sizes with a short side of 32-96 px and a ratio above 175, which the client
does not know to refuse: vLLM accepts them; ``docs/scaling.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

SizeWH = tuple[int, int]

FAMILY_FACTORS: dict[str, int] = {"qwen2_vl": 28, "qwen2_5_vl": 28, "qwen3_vl": 32}

MAX_ASPECT_RATIO = 200
"""``smart_resize`` refuses a size whose longer side is more than this many times the shorter
(transformers 4.57, ``image_processing_qwen2_vl.smart_resize``; SGLang's copy does the same)."""

FIXED_POINT_STEPS = 8
"""Further ``smart_resize`` passes tried in search of a fixed point (:func:`served_input`)."""


class ImageSizeError(ValueError):
    """An image cannot be sent to a served Qwen-VL model at a size its processor accepts (aspect
    ratio above :data:`MAX_ASPECT_RATIO`); the message names the sizes (the caller adds the
    image path)."""


@dataclass(frozen=True)
class ServedInput:
    """How one image reaches a served Qwen-VL model: ``sent_wh``, the (width, height) the client
    resizes the picture to; ``input_wh``, what the server's processor makes of it (the model
    input and Qwen2.5-VL's pixel frame)."""

    sent_wh: SizeWH
    input_wh: SizeWH

    @property
    def resampled_twice(self) -> bool:
        """True when the server resizes the sent picture again (no fixed point was found)."""
        return self.sent_wh != self.input_wh


def family_factor(family: str) -> int:
    """The resize factor of ``family``; ``ValueError`` naming the known families otherwise."""
    try:
        return FAMILY_FACTORS[family]
    except KeyError:
        known = ", ".join(sorted(FAMILY_FACTORS))
        raise ValueError(f"unknown Qwen-VL family {family!r} (known: {known})") from None


def model_input_size(size_wh: SizeWH, factor: int, min_pixels: int, max_pixels: int) -> SizeWH:
    """The resized ``(width, height)`` a Qwen-VL processor makes of an image of ``size_wh`` in
    one pass (not always inside ``[min_pixels, max_pixels]``: see the module docstring).

    Raises ``ValueError`` for a non-positive pixel range, and :class:`ImageSizeError` for a size
    whose aspect ratio exceeds :data:`MAX_ASPECT_RATIO` (``smart_resize`` refuses it).
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    if not 0 < min_pixels <= max_pixels:
        raise ValueError(f"need 0 < min_pixels <= max_pixels, got {min_pixels}, {max_pixels}")
    width, height = size_wh
    if _too_elongated(size_wh):
        raise ImageSizeError(
            f"{width}×{height} has aspect ratio {_ratio(size_wh):.1f}, above the "
            f"{MAX_ASPECT_RATIO} a Qwen-VL processor accepts"
        )
    h, w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return int(w), int(h)


def served_input(size_wh: SizeWH, factor: int, min_pixels: int, max_pixels: int) -> ServedInput:
    """The size to send an image of ``size_wh`` at, and the model input a server whose
    processor uses the same ``min_pixels``/``max_pixels`` makes of it (module docstring: a
    fixed point of ``smart_resize`` when one is reached, else the local size resized once more).

    Raises ``ValueError`` for a non-positive pixel range and :class:`ImageSizeError` when the
    image, or the size it would be sent at, has an aspect ratio above :data:`MAX_ASPECT_RATIO`.
    """
    local = model_input_size(size_wh, factor, min_pixels, max_pixels)
    if _too_elongated(local):
        raise ImageSizeError(
            f"{size_wh[0]}×{size_wh[1]} would be sent as {local[0]}×{local[1]} (sides rounded "
            f"to multiples of {factor}), aspect ratio {_ratio(local):.1f}, above the "
            f"{MAX_ASPECT_RATIO} a Qwen-VL server accepts"
        )
    server = model_input_size(local, factor, min_pixels, max_pixels)
    size, then = local, server
    for _ in range(FIXED_POINT_STEPS):
        if then == size:
            return ServedInput(sent_wh=size, input_wh=size)
        size = then
        try:
            then = model_input_size(size, factor, min_pixels, max_pixels)
        except ImageSizeError:  # the passes drifted beyond the aspect limit: no fixed point
            break
    else:
        if then == size:
            return ServedInput(sent_wh=size, input_wh=size)
    return ServedInput(sent_wh=local, input_wh=server)


def _ratio(size_wh: SizeWH) -> float:
    return max(size_wh) / min(size_wh)


def _too_elongated(size_wh: SizeWH) -> bool:
    """True when ``smart_resize`` refuses the size (aspect ratio above the limit)."""
    return max(size_wh) > MAX_ASPECT_RATIO * min(size_wh)


def visual_tokens(input_size_wh: SizeWH, factor: int) -> int:
    """Language-model tokens one resized image (``model_input_size``) takes."""
    width, height = input_size_wh
    return (width // factor) * (height // factor)


def resize_to(image: Image.Image, input_size_wh: SizeWH) -> Image.Image:
    """``image`` resized to ``input_size_wh`` (bicubic, as the Qwen-VL processors resize); the
    image itself when it already has that size."""
    if image.size == tuple(input_size_wh):
        return image
    return image.resize(tuple(input_size_wh), Image.Resampling.BICUBIC)

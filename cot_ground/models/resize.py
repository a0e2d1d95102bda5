"""The input size a Qwen-VL model sees for an image, and its visual-token count, before any call.

The Qwen-VL processors resize every image with ``smart_resize`` (transformers'
``transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize``, used here as is): both
sides become multiples of a *factor* (patch size × spatial merge size) and the area is brought
inside ``[min_pixels, max_pixels]`` keeping the aspect ratio. The factor is a property of the
family:

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

Resizing an image on the client to this size and sending it losslessly makes the size a server
sees known exactly: ``smart_resize`` of a size that is already a multiple of the factor inside
the pixel range is that size again, so a server configured with the same (or a wider)
``min_pixels``/``max_pixels`` does not resize it a second time.
"""

from __future__ import annotations

from PIL import Image

SizeWH = tuple[int, int]

FAMILY_FACTORS: dict[str, int] = {"qwen2_vl": 28, "qwen2_5_vl": 28, "qwen3_vl": 32}


def family_factor(family: str) -> int:
    """The resize factor of ``family``; ``ValueError`` naming the known families otherwise."""
    try:
        return FAMILY_FACTORS[family]
    except KeyError:
        known = ", ".join(sorted(FAMILY_FACTORS))
        raise ValueError(f"unknown Qwen-VL family {family!r} (known: {known})") from None


def model_input_size(size_wh: SizeWH, factor: int, min_pixels: int, max_pixels: int) -> SizeWH:
    """The resized ``(width, height)`` a Qwen-VL processor makes of an image of ``size_wh``.

    Raises ``ValueError`` for a non-positive pixel range, or (from ``smart_resize``) for an
    image whose aspect ratio exceeds 200 or whose side is below ``factor``.
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    if not 0 < min_pixels <= max_pixels:
        raise ValueError(f"need 0 < min_pixels <= max_pixels, got {min_pixels}, {max_pixels}")
    width, height = size_wh
    h, w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return int(w), int(h)


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

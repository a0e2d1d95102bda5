"""Step 2 of mode ``multi-image``: the Migician paper's multi-image CoT (``+mCoT``).

Source: arXiv 2501.05767v3, Section 7.1 and Table 5 (single-image CoT grounds the step-1
referring expression image by image; multi-image CoT has the MLLM ground it across all images)
and Table 10 with Appendix F (answer forms: ``Polling``, one query per image, against ``All``,
one query for every image's box; published for common object, multi-view, object tracking and
region locating).

Step 1 and the choice of the targeted image are those of ``paper`` mode (the per-task table,
the image the question designates, the first-image fallback). Step 2 sends *every* image and the
rendered ``prompts/multi-image/`` text to an end-to-end adapter
(:class:`~cot_ground.models.base.EndToEndGrounder`, e.g. ``qwen-vl-e2e`` or ``migician``), which
answers image + box:

* ``polling``: the prompt names the targeted image; the box is the first one of the answer and
  its image is the one the answer names, else the targeted one (``image_source``).
* ``all``: the prompt asks for the target in every image; the answer's boxes are attributed to
  the image named before each (:func:`boxes_by_image`) and the targeted image's box is taken.
  Boxes after no image mention are counted, never guessed. Tasks outside
  :data:`ALL_FORM_TASKS` stay ``polling`` (their per-item target is not one object seen in
  several images); the trace records the form used.
"""

from __future__ import annotations

from typing import Any

from cot_ground.boxes import Box, Frame
from cot_ground.graph.calls import call_one, model_step, step
from cot_ground.graph.state import Grounding, Selection
from cot_ground.mentions import find_mentions
from cot_ground.models.base import ChatRequest, EndToEndGrounder
from cot_ground.parsing import answer_text, parse_box
from cot_ground.prompts import PromptError, RenderedPrompt, load_prompts
from cot_ground.records import Candidate, ErrorCategory, ErrorInfo, Example, ParseStatus
from cot_ground.scoring import apply_calibration
from cot_ground.tasks import ALL_FORM_TASKS

PROMPT_KIND = "multi-image"
PROMPT_VARIANT = "default"
# ALL_FORM_TASKS (Task.all_form): the target is one object seen in several images. Table 10 also
# lists region locating, whose ``all`` form asks for every region picture at once, which needs
# one description per region picture; step 1 describes one.


def answer_form_for(task: str, configured: str) -> str:
    """The answer form an example of ``task`` is run with under the configured form."""
    return configured if configured == "polling" or task in ALL_FORM_TASKS else "polling"


def check_grounder(grounder: Any, answer_form: str) -> None:
    """Raise ``TypeError`` unless ``grounder`` is an end-to-end adapter (``predict``), and
    ``ValueError`` for the ``all`` form with an adapter whose ``settings`` name no fixed answer
    frame (``frame`` missing or ``pixels``: boxes could not be placed without each image's
    size)."""
    name = getattr(grounder, "name", type(grounder).__name__)
    if not isinstance(grounder, EndToEndGrounder):
        raise TypeError(
            f"mode 'multi-image' needs a multi-image grounder with predict(list) (an end-to-end "
            f"adapter such as qwen-vl-e2e or migician); got {name!r}"
        )
    frame = dict(getattr(grounder, "settings", {})).get("frame")
    if answer_form == "all" and (frame is None or Frame(frame) is Frame.PIXELS):
        raise ValueError(
            f"answer_form 'all' needs a grounder answering in a fixed frame (qwen1000, "
            f"qwen3_1000, unit); {name!r} has frame {frame!r}"
        )


def render_prompt(
    task: str, form: str, selection: Selection, prompts_dir: str | None
) -> RenderedPrompt:
    """The step-2 text for ``form``; raises :class:`PromptError` for a bad prompt file."""
    prompts = load_prompts(PROMPT_KIND, PROMPT_VARIANT, task, prompts_dir)
    variables: dict[str, Any] = {
        "image_number": selection.step2_image + 1,
        "phrase": selection.phrase,
    }
    step2 = selection.step2_prompt
    variables["step2"] = step2 if step2 is not None else prompts.render("request", variables).text
    return prompts.render(form, variables)


def boxes_by_image(
    text: str, frame: Frame | str, unit_floats: str = "reject"
) -> tuple[dict[int, Box], int]:
    """({0-based image: first box stated for it}, number of boxes after no image mention).

    ``text`` is split at each image mention (:func:`cot_ground.mentions.find_mentions`); the
    boxes between one mention and the next belong to that image, read in ``frame`` (an integer
    or unit frame; raises ``ValueError`` for ``pixels``). A later box for the same image is
    ignored (the first answer counts, as everywhere in cot-ground)."""
    if Frame(frame) is Frame.PIXELS:
        raise ValueError("boxes_by_image: the pixels frame needs each image's size")
    body = answer_text(text)
    mentions = find_mentions(body)
    cuts = [m.start for m in mentions] + [len(body)]
    unattributed = len(parse_box(body[: cuts[0]], frame, unit_floats=unit_floats).boxes)
    found: dict[int, Box] = {}
    for mention, end in zip(mentions, cuts[1:], strict=True):
        parsed = parse_box(body[mention.start : end], frame, unit_floats=unit_floats)
        if parsed.box is not None:
            found.setdefault(mention.index, parsed.box)
    return found, unattributed


def ground_all_images(
    ex: Example,
    selection: Selection,
    grounder: EndToEndGrounder,
    configured_form: str,
    prompts_dir: str | None,
    node: str,
) -> dict[str, Any]:
    """The ``ground`` update of one example: the adapter call, the ``ground`` state entry (same
    keys as single-image step 2) and its trace step."""
    form = answer_form_for(ex.task, configured_form)
    target = selection.step2_image
    info: dict[str, Any] = {"answer_form": form, "targeted_image": target}
    try:
        rendered = render_prompt(ex.task, form, selection, prompts_dir)
    except PromptError as exc:
        error = ErrorInfo(category=ErrorCategory.CONFIG, message=str(exc), node=node)
        return {"error": error.model_dump(mode="json"), "trace": [step(node, error=error)]}
    request = ChatRequest(images=list(ex.images), prompt=rendered.text)
    result, error, wall = call_one(grounder.predict, request, adapter=grounder.name, node=node)
    shown_request = request.model_dump(mode="json", exclude_defaults=True)
    box: Box | None = None
    image: int | None = target
    status = ParseStatus.NO_BOX
    if result is not None:
        status = result.status
        if form == "polling":
            box = result.box
            image = result.image_index if result.image_index is not None else target
            info["image_source"] = "answer" if result.image_index is not None else "prompt"
        else:
            box, status = _targeted_box(result.raw_text, target, grounder.settings, info)
    candidates = [Candidate(box=box)] if box is not None else []
    update: dict[str, Any] = {"tried_images": [image] if image is not None else []}
    if error is not None:
        update["error"] = error.model_dump(mode="json")
    update["ground"] = Grounding(
        image_index=image,
        grounder=grounder.name,
        candidates=candidates,
        raw_text=result.raw_text if result else None,
        status=status,
        node=node,
    ).dump()
    update["trace"] = [
        model_step(
            node,
            grounder,
            result,
            wall_s=wall,
            error=error,
            prompt=rendered.text,
            prompt_hash=rendered.hash,
            images=list(ex.images),
            parsed={
                **info,
                "grounder": grounder.name,
                "request": shown_request,
                "status": status.value,
                "template": rendered.template,
                "prompt_files": rendered.source,
            },
            candidates=candidates,
        )
    ]
    return update


def _targeted_box(
    raw: str, target: int, settings: dict[str, Any], info: dict[str, Any]
) -> tuple[Box | None, ParseStatus]:
    """The ``all`` form: the box the answer states for image ``target``, read in the adapter's
    ``frame`` (checked by :func:`check_grounder`) with its ``unit_floats`` and calibrated as it
    calibrates its own boxes; the per-image reading goes into ``info``."""
    unit_floats = settings.get("unit_floats") or "reject"
    found, unattributed = boxes_by_image(raw, settings["frame"], unit_floats)
    info["boxes_by_image"] = {str(i + 1): b.to_list() for i, b in sorted(found.items())}
    info["unattributed_boxes"] = unattributed
    box = found.get(target)
    if box is None:
        return None, ParseStatus.NO_BOX
    if settings.get("calibration"):
        box = apply_calibration(box, settings["calibration"])
    return box, ParseStatus.OK

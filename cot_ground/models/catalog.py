"""What every registered adapter is: the table ``docs/models.md`` opens with and that
``cot-ground models`` prints (names and roles from :data:`cot_ground.models.registry.ADAPTERS`,
the rest from :data:`ADAPTER_INFO`; an adapter registered without an entry shows "—")."""

from __future__ import annotations

from dataclasses import dataclass

from cot_ground.models.registry import ADAPTERS


@dataclass(frozen=True)
class AdapterInfo:
    """One row of the model table (short, plain text; Markdown code spans allowed)."""

    checkpoints: str
    frame: str
    batching: str
    loads: str
    tested_here: str
    needs_real_weights: str


_FOLDER_OR_HUB = "local folder or Hub id"
_LEFT_PADDED = "left-padded, greedy (`batch_size` 4)"
_QWEN = "Qwen2-VL, Qwen2.5-VL, Qwen3-VL (Instruct)"
_QWEN_FRAMES = "qwen2_vl `[0,1000)`; qwen2_5_vl pixels of the resized input; qwen3_vl `[0,1000]`"
_CHAT = "any `AutoModelForImageTextToText` with a multi-image chat template"
_NO_WEIGHTS = "none (no weights)"
_QUALITY = "answer quality (scores)"

ADAPTER_INFO: dict[str, AdapterInfo] = {
    "qwen-vl-reasoner": AdapterInfo(
        _QWEN,
        "— (image choice + description)",
        _LEFT_PADDED,
        _FOLDER_OR_HUB,
        "tiny Qwen2-VL / Qwen2.5-VL / Qwen3-VL",
        _QUALITY,
    ),
    "qwen-vl-grounder": AdapterInfo(
        _QWEN,
        _QWEN_FRAMES,
        _LEFT_PADDED,
        _FOLDER_OR_HUB,
        "tiny Qwen2-VL / Qwen2.5-VL / Qwen3-VL",
        _QUALITY,
    ),
    "qwen-vl-e2e": AdapterInfo(
        _QWEN,
        _QWEN_FRAMES,
        _LEFT_PADDED,
        _FOLDER_OR_HUB,
        "tiny Qwen2-VL / Qwen2.5-VL / Qwen3-VL",
        _QUALITY,
    ),
    "migician": AdapterInfo(
        "Migician (Qwen2-VL-7B fine-tune)",
        "`[0,1000)` (qwen1000)",
        _LEFT_PADDED,
        _FOLDER_OR_HUB,
        "tiny Qwen2-VL",
        "the published 63.82 (paper Table 1)",
    ),
    "gdino-hf": AdapterInfo(
        "`IDEA-Research/grounding-dino-tiny` / `-base`",
        "unit (normalized)",
        "same pre-processed shape (or padded)",
        _FOLDER_OR_HUB,
        "tiny GroundingDino",
        _QUALITY,
    ),
    "gdino-py": AdapterInfo(
        "`groundingdino_swint_ogc.pth` / swinb",
        "unit (normalized)",
        "one request per pass",
        "checkpoint file + config + local BERT",
        "tiny groundingdino-py",
        _QUALITY,
    ),
    "openai-reasoner": AdapterInfo(
        "any model behind an OpenAI-compatible server",
        "— (image choice + description)",
        "concurrent requests (`concurrency` 4)",
        "server (`base_url`)",
        "local HTTP test server",
        "a served model",
    ),
    "openai-e2e": AdapterInfo(
        "any model behind an OpenAI-compatible server",
        "option `frame`",
        "concurrent requests (`concurrency` 4)",
        "server (`base_url`)",
        "local HTTP test server",
        "a served model",
    ),
    "rule-reasoner": AdapterInfo(
        "none: target image read from the question",
        "—",
        "per request",
        "none",
        "fully",
        _NO_WEIGHTS,
    ),
    "template-grounder": AdapterInfo(
        "none: multi-scale NCC",
        "pixels → unit",
        "per request",
        "none",
        "fully",
        _NO_WEIGHTS,
    ),
    "diff-grounder": AdapterInfo(
        "none: aligned difference",
        "pixels → unit",
        "per request",
        "none",
        "fully",
        _NO_WEIGHTS,
    ),
    "classical-grounder": AdapterInfo(
        "none: one classical grounder per task",
        "pixels → unit",
        "per request",
        "none",
        "fully",
        _NO_WEIGHTS,
    ),
    "keypoint-grounder": AdapterInfo(
        "none: SIFT + RANSAC",
        "pixels → unit",
        "per request",
        "none",
        "fully",
        _NO_WEIGHTS,
    ),
    "hf-chat-reasoner": AdapterInfo(
        _CHAT + " (InternVL-hf, LLaVA-OneVision, Idefics3, SmolVLM, Gemma 3...)",
        "— (image choice + description)",
        _LEFT_PADDED,
        _FOLDER_OR_HUB,
        "tiny InternVL, LLaVA-OneVision, Idefics3",
        _QUALITY,
    ),
    "hf-chat-grounder": AdapterInfo(
        _CHAT + " of a family in the box-syntax table (InternVL), and PaliGemma",
        "per family: InternVL `<box>[[x1,y1,x2,y2]]</box>` `[0,1000]`; PaliGemma "
        "`<locYYYY>` y first, 1024 grid; others refused",
        _LEFT_PADDED,
        _FOLDER_OR_HUB,
        "tiny InternVL, PaliGemma (box path by constrained decoding)",
        _QUALITY,
    ),
    "hf-chat-e2e": AdapterInfo(
        _CHAT + " of a family in the box-syntax table (InternVL)",
        "per family: InternVL `<box>[[x1,y1,x2,y2]]</box>` `[0,1000]`; others refused",
        _LEFT_PADDED,
        _FOLDER_OR_HUB,
        "tiny InternVL (box path by constrained decoding)",
        _QUALITY,
    ),
    "mm-gdino-hf": AdapterInfo(
        "MM-GroundingDINO and LLMDet (`mm-grounding-dino` checkpoints)",
        "unit (normalized)",
        "same pre-processed shape (or padded)",
        _FOLDER_OR_HUB,
        "tiny MM-GroundingDINO",
        _QUALITY,
    ),
    "owlv2": AdapterInfo(
        "OWLv2 (`google/owlv2-base-patch16-ensemble`...)",
        "fractions of the padded square → unit, clipped",
        "any sizes together (`batch_size` 4)",
        _FOLDER_OR_HUB,
        "tiny OWLv2",
        _QUALITY,
    ),
    "florence2": AdapterInfo(
        "Florence-2 in the transformers layout (`model_type` florence2)",
        "`<loc_0>`..`<loc_999>` bins, x first, bin centre → unit",
        "greedy (`batch_size` 4)",
        _FOLDER_OR_HUB,
        "tiny Florence-2 (box path by constrained decoding)",
        _QUALITY,
    ),
}

COLUMNS = (
    ("name", "adapter"),
    ("role", "role"),
    ("checkpoints", "checkpoints"),
    ("frame", "answer frame"),
    ("batching", "batching"),
    ("loads", "loads from"),
    ("tested_here", "tested here"),
    ("needs_real_weights", "needs real weights"),
)

_ROLE_WORDS = {
    "reasoner": "reasoner (step 1)",
    "grounder": "grounder (step 2)",
    "e2e": "end-to-end",
}


def model_table() -> list[dict[str, str]]:
    """One row per registered adapter, in registry order (keys: :data:`COLUMNS` fields)."""
    rows = []
    for name, (role, _) in ADAPTERS.items():
        info = ADAPTER_INFO.get(name)
        row = {"name": f"`{name}`", "role": _ROLE_WORDS.get(role, role)}
        for field, _title in COLUMNS[2:]:
            row[field] = getattr(info, field) if info else "—"
        rows.append(row)
    return rows


def markdown_table() -> str:
    """:func:`model_table` as a Markdown table (what ``docs/models.md`` opens with)."""
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in model_table():
        lines.append("| " + " | ".join(row[field] for field, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"

"""Parts shared by the tiny random-weight model builders: the finished-folder marker and the
sizes of the tiny text, vision, BERT and Swin configs.

The sizes are the smallest the architectures accept while keeping their real layout; changing
one changes every tiny model built from it (and the demo's ``tiny_*`` rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MARKER = ".complete"
"""File written last into a finished model folder; a folder without it is built again."""

TINY_TEXT: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
}
"""Decoder text model (Qwen2, Llama): 2 layers, hidden 64, grouped-query attention 4/2."""

TINY_VISION: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}
"""ViT-style vision tower (SigLIP, CLIP): 32 px images, patch 8 (16 patches), one layer."""

TINY_BERT: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
}
"""BERT sizes, shared by the standalone BERT and the GroundingDino text encoders."""

TINY_SWIN: dict[str, Any] = {
    "embed_dim": 16,
    "depths": [1, 1, 1, 1],
    "num_heads": [1, 1, 2, 2],
    "window_size": 4,
}
"""Swin backbone of the GroundingDino detectors: embed 16, one block per stage, window 4."""

TINY_GDINO: dict[str, Any] = {
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 2,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "num_queries": 20,
    "num_feature_levels": 4,
    "encoder_n_points": 2,
    "decoder_n_points": 2,
}
"""GroundingDino transformer: d_model 32, one encoder and two decoder layers, 20 queries."""


def done(folder: Path) -> bool:
    """Whether ``folder`` holds a finished model (its :data:`MARKER` is there)."""
    return (folder / MARKER).is_file()


def finish(folder: Path) -> Path:
    """Mark ``folder`` finished; returns it."""
    (folder / MARKER).write_text("ok\n")
    return folder


def text_config(tokenizer: Any, eos: str, **extra: Any) -> dict[str, Any]:
    """:data:`TINY_TEXT` with the tokenizer's vocabulary size, ``eos`` token id, pad id and no
    BOS; ``extra`` keys are added or replace these."""
    return {
        "vocab_size": len(tokenizer),
        **TINY_TEXT,
        "eos_token_id": tokenizer.convert_tokens_to_ids(eos),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": None,
        **extra,
    }


def tiny_swin() -> Any:
    """The tiny Swin backbone (:data:`TINY_SWIN`) with the last three stages out."""
    from transformers import SwinConfig

    return SwinConfig(**TINY_SWIN, out_features=["stage2", "stage3", "stage4"])

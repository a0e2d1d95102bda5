"""Builders for tiny random-weight models (tests, the offline demo and benchmarks)."""

from cot_ground.testing.tiny_models import (
    QWEN_FAMILIES,
    GdinoPyFiles,
    build_all,
    build_tiny_bert,
    build_tiny_gdino_hf,
    build_tiny_gdino_py,
    build_tiny_qwen_tokenizer,
    build_tiny_qwen_vl,
)

__all__ = [
    "QWEN_FAMILIES",
    "GdinoPyFiles",
    "build_all",
    "build_tiny_bert",
    "build_tiny_gdino_hf",
    "build_tiny_gdino_py",
    "build_tiny_qwen_tokenizer",
    "build_tiny_qwen_vl",
]

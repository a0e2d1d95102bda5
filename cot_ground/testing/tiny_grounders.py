"""Tiny random-weight open-vocabulary grounders (MM-GroundingDINO, OWLv2, Florence-2), saved
like real checkpoints so the ``mm-gdino-hf``, ``owlv2`` and ``florence2`` adapters load them
through the user's path.

* MM-GroundingDINO: the tiny Swin + tiny BERT of :func:`~cot_ground.testing.build_tiny_gdino_hf`
  (BERT's special-token ids kept), ``MMGroundingDinoForObjectDetection``.
* OWLv2: a 32 px ViT (patch 8) and a CLIP text tower; its CLIP BPE vocabulary is the 256 byte
  characters (with and without ``</w>``) then ``<|startoftext|>`` and ``<|endoftext|>`` as the
  highest id (text pooling takes the argmax id); ``model_max_length`` 16 like the real one.
* Florence-2: a DaViT vision tower on 64 px images and a one-layer BART; its byte-level
  vocabulary has ``<loc_0>`` ... ``<loc_999>`` as added tokens and ``<image>`` as the image token.

Builders return at once when the folder holds a finished build (``.complete``). Outputs are
random: only the plumbing is meaningful.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from cot_ground.testing.tiny_models import save_tiny_gdino
from cot_ground.testing.tiny_parts import TINY_VISION, done, finish

GROUNDER_FAMILIES = ("mm_gdino", "owlv2", "florence2")


def _byte_chars() -> list[str]:
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    return list(bytes_to_unicode().values())


def build_tiny_mm_gdino(folder: str | Path, seed: int = 0) -> Path:
    """A tiny ``MMGroundingDinoForObjectDetection`` (tiny Swin, tiny BERT) with its processor."""
    from transformers import MMGroundingDinoConfig, MMGroundingDinoForObjectDetection

    return save_tiny_gdino(
        folder, seed, MMGroundingDinoConfig, MMGroundingDinoForObjectDetection, max_text_len=24
    )


def _clip_tokenizer(folder: Path) -> Any:
    from transformers import CLIPTokenizer

    chars = _byte_chars()
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        vocab_file=str(folder / "vocab.json"),
        merges_file=str(folder / "merges.txt"),
        model_max_length=16,
        pad_token="!",
    )


def build_tiny_owlv2(folder: str | Path, seed: int = 0) -> Path:
    """A tiny ``Owlv2ForObjectDetection`` (32 px, patch 8: 16 box proposals) + processor."""
    import torch
    from transformers import (
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    folder = Path(folder)
    if done(folder):
        return folder
    with tempfile.TemporaryDirectory() as tmp:  # vocabulary files, read once
        tokenizer = _clip_tokenizer(Path(tmp))
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 16,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|startoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    }
    config = Owlv2Config(text_config=text, vision_config=TINY_VISION, projection_dim=32)
    torch.manual_seed(seed)
    Owlv2ForObjectDetection(config).save_pretrained(folder)
    image_processor = Owlv2ImageProcessor(size={"height": 32, "width": 32})
    Owlv2Processor(image_processor, tokenizer).save_pretrained(folder)
    return finish(folder)


def _bart_tokenizer(folder: Path) -> Any:
    from transformers import BartTokenizerFast

    chars = _byte_chars()
    vocab = ["<s>", "<pad>", "</s>", "<unk>", *chars, "<mask>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = BartTokenizerFast(
        vocab_file=str(folder / "vocab.json"),
        merges_file=str(folder / "merges.txt"),
        extra_special_tokens={"image_token": "<image>"},
    )
    tokenizer.add_tokens([f"<loc_{i}>" for i in range(1000)])
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return tokenizer


# what Florence2Processor.post_process_generation needs to parse phrase grounding
_FLORENCE2_POST_PROCESSOR = {
    "phrase_grounding": {"banned_grounding_tokens": ["the image"]},
    "pure_text": {},
}


def build_tiny_florence2(folder: str | Path, seed: int = 0) -> Path:
    """A tiny ``Florence2ForConditionalGeneration`` (DaViT at 64 px, one-layer BART)."""
    import torch
    from transformers import (
        AutoModelForImageTextToText,
        BartConfig,
        CLIPImageProcessor,
        Florence2Config,
        Florence2Processor,
        GenerationConfig,
    )

    folder = Path(folder)
    if done(folder):
        return folder
    with tempfile.TemporaryDirectory() as tmp:  # vocabulary files, read once
        tokenizer = _bart_tokenizer(Path(tmp))
    text = BartConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
    )
    vision = {
        "depths": [1, 1, 1, 1],
        "embed_dim": [8, 16, 32, 32],
        "num_heads": [1, 1, 2, 2],
        "num_groups": [1, 1, 2, 2],
        "window_size": 2,
        "projection_dim": 32,
        "max_position_embeddings": 8,
        "max_temporal_embeddings": 4,
    }
    config = Florence2Config(
        text_config=text.to_dict(),
        vision_config=vision,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        do_sample=False,
        num_beams=1,
    )
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessor(
        size={"height": 64, "width": 64},
        crop_size={"height": 64, "width": 64},
        do_center_crop=False,
        image_seq_length=5,
    )
    processor = Florence2Processor(
        image_processor, tokenizer, post_processor_config=_FLORENCE2_POST_PROCESSOR
    )
    processor.save_pretrained(folder)
    return finish(folder)


BUILDERS = {
    "mm_gdino": build_tiny_mm_gdino,
    "owlv2": build_tiny_owlv2,
    "florence2": build_tiny_florence2,
}


def build_tiny_grounder(folder: str | Path, family: str, seed: int = 0) -> Path:
    """Save a tiny random ``family`` (one of :data:`GROUNDER_FAMILIES`) grounder to ``folder``."""
    if family not in BUILDERS:
        raise ValueError(f"unknown grounder family {family!r}; expected one of {GROUNDER_FAMILIES}")
    return BUILDERS[family](folder, seed)

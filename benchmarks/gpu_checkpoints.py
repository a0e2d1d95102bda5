"""Random-weight checkpoints with the exact shapes of Qwen2-VL-7B-Instruct and GroundingDINO.

Written out from configs here (no downloads): Qwen2-VL-7B-Instruct (saved in bf16) and
GroundingDINO tiny (Swin-T) or base (Swin-B 384) with a BERT-base text encoder, so every call
costs what the real checkpoint costs; ``smoke=True`` shrinks every shape (CPU, float32) to check
the code. The Qwen tokenizer has the real vocabulary size and special-token ids
(151643-151656); its other entries are four-letter pseudo-words, so every generated token
decodes to a distinct word and an identical-output check is meaningful. Each builder returns at
once when its folder holds a finished build (a ``.complete`` marker).
"""

from __future__ import annotations

import itertools
import string
from pathlib import Path
from typing import Any

from benchmarks.workloads import fix_generation_length
from cot_ground.testing.tiny_parts import TINY_BERT, TINY_GDINO, TINY_SWIN, done, finish

QWEN_VOCAB = 152064
QWEN_SPECIAL_FIRST_ID = 151643  # <|endoftext|>; the rest of the special tokens follow in order
BERT_VOCAB = 30522

# Qwen2-VL-7B-Instruct config.json (text and vision towers), written out by hand.
QWEN2_VL_7B_TEXT = {
    "vocab_size": QWEN_VOCAB,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "use_sliding_window": False,
    "sliding_window": 32768,
    "max_window_layers": 28,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "pad_token_id": 151643,
}
QWEN2_VL_7B_VISION = {
    "depth": 32,
    "embed_dim": 1280,
    "hidden_size": 3584,
    "mlp_ratio": 4,
    "num_heads": 16,
    "in_chans": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}
QWEN_SMOKE_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_window_layers": 2,
    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
}
QWEN_SMOKE_VISION = {"depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2}

# Swin backbones of grounding-dino-tiny (Swin-T 224) and grounding-dino-base (Swin-B 384).
SWIN = {
    "tiny": {
        "embed_dim": 96,
        "depths": [2, 2, 6, 2],
        "num_heads": [3, 6, 12, 24],
        "window_size": 7,
    },
    "base": {
        "embed_dim": 128,
        "depths": [2, 2, 18, 2],
        "num_heads": [4, 8, 16, 32],
        "window_size": 12,
        "image_size": 384,
    },
    "smoke": TINY_SWIN,
}


def _pseudo_words() -> Any:
    """Four-letter lower-case words, ``aaaa``, ``aaab``, ... (distinct and space-free)."""
    return ("".join(t) for t in itertools.product(string.ascii_lowercase, repeat=4))


def build_qwen_tokenizer(folder: Path) -> Any:
    """A word-level tokenizer with Qwen2-VL's vocabulary size and special-token ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    from cot_ground.testing.tiny_models import QWEN_CHAT_TEMPLATE, QWEN_SPECIAL_TOKENS

    words = _pseudo_words()
    vocab: dict[str, int] = {"<unk>": 0}
    for i in range(1, QWEN_VOCAB):
        special = i - QWEN_SPECIAL_FIRST_ID
        vocab[QWEN_SPECIAL_TOKENS[special] if 0 <= special < 14 else next(words)] = i
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = Qwen2TokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        bos_token=None,
        additional_special_tokens=QWEN_SPECIAL_TOKENS[1:],
    )
    fast.chat_template = QWEN_CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def build_qwen(folder: Path, device: str, smoke: bool, new_tokens: int) -> Path:
    """Save a random-weight Qwen2-VL-7B-shaped checkpoint (config, weights, processor); a
    finished build is only given ``new_tokens`` (nothing is imported or loaded then)."""
    if done(folder):
        fix_generation_length(folder, new_tokens)
        return folder
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForImageTextToText,
        GenerationConfig,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    from cot_ground.testing.tiny_models import QWEN_CHAT_TEMPLATE

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_qwen_tokenizer(folder)
    text = {**QWEN2_VL_7B_TEXT, **(QWEN_SMOKE_TEXT if smoke else {})}
    vision = {**QWEN2_VL_7B_VISION, **(QWEN_SMOKE_VISION if smoke else {})}
    config = AutoConfig.for_model(
        "qwen2_vl",
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=False,
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )
    torch.manual_seed(0)
    dtype = torch.float32 if smoke else torch.bfloat16
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, torch_dtype=dtype)
    model.generation_config = GenerationConfig(
        eos_token_id=text["eos_token_id"], pad_token_id=text["pad_token_id"], do_sample=False
    )
    model.save_pretrained(folder)
    del model
    image = Qwen2VLImageProcessor(patch_size=14, merge_size=2, temporal_patch_size=2)
    video = Qwen2VLVideoProcessor(patch_size=14, merge_size=2)
    Qwen2VLProcessor(image, tokenizer, video, chat_template=QWEN_CHAT_TEMPLATE).save_pretrained(
        folder
    )
    finish(folder)
    fix_generation_length(folder, new_tokens)
    return folder


def build_gdino(folder: Path, size: str, device: str, smoke: bool) -> Path:
    """Save a random-weight GroundingDINO (Swin-T or Swin-B, BERT-base text) with processor (a
    finished build is returned at once, nothing imported)."""
    if done(folder):
        return folder
    import torch
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    from cot_ground.testing.tiny_models import bert_vocab

    folder.mkdir(parents=True, exist_ok=True)
    # BERT's special ids (101, 102, 1012, 1029) where GroundingDINO wants them
    vocab = bert_vocab()
    vocab += [f"[filler{i}]" for i in range(BERT_VOCAB - len(vocab))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    backbone = SwinConfig(
        **SWIN["smoke" if smoke else size], out_features=["stage2", "stage3", "stage4"]
    )
    text = BertConfig(vocab_size=BERT_VOCAB, **(TINY_BERT if smoke else {}))
    config = GroundingDinoConfig(
        backbone_config=backbone, text_config=text, **(TINY_GDINO if smoke else {})
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = GroundingDinoForObjectDetection(config)
    model.save_pretrained(folder)
    del model
    image_processor = GroundingDinoImageProcessor(
        size={"shortest_edge": 96, "longest_edge": 160} if smoke else None
    )
    GroundingDinoProcessor(image_processor, tokenizer).save_pretrained(folder)
    return finish(folder)

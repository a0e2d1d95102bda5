"""Tiny random-weight multi-image chat models (InternVL, LLaVA-OneVision, Idefics3) and a tiny
PaliGemma (a prompt model with location tokens), saved
like real checkpoints so :mod:`cot_ground.models.hf_chat` loads them through the user's path.

Each family gets a byte-level BPE tokenizer trained here on a few sentences, with the family's
special tokens and a chat template that lays out a user turn the way the real checkpoint's
template does (every image placeholder in order, then the text). Model sizes are shrunk to one
or two layers; the image-token counts match the vision features exactly (InternVL: 4 tokens for
a 32 px image with patch 8 and downsample 0.5). Builders return at once when the folder holds a
finished build (``.complete``). Outputs are random: only the plumbing is meaningful.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cot_ground.testing.tiny_parts import TINY_VISION, done, finish, text_config

CHAT_FAMILIES = ("internvl", "llava_onevision", "idefics3")
# families built here that take a raw prompt rather than a chat (grounder only)
PROMPT_FAMILIES = ("paligemma",)


_CORPUS = [
    "Which image contains the red car? It is in the second image.",
    "The target is the person on the left holding an umbrella.",
    '{"image": 2, "description": "the dog next to the bench"}',
    "<ref>the cat</ref><box>[[120, 45, 380, 290]]</box> in image 1",
    "Locate the object in the picture and output its bounding box coordinates.",
    "first second third fourth fifth sixth image picture photo view difference",
    "0 1 2 3 4 5 6 7 8 9 10 100 250 500 750 999 1000 User: Assistant:",
]

# Chat layouts (one user turn: every image placeholder in order, then the text).
_IM_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '__IMAGE__' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
INTERNVL_CHAT_TEMPLATE = _IM_TEMPLATE.replace("__IMAGE__", "<IMG_CONTEXT>\\n")
LLAVA_OV_CHAT_TEMPLATE = _IM_TEMPLATE.replace("__IMAGE__", "<image>\\n")
IDEFICS3_CHAT_TEMPLATE = (
    "<|begin_of_text|>"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}"
    "{% else %}{{ ':' }}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<end_of_utterance>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

_IM_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
INTERNVL_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
_IDEFICS3_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *[f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)],
]


def train_bpe(special_tokens: list[str], vocab_size: int = 400) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on a few sentences, with
    ``special_tokens`` at the first ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=special_tokens,
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok


def _fast_tokenizer(special: list[str], eos: str, pad: str, template: str, **kw: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(special),
        eos_token=eos,
        pad_token=pad,
        additional_special_tokens=[t for t in special if t not in (eos, pad)],
        model_input_names=["input_ids", "attention_mask"],
        **kw,
    )
    fast.chat_template = template
    return fast


def _save(model: Any, processor: Any, folder: Path, eos_id: int, pad_id: int) -> Path:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        eos_token_id=eos_id, pad_token_id=pad_id, do_sample=False
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return finish(folder)


def build_tiny_internvl(folder: str | Path, seed: int = 0) -> Path:
    """A tiny InternVL (-hf layout: ``InternVLForConditionalGeneration``): 32 px tiles, patch 8,
    downsample 0.5 → 4 image tokens per tile, one tile per image, Qwen2 text model."""
    import torch
    from transformers import (
        AutoModelForImageTextToText,
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    folder = Path(folder)
    if done(folder):
        return folder
    special = _IM_TOKENS + list(INTERNVL_TOKENS.values())
    tokenizer = _fast_tokenizer(
        special,
        "<|im_end|>",
        "<|endoftext|>",
        INTERNVL_CHAT_TEMPLATE,
        extra_special_tokens=dict(INTERNVL_TOKENS),
    )
    text = text_config(tokenizer, "<|im_end|>", model_type="qwen2", tie_word_embeddings=False)
    vision = {**TINY_VISION, "image_size": [32, 32], "patch_size": [8, 8]}
    config = InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=4,
        downsample_ratio=0.5,
    )
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    image_processor = GotOcr2ImageProcessor(
        size={"height": 32, "width": 32}, crop_to_patches=False, max_patches=1
    )
    video = InternVLVideoProcessor(size={"height": 32, "width": 32})
    processor = InternVLProcessor(
        image_processor, tokenizer, video, image_seq_length=4, chat_template=INTERNVL_CHAT_TEMPLATE
    )
    return _save(model, processor, folder, text["eos_token_id"], text["pad_token_id"])


def build_tiny_llava_onevision(folder: str | Path, seed: int = 0) -> Path:
    """A tiny LLaVA-OneVision: SigLIP vision tower at 32 px (patch 8), ``anyres`` pinpoints
    scaled down to 32/64 px and identical in config and image processor, Qwen2 text model."""
    import torch
    from transformers import (
        AutoModelForImageTextToText,
        LlavaOnevisionConfig,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    folder = Path(folder)
    if done(folder):
        return folder
    special = [*_IM_TOKENS, "<image>", "<video>"]
    tokenizer = _fast_tokenizer(special, "<|im_end|>", "<|endoftext|>", LLAVA_OV_CHAT_TEMPLATE)
    text = text_config(tokenizer, "<|im_end|>", model_type="qwen2", tie_word_embeddings=False)
    vision = {"model_type": "siglip_vision_model", **TINY_VISION, "num_hidden_layers": 2}
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    image_processor = LlavaOnevisionImageProcessor(
        size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32}),
        num_image_tokens=16,
        vision_feature_select_strategy="full",
        chat_template=LLAVA_OV_CHAT_TEMPLATE,
    )
    return _save(model, processor, folder, text["eos_token_id"], text["pad_token_id"])


def build_tiny_idefics3(folder: str | Path, seed: int = 0) -> Path:
    """A tiny Idefics3: SigLIP-style vision at 32 px (patch 8), pixel shuffle 2 → 4 image tokens
    per tile, images resized to one 32 px tile (no splitting), Llama text model."""
    import torch
    from transformers import (
        AutoModelForImageTextToText,
        Idefics3Config,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    folder = Path(folder)
    if done(folder):
        return folder
    tokenizer = _fast_tokenizer(
        _IDEFICS3_TOKENS,
        "<end_of_utterance>",
        "<|end_of_text|>",
        IDEFICS3_CHAT_TEMPLATE,
        bos_token="<|begin_of_text|>",
    )
    text = text_config(
        tokenizer, "<end_of_utterance>", model_type="llama", tie_word_embeddings=False
    )
    config = Idefics3Config(
        vision_config=TINY_VISION,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=2,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": 32},
        max_image_size={"longest_edge": 32},
        do_image_splitting=False,
    )
    processor = Idefics3Processor(
        image_processor, tokenizer, image_seq_len=4, chat_template=IDEFICS3_CHAT_TEMPLATE
    )
    return _save(model, processor, folder, text["eos_token_id"], text["pad_token_id"])


def build_tiny_paligemma(folder: str | Path, seed: int = 0) -> Path:
    """A tiny PaliGemma (SigLIP at 32 px, patch 8 → 16 image tokens; one-layer Gemma). Its
    processor adds ``<image>``, 1024 ``<locYYYY>`` and 128 ``<segNNN>`` tokens, so the model's
    vocabulary size is taken from the tokenizer after the processor is built. PaliGemma takes a
    raw prefix (``detect cat``), not a chat: no chat template."""
    import torch
    from transformers import (
        AutoModelForImageTextToText,
        GemmaTokenizerFast,
        PaliGemmaConfig,
        PaliGemmaProcessor,
        SiglipImageProcessor,
    )

    folder = Path(folder)
    if done(folder):
        return folder
    special = ["<pad>", "<eos>", "<bos>", "<unk>"]
    tokenizer = GemmaTokenizerFast(
        tokenizer_object=train_bpe(special),
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],
    )
    image_processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    image_processor.image_seq_length = 16
    processor = PaliGemmaProcessor(image_processor, tokenizer)
    tokenizer = processor.tokenizer
    text = text_config(
        tokenizer,
        "<eos>",
        model_type="gemma",
        num_hidden_layers=1,
        num_key_value_heads=1,
        head_dim=16,
        bos_token_id=tokenizer.bos_token_id,
    )
    vision = {"model_type": "siglip_vision_model", **TINY_VISION, "projection_dim": 64}
    config = PaliGemmaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        projection_dim=64,
        hidden_size=64,
        vocab_size=len(tokenizer),
    )
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    return _save(model, processor, folder, text["eos_token_id"], text["pad_token_id"])


BUILDERS = {
    "internvl": build_tiny_internvl,
    "llava_onevision": build_tiny_llava_onevision,
    "idefics3": build_tiny_idefics3,
    "paligemma": build_tiny_paligemma,
}


def build_tiny_chat_model(folder: str | Path, family: str, seed: int = 0) -> Path:
    """Save a tiny random ``family`` (:data:`CHAT_FAMILIES` or :data:`PROMPT_FAMILIES`)
    checkpoint to ``folder``."""
    if family not in BUILDERS:
        raise ValueError(f"unknown family {family!r}; expected one of {sorted(BUILDERS)}")
    return BUILDERS[family](folder, seed)

"""Tiny random-weight models built from configs and saved like real checkpoints.

They exercise the exact loading and inference code paths of the adapters without any download:
a byte-level BPE tokenizer trained here on a few sentences (with the Qwen special tokens and a
chat template), Qwen2-VL / Qwen2.5-VL / Qwen3-VL models with 1-2 layers, a tiny BERT whose
vocabulary keeps BERT's special-token ids (GroundingDINO looks up ``[CLS]`` 101, ``[SEP]`` 102,
``.`` 1012 and ``?`` 1029), a transformers GroundingDino with a tiny Swin backbone, and a
groundingdino-py checkpoint + config file. Every builder writes into the folder it is given and
returns at once when that folder already holds a finished build (a ``.complete`` marker).
Outputs of these models are random text / boxes: only the plumbing is meaningful.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cot_ground.testing.tiny_parts import (
    TINY_BERT,
    TINY_GDINO,
    done,
    finish,
    text_config,
    tiny_swin,
)

QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Renders the Qwen chat layout: each turn is "<|im_start|>ROLE\n...<|im_end|>\n"; an image part
# becomes "<|vision_start|><|image_pad|><|vision_end|>" (the processor expands the pad token).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "Which image contains the red car? It is in the second image.",
    "The target is the person on the left holding an umbrella.",
    '{"image": 2, "description": "the dog next to the bench"}',
    '[{"bbox_2d": [120, 45, 380, 290], "label": "cat"}]',
    "<|box_start|>(123,456),(789,999)<|box_end|> in image 1",
    "Locate the object in the picture and output its bounding box coordinates.",
    "first second third fourth fifth sixth image picture photo view difference",
    "0 1 2 3 4 5 6 7 8 9 10 100 250 500 750 999 1000",
]


@dataclass(frozen=True)
class GdinoPyFiles:
    """Where a groundingdino-py model lives: checkpoint, config file and local BERT folder."""

    checkpoint: Path
    config: Path
    bert: Path


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def build_tiny_qwen_tokenizer(folder: str | Path) -> Path:
    """Train a byte-level BPE (vocab ~500) with the Qwen special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    folder = Path(folder)
    if done(folder):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=QWEN_SPECIAL_TOKENS,
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = Qwen2TokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        additional_special_tokens=QWEN_SPECIAL_TOKENS[1:],
    )
    fast.chat_template = QWEN_CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return finish(folder)


def _qwen_config(family: str, tokenizer: Any) -> Any:
    from transformers import AutoConfig

    ids = {
        "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    }
    text = text_config(tokenizer, "<|im_end|>")
    if family == "qwen2_vl":
        text["rope_scaling"] = {"type": "mrope", "mrope_section": [2, 3, 3]}
        vision = {"depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2}
    elif family == "qwen2_5_vl":
        text["rope_scaling"] = {"type": "mrope", "mrope_section": [2, 3, 3]}
        vision = {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        }
    else:
        text["head_dim"] = 16
        text["rope_scaling"] = {
            "rope_type": "default",
            "mrope_section": [4, 2, 2],
            "mrope_interleaved": True,
        }
        vision = {
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 256,
            "deepstack_visual_indexes": [0],
        }
    return AutoConfig.for_model(
        family, text_config=text, vision_config=vision, tie_word_embeddings=False, **ids
    )


def _qwen_processor(family: str, tokenizer: Any) -> Any:
    from transformers import Qwen2VLImageProcessor

    patch = 16 if family == "qwen3_vl" else 14
    # Small defaults so tests feed few vision tokens; callers override with min/max_pixels.
    unit = (patch * 2) ** 2
    image_processor = Qwen2VLImageProcessor(
        patch_size=patch, merge_size=2, min_pixels=4 * unit, max_pixels=16 * unit
    )
    if family == "qwen3_vl":
        from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

        video = Qwen3VLVideoProcessor(patch_size=patch, merge_size=2)
        return Qwen3VLProcessor(image_processor, tokenizer, video, chat_template=QWEN_CHAT_TEMPLATE)
    from transformers import Qwen2VLVideoProcessor

    video = Qwen2VLVideoProcessor(patch_size=patch, merge_size=2)
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor

        return Qwen2_5_VLProcessor(
            image_processor, tokenizer, video, chat_template=QWEN_CHAT_TEMPLATE
        )
    from transformers import Qwen2VLProcessor

    return Qwen2VLProcessor(image_processor, tokenizer, video, chat_template=QWEN_CHAT_TEMPLATE)


def build_tiny_qwen_vl(folder: str | Path, family: str = "qwen2_vl", seed: int = 0) -> Path:
    """Save a tiny random ``family`` model (config, weights, processor, tokenizer) to ``folder``."""
    from transformers import AutoModelForImageTextToText, AutoTokenizer, GenerationConfig

    if family not in QWEN_FAMILIES:
        raise ValueError(f"unknown Qwen-VL family {family!r}; expected one of {QWEN_FAMILIES}")
    folder = Path(folder)
    if done(folder):
        return folder
    tok_dir = build_tiny_qwen_tokenizer(folder.parent / "qwen-tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    config = _qwen_config(family, tokenizer)
    _seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(folder)
    _qwen_processor(family, tokenizer).save_pretrained(folder)
    return finish(folder)


def bert_vocab() -> list[str]:
    """A WordPiece vocabulary laid out like bert-base-uncased's first 1,067 ids.

    ids 0 [PAD], 1-99 unused, 100 [UNK], 101 [CLS], 102 [SEP], 103 [MASK], then unused up to
    998 and the single printable characters from 999 (``!``) in ASCII order without upper case,
    which puts ``.`` at 1012 and ``?`` at 1029 as in the real vocabulary. Sub-word pieces and
    a few common words follow.
    """
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)]
    vocab += ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"[unused{i}]" for i in range(99, 99 + 999 - len(vocab))]
    chars = list(string.punctuation + string.digits + string.ascii_lowercase)
    vocab += sorted(chars, key=ord)
    vocab += [f"##{c}" for c in string.ascii_lowercase + string.digits]
    vocab += ["the", "red", "car", "dog", "cat", "person", "left", "right", "image"]
    return vocab


def build_tiny_bert(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny BERT (hidden 32, 1 layer) and its uncased tokenizer to ``folder``."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    if done(folder):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    vocab = bert_vocab()
    assert vocab[101] == "[CLS]" and vocab[102] == "[SEP]"
    assert vocab[1012] == "." and vocab[1029] == "?"
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), **TINY_BERT)
    _seed(seed)
    BertModel(config).save_pretrained(folder)
    return finish(folder)


def save_tiny_gdino(
    folder: str | Path, seed: int, config_class: Any, model_class: Any, **sizes: Any
) -> Path:
    """Save a tiny GroundingDino-style detector of ``model_class`` (tiny Swin, tiny BERT,
    :data:`~cot_ground.testing.tiny_parts.TINY_GDINO`) with its processor; ``sizes`` add to or
    replace the config's. A finished ``folder`` is returned as it is."""
    from transformers import (
        AutoTokenizer,
        BertConfig,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    folder = Path(folder)
    if done(folder):
        return folder
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_bert(folder.parent / "tiny-bert"))
    config = config_class(
        backbone_config=tiny_swin(),
        text_config=BertConfig(vocab_size=len(tokenizer), **TINY_BERT),
        **{**TINY_GDINO, **sizes},
    )
    _seed(seed)
    model_class(config).save_pretrained(folder)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 160})
    GroundingDinoProcessor(image_processor, tokenizer).save_pretrained(folder)
    return finish(folder)


def build_tiny_gdino_hf(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny transformers GroundingDino (tiny Swin, tiny BERT) with its processor."""
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    return save_tiny_gdino(folder, seed, GroundingDinoConfig, GroundingDinoForObjectDetection)


_GDINO_PY_CONFIG = """\
# Tiny groundingdino-py config (random weights, for tests). The package fixes the Swin sizes per
# backbone name, so the backbone is swin_T and
# hidden_dim stays 256 (the text position embedding is fixed at 256); the rest is shrunk.
batch_size = 1
modelname = "groundingdino"
backbone = "swin_T_224_1k"
position_embedding = "sine"
pe_temperatureH = 20
pe_temperatureW = 20
return_interm_indices = [1, 2, 3]
backbone_freeze_keywords = None
enc_layers = 1
dec_layers = 2
pre_norm = False
dim_feedforward = 64
hidden_dim = 256
dropout = 0.0
nheads = 2
num_queries = 20
query_dim = 4
num_patterns = 0
num_feature_levels = 4
enc_n_points = 2
dec_n_points = 2
two_stage_type = "standard"
two_stage_bbox_embed_share = False
two_stage_class_embed_share = False
transformer_activation = "relu"
dec_pred_bbox_embed_share = True
dn_box_noise_scale = 1.0
dn_label_noise_ratio = 0.5
dn_label_coef = 1.0
dn_bbox_coef = 1.0
embed_init_tgt = True
dn_labelbook_size = 2000
max_text_len = 256
text_encoder_type = {bert!r}
use_text_enhancer = True
use_fusion_layer = True
use_checkpoint = False
use_transformer_ckpt = False
use_text_cross_attention = True
text_dropout = 0.0
fusion_dropout = 0.0
fusion_droppath = 0.0
sub_sentence_present = True
"""


def build_tiny_gdino_py(folder: str | Path, seed: int = 0) -> GdinoPyFiles:
    """Save a tiny groundingdino-py model: ``model.pth`` ({"model": state_dict}) + ``config.py``.

    The config's ``text_encoder_type`` points at a tiny local BERT, so nothing is downloaded.
    """
    folder = Path(folder)
    bert_dir = build_tiny_bert(folder.parent / "tiny-bert")
    files = GdinoPyFiles(folder / "model.pth", folder / "config.py", bert_dir)
    if done(folder):
        return files
    import torch

    from cot_ground.models.gdino_py_compat import build_groundingdino

    folder.mkdir(parents=True, exist_ok=True)
    files.config.write_text(_GDINO_PY_CONFIG.replace("{bert!r}", repr(str(bert_dir))))
    _seed(seed)
    model = build_groundingdino(files.config, bert_dir, device="cpu")
    torch.save({"model": model.state_dict()}, files.checkpoint)
    finish(folder)
    return files


def build_all(folder: str | Path) -> dict[str, Any]:
    """Build every tiny model under ``folder``; returns their paths by name."""
    folder = Path(folder)
    paths: dict[str, Any] = {f: build_tiny_qwen_vl(folder / f, f) for f in QWEN_FAMILIES}
    paths["gdino_hf"] = build_tiny_gdino_hf(folder / "gdino-hf")
    paths["gdino_py"] = build_tiny_gdino_py(folder / "gdino-py")
    paths["bert"] = build_tiny_bert(folder / "tiny-bert")
    return paths

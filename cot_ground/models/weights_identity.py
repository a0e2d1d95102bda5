"""What a local model folder holds, as one digest: tells a run which weights answered.

:func:`weights_digest` identifies the content of a checkpoint folder, not its place: a copy of
the folder elsewhere (or a Hub snapshot made of symbolic links to blobs) keeps the digest, while
other weights, another configuration or another tokenizer written to the same folder change it.
The step-1 cache key and the ``settings`` each HF adapter records carry it (see
:func:`cot_ground.models.hf_loading.adapter_settings`), so an answer produced by other weights is
never served.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cot_ground.records import file_sha256

# Files at the folder's top level that define what the model computes, read in full: configs
# (config.json, generation_config.json, preprocessor/processor/video configs), weight indexes
# (*.safetensors.index.json, pytorch_model.bin.index.json), the tokenizer (tokenizer.json,
# tokenizer_config.json, special_tokens_map.json, added_tokens.json, vocab.json, vocab.txt,
# merges.txt, SentencePiece *.model, *.tiktoken), the chat template (chat_template.jinja or
# chat_template.json) and remote code (*.py).
DEFINITION_SUFFIXES = (".json", ".txt", ".jinja", ".model", ".tiktoken", ".py")
# Weight files at the folder's top level, identified by name, size and sampled bytes.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt")
# Bytes read at each sampled place of a weight file; a weight file of at most three samples is
# read in full.
SAMPLE_BYTES = 1 << 20
# Files read as neither: documentation (README.md, LICENSE), hidden files (.gitattributes, the
# tiny builders' .complete marker), pictures and other frameworks' weights (*.h5, *.msgpack,
# *.onnx), which the PyTorch adapters do not load. Sub-folders are not read.
_SCHEME = b"cot-ground weights digest v1\n"


def weights_digest(path: str | os.PathLike[str]) -> str | None:
    """Hex sha256 identifying the model in local folder ``path``; None when ``path`` is not an
    existing folder (a Hub id such as ``Qwen/Qwen2-VL-7B-Instruct``, a missing path, a file).

    Covered, for each regular file at the folder's top level (sub-folders are not read; symbolic
    links are followed, so a Hub snapshot of links to blobs is read through them), in name order:

    * definition files (suffix in :data:`DEFINITION_SUFFIXES`: configs, weight indexes,
      tokenizer files, chat template, remote code): name and full content. The tokenizer and
      the chat template are included because they change what the model is given and so what
      it answers;
    * weight files (suffix in :data:`WEIGHT_SUFFIXES`): name, size in bytes and the sha256 of a
      *sample* of the content: the first, middle and last :data:`SAMPLE_BYTES` (1 MiB); a file
      of at most 3 MiB is read in full. The first MiB of a safetensors file holds its header
      (every tensor's name, dtype, shape and offset).

    Not covered: file modification times and the folder's own path (a copy elsewhere keeps the
    digest), and the files listed beside :data:`SAMPLE_BYTES` in the module.

    This is a *sampled* digest: an edit of a weight file that keeps its size and changes no
    sampled byte (e.g. a few tensors rewritten in place in the unread middle of a multi-GB shard,
    such as a partial merge saved over the same file) is not seen; writing new weights through
    ``save_pretrained`` (another seed, a fine-tune) changes the sampled bytes in practice.

    Cost: the full size of the definition files (a few MB for a real checkpoint; Qwen2-VL's
    tokenizer.json is about 7 MB) plus at most 3 MiB per weight file, whatever its size, and one
    ``stat`` per file; measured figures are in the report of the change that added it.

    Raises ``OSError`` when a file of the folder cannot be read.
    """
    folder = Path(path)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256(_SCHEME)
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        name = entry.name
        if name.startswith(".") or not entry.is_file():
            continue
        lowered = name.lower()
        if lowered.endswith(WEIGHT_SUFFIXES):
            size = entry.stat().st_size
            line = f"weights\0{name}\0{size}\0{_sampled_sha256(entry, size)}\n"
        elif lowered.endswith(DEFINITION_SUFFIXES):
            line = f"definition\0{name}\0{file_sha256(entry)}\n"
        else:
            continue
        digest.update(line.encode("utf-8"))
    return digest.hexdigest()


def _sampled_sha256(path: Path, size: int) -> str:
    """sha256 of the first, middle and last :data:`SAMPLE_BYTES` of a file of ``size`` bytes
    (all of it when it is at most three samples long)."""
    if size <= 3 * SAMPLE_BYTES:
        return file_sha256(path)
    sample = hashlib.sha256()
    with path.open("rb") as handle:
        for offset in (0, (size - SAMPLE_BYTES) // 2, size - SAMPLE_BYTES):
            handle.seek(offset)
            sample.update(handle.read(SAMPLE_BYTES))
    return sample.hexdigest()

"""Building a groundingdino-py (0.4.0) model offline and on an explicit device.

The package builds its text encoder from ``text_encoder_type``; given the name
``bert-base-uncased`` it downloads BERT from the hub, so this module only ever passes a local
folder and refuses anything else. Its ``load_model`` helper defaults to CUDA; here the device is
always explicit. The package prints a line and raises deprecation warnings of torch and timm while
it builds; those are swallowed. With transformers 4.57 the package needs no patching (transformers
5 removed ``BertModel.get_extended_attention_mask``, which it calls, hence the pin below 5).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

from cot_ground.models.base import ModelLoadError


def build_groundingdino(config_path: str | Path, bert_dir: str | Path, device: str) -> Any:
    """A randomly initialised groundingdino-py model built from ``config_path`` on ``device``.

    ``bert_dir`` must be a local folder with a BERT model and tokenizer; it replaces the
    config's ``text_encoder_type``.
    """
    config_path, bert_dir = Path(config_path), Path(bert_dir)
    if not config_path.is_file():
        raise ModelLoadError(f"groundingdino-py config file not found: {config_path}")
    if not bert_dir.is_dir():
        raise ModelLoadError(
            f"groundingdino-py needs a local BERT folder (text_encoder_type); not a folder: "
            f"{bert_dir}"
        )
    missing = [n for n in ("config.json", "vocab.txt") if not (bert_dir / n).is_file()]
    if missing:
        raise ModelLoadError(f"BERT folder {bert_dir} is missing {', '.join(missing)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="torch.meshgrid")
        from groundingdino.models import build_model
        from groundingdino.util.slconfig import SLConfig

        args = SLConfig.fromfile(str(config_path))
        args.device = device
        args.text_encoder_type = str(bert_dir)
        with contextlib.redirect_stdout(io.StringIO()):
            model = build_model(args)
    return model.to(device).eval()

"""log P("yes"): how likely a chat model's answer starts with "yes", read from forward passes.

Used by the verify graph (:mod:`cot_ground.graph.verify`) through the reasoners' ``yes_logprob``.
The value is a natural-log probability (≤ 0) at temperature 1, a softmax over the whole
vocabulary in float32, whatever the adapter's sampling settings.

Which tokens: each spelling in :data:`YES_SPELLINGS` is encoded by the checkpoint's tokenizer
without special tokens. A spelling that is one token is read at the first answer position (the
position right after the chat template's generation prompt); a spelling of several tokens is
appended after the generation prompt and teacher-forced: its log-probability is the sum of each
token's log-probability given the tokens before it. Distinct token sequences are disjoint
answers, so their probabilities are summed: ``log P(yes) = logsumexp`` over them. When every
spelling is one token (the released Qwen tokenizers) that is one forward pass per request;
otherwise one pass per request and multi-token spelling. :meth:`YesTokens.describe` says which
ids were used (the verify trace records it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

YES_SPELLINGS = ("yes", "Yes")


@dataclass(frozen=True)
class YesTokens:
    """The token ids of the spellings of "yes" for one tokenizer."""

    single: tuple[int, ...]
    """Ids of the spellings that are one token, read at the first answer position."""
    multi: tuple[tuple[str, tuple[int, ...]], ...]
    """``(spelling, ids)`` of the spellings of several tokens, teacher-forced."""

    @classmethod
    def of(cls, tokenizer: Any) -> YesTokens:
        """The ids of :data:`YES_SPELLINGS` under ``tokenizer`` (distinct sequences once)."""
        single: list[int] = []
        multi: list[tuple[str, tuple[int, ...]]] = []
        seen: set[tuple[int, ...]] = set()
        for spelling in YES_SPELLINGS:
            ids = tuple(tokenizer.encode(spelling, add_special_tokens=False))
            if not ids or ids in seen:
                continue
            seen.add(ids)
            if len(ids) == 1:
                single.append(ids[0])
            else:
                multi.append((spelling, ids))
        return cls(tuple(single), tuple(multi))

    def suffixes(self) -> list[str]:
        """The text appended after the generation prompt, one forward pass each: every
        multi-token spelling, or nothing when all are one token."""
        return [spelling for spelling, _ in self.multi] or [""]

    def suffix_ids(self, suffix: str) -> tuple[int, ...]:
        """The ids of an appended ``suffix`` (empty for ``""``)."""
        return dict(self.multi).get(suffix, ())

    def describe(self) -> dict[str, Any]:
        """What was summed, for the trace: spellings, one-token ids, teacher-forced sequences."""
        return {
            "spellings": list(YES_SPELLINGS),
            "single_token_ids": list(self.single),
            "multi_token_ids": {spelling: list(ids) for spelling, ids in self.multi},
            "combine": "logsumexp",
            "log": "natural",
        }


def score_rows(model: Any, inputs: Any, suffixes: list[tuple[int, ...]], tokens: YesTokens) -> Any:
    """One forward pass over left-padded ``inputs`` (one row per ``suffixes`` entry: the prompt
    followed by those appended ids). Returns per row ``(single, chain)``: the log of the summed
    probability of the one-token ids at the first answer position (``-inf`` when there are
    none) and the teacher-forced log-probability of the row's suffix (0.0 for none). Raises
    ``RuntimeError`` when a row does not end with its suffix's ids (the template merged them)."""
    import torch

    longest = max(len(s) for s in suffixes)
    ids = inputs["input_ids"]
    for row, suffix in enumerate(suffixes):
        if suffix and tuple(ids[row, -len(suffix) :].tolist()) != suffix:
            raise RuntimeError(f"the prompt's tokens absorb the answer prefix {list(suffix)}")
    with torch.inference_mode():
        logits = model(**inputs, logits_to_keep=longest + 1).logits[:, -(longest + 1) :]
    logp = torch.log_softmax(logits.float(), dim=-1)
    single_ids = torch.tensor(tokens.single, dtype=torch.long, device=logp.device)
    out = []
    for row, suffix in enumerate(suffixes):
        first = logp[row, -len(suffix) - 1]  # the position that predicts the first answer token
        single = (
            torch.logsumexp(first[single_ids], dim=0).item() if tokens.single else float("-inf")
        )
        chain = sum(logp[row, -len(suffix) - 1 + j, t].item() for j, t in enumerate(suffix))
        out.append((single, float(chain)))
    return out


def combine(rows: list[tuple[float, float]], suffixes: list[tuple[int, ...]]) -> float:
    """log P(yes) of one request from its rows' ``(single, chain)`` scores (see
    :func:`score_rows`): the one-token spellings once (first row), plus each suffix's chain."""
    import math

    terms = [rows[0][0]] + [chain for (_, chain), s in zip(rows, suffixes, strict=True) if s]
    top = max(terms)
    if top == float("-inf"):
        return top
    return top + math.log(sum(math.exp(t - top) for t in terms))

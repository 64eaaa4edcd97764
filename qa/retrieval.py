"""Which stored chunks a question is about: its queries against the chunks' content keys.

ReKV's idea, made position-free: a chunk's key is the mean of its keys with RoPE undone
(KVChunk.content_keys), the question's is the mean of its queries before RoPE, per layer and KV
head. The score is their cosine averaged over layers and heads: one consensus score per chunk, so the
same chunks serve every layer and the evidence of an answer is well defined. The rule is written
once, here: the index kept between questions (qa/key_index.py) keeps its keys as ``unit_keys`` rows
and scores them with ``cosine_scores`` too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def unit_keys(keys: Sequence[torch.Tensor]) -> torch.Tensor:
    """Chunks' mean keys [L, H, D] stacked [N, L, H, D] and unit-normalised per (layer, head)."""
    return F.normalize(torch.stack([k.float() for k in keys]), dim=-1)


def cosine_scores(units: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Cosine [N] of ``queries`` [L, H, D] with each row of ``units`` [N, L, H, D] (``unit_keys``),
    averaged over layers and heads."""
    if units.shape[1:] != queries.shape:
        raise ValueError(
            f"query shape {tuple(queries.shape)} does not match chunk keys {tuple(units.shape[1:])}"
        )
    q = F.normalize(queries.float().to(units.device), dim=-1)  # queries come from the model's device
    return torch.einsum("nlhd,lhd->n", units.float(), q) / (q.shape[0] * q.shape[1])


def score_chunks(queries: torch.Tensor, keys: dict[str, torch.Tensor]) -> dict[str, float]:
    """Cosine in [-1, 1] of ``queries`` [L, H, D] with each chunk's mean key [L, H, D]."""
    if not keys:
        return {}
    cids = list(keys)
    scores = cosine_scores(unit_keys([keys[c] for c in cids]), queries)
    return dict(zip(cids, scores.tolist(), strict=True))

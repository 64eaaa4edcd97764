"""Which stored chunks a question is about: its queries against the chunks' content keys.

ReKV's idea, made position-free: a chunk's key is the mean of its keys with RoPE undone
(KVChunk.content_keys), the question's is the mean of its queries before RoPE, per layer and KV
head. The score is their cosine averaged over layers and heads: one consensus score per chunk, so the
same chunks serve every layer and the evidence of an answer is well defined.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def score_chunks(queries: torch.Tensor, keys: dict[str, torch.Tensor]) -> dict[str, float]:
    """Cosine in [-1, 1] of ``queries`` [L, H, D] with each chunk's mean key [L, H, D]."""
    if not keys:
        return {}
    cids = list(keys)
    stacked = torch.stack([keys[c].float() for c in cids])  # [N, L, H, D]
    if stacked.shape[1:] != queries.shape:
        raise ValueError(
            f"query shape {tuple(queries.shape)} does not match chunk keys {tuple(stacked.shape[1:])}"
        )
    queries = queries.float().to(stacked.device)  # stored keys are on the CPU, queries on the model's device
    sims = (F.normalize(stacked, dim=-1) * F.normalize(queries, dim=-1)).sum(-1)  # [N, L, H]
    return dict(zip(cids, sims.mean(dim=(1, 2)).tolist(), strict=True))

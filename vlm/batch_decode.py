"""Many generations in one forward pass: their new tokens packed in one row, each attending to its
own cache only.

Decoding reads every weight once per forward, so on a CPU (and more so on a GPU) a forward over
the next token of 8 answers costs little more than over one. The answers' caches differ in length
and content (other streams, other chunks), so they are neither padded nor mixed: the new tokens of
every sequence (one token while decoding, a chunk of the prompt while prefilling) are packed into
one ``[1, N]`` input; projections, MLPs and the LM head run once over all N; attention runs per
sequence on that sequence's own keys and values (``SequenceKV``), causal within its new tokens.
Padding a batched cache instead would copy every cache on every step (tens of MB each on the 0.5B).

transformers is used as it is: a registered attention function (``ragged_attention``) and a cache
object whose ``update`` appends each sequence's slice of the packed keys to its own buffers. The
model's mask builder skips mask creation for a registered attention without a mask function, so
nothing else in the model changes. The same path serves one sequence alone (``Generation``), so
there is one decode rule, checked token for token against ``generate()`` by the fidelity tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

ATTENTION = "scenekv_ragged"


class SequenceKV:
    """One sequence's keys and values for every layer, in buffers with room to grow (doubling), so
    a decode step appends in place instead of concatenating the whole cache."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int = 0) -> None:
        """``keys``/``values``: [layers, kv_heads, tokens, head_dim]; ``room``: tokens to reserve."""
        layers, heads, tokens, dim = keys.shape
        cap = tokens + max(room, 16)
        self._k = keys.new_empty(layers, 1, heads, cap, dim)
        self._v = values.new_empty(layers, 1, heads, cap, values.shape[-1])
        self._k[:, 0, :, :tokens] = keys
        self._v[:, 0, :, :tokens] = values
        self.length = tokens

    @property
    def layers(self) -> int:
        return self._k.shape[0]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def layer(self, i: int, extra: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``i``'s keys and values [1, kv_heads, tokens, head_dim], ``extra`` tokens past the
        committed length included (a step's new tokens, written but not yet committed)."""
        n = self.length + extra
        return self._k[i, :, :, :n], self._v[i, :, :, :n]

    def write(self, i: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Layer ``i``'s new tokens [1, kv_heads, n, head_dim], after the committed length."""
        n = keys.shape[2]
        self._reserve(self.length + n)
        self._k[i, :, :, self.length : self.length + n] = keys
        self._v[i, :, :, self.length : self.length + n] = values

    def commit(self, n: int) -> None:
        self.length += n

    def _reserve(self, tokens: int) -> None:
        cap = self._k.shape[3]
        if tokens <= cap:
            return
        cap = max(tokens, cap * 2)
        k = self._k.new_empty(*self._k.shape[:3], cap, self._k.shape[4])
        v = self._v.new_empty(*self._v.shape[:3], cap, self._v.shape[4])
        k[:, :, :, : self.length] = self._k[:, :, :, : self.length]
        v[:, :, :, : self.length] = self._v[:, :, :, : self.length]
        self._k, self._v = k, v

    @property
    def nbytes(self) -> int:
        return self._k.numel() * self._k.element_size() + self._v.numel() * self._v.element_size()


@dataclass(frozen=True)
class _Ragged:
    """What the packed cache hands the attention function instead of a key tensor."""

    cache: PackedCache
    layer: int


class PackedCache:
    """The caches of one packed forward: sequence ``i`` owns tokens ``spans[i]`` of the packed row.
    transformers calls ``update`` once per layer; the attention function reads the result back."""

    def __init__(self, seqs: Sequence[SequenceKV], counts: Sequence[int]) -> None:
        self.seqs = list(seqs)
        self.counts = list(counts)
        self.spans: list[tuple[int, int]] = []
        start = 0
        for n in counts:
            self.spans.append((start, start + n))
            start += n

    def get_seq_length(self, layer_idx: int = 0) -> int:  # only asked where positions are not given
        return 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        for seq, (a, b) in zip(self.seqs, self.spans, strict=True):
            seq.write(layer_idx, key_states[:, :, a:b], value_states[:, :, a:b])
        marker = _Ragged(self, layer_idx)
        return marker, marker

    def commit(self) -> None:
        for seq, n in zip(self.seqs, self.counts, strict=True):
            seq.commit(n)


def ragged_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key,
    value,
    attention_mask,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention of each sequence's new tokens (``query`` [1, heads, N, dim], packed) on its own
    keys and values: causal among its new tokens, everything before them visible."""
    if not isinstance(key, _Ragged):
        raise TypeError("ragged_attention runs only inside a packed forward (vlm/batch_decode.py)")
    packed, layer = key.cache, key.layer
    outs = []
    for seq, (a, b), n in zip(packed.seqs, packed.spans, packed.counts, strict=True):
        k, v = seq.layer(layer, extra=n)
        q = query[:, :, a:b]
        if n == 1:
            outs.append(_one_token(q, k, v, scaling))
            continue
        total = k.shape[2]  # the last n keys are the new tokens: causal among them
        mask = torch.ones(n, total, dtype=torch.bool, device=q.device).tril(total - n)
        groups = q.shape[1] // k.shape[1]
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        outs.append(F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling))
    out = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
    return out.transpose(1, 2).contiguous(), None


def _one_token(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaling: float | None) -> torch.Tensor:
    """A decoding token's attention as two small matmuls, query heads grouped onto their KV head
    (no repeated keys): on a CPU, 3-5x faster than the fused kernel for one query, whose fixed cost
    is most of a decode step's attention. Softmax in fp32, as the fused kernels do."""
    heads, dim = q.shape[1], q.shape[-1]
    kv_heads = k.shape[1]
    scale = scaling if scaling is not None else dim**-0.5
    qg = q.reshape(kv_heads, heads // kv_heads, dim)  # heads h*G..h*G+G-1 read KV head h
    scores = torch.matmul(qg, k[0].transpose(1, 2)).float() * scale
    out = torch.matmul(scores.softmax(-1).to(v.dtype), v[0])  # [kv_heads, G, dim]
    return out.reshape(1, heads, 1, dim)


AttentionInterface.register(ATTENTION, ragged_attention)


@torch.inference_mode()
def packed_forward(
    backend,
    seqs: Sequence[SequenceKV],
    embeds: Sequence[torch.Tensor],
    positions: Sequence[torch.Tensor],
    want: Sequence[bool],
) -> list[torch.Tensor | None]:
    """One forward over every sequence's new tokens (``embeds[i]`` [n_i, D] at ``positions[i]``),
    appended to its own cache. Returns the logits of each sequence's last new token where ``want``
    says so (decoding or a finished prompt), else None: the LM head runs only on those rows."""
    counts = [e.shape[0] for e in embeds]
    cache = PackedCache(seqs, counts)
    text = backend._lm.config  # the config the attention layers read
    before = text._attn_implementation_internal
    text._attn_implementation_internal = ATTENTION
    try:
        hidden = backend.forward_hidden(torch.cat(list(embeds)), cache, torch.cat(list(positions), dim=-1))
    finally:
        text._attn_implementation_internal = before
    rows = [b - 1 for (_, b), w in zip(cache.spans, want, strict=True) if w]
    out: list[torch.Tensor | None] = [None] * len(seqs)
    if rows:
        logits = backend.model.lm_head(hidden[rows]).float()
        k = 0
        for i, w in enumerate(want):
            if w:
                out[i] = logits[k]
                k += 1
    cache.commit()  # last: a pass that failed anywhere leaves every cache as it was
    return out


def step_generations(
    backend, generations: Sequence, budgets: Sequence[int | None] | None = None
) -> list[str]:
    """One step of each unfinished ``Generation`` (vlm/generate.py) in one packed forward: a chunk
    of its prompt (at most ``budgets[i]`` tokens) or its next token. Returns each one's new text, or
    the exception that failed it after the forward (the others' steps stand)."""
    budgets = list(budgets) if budgets is not None else [None] * len(generations)
    inputs = [g.inputs(b) for g, b in zip(generations, budgets, strict=True)]
    logits = packed_forward(
        backend,
        [g.cache for g in generations],
        [e for e, _, _ in inputs],
        [p for _, p, _ in inputs],
        [w for _, _, w in inputs],
    )
    out: list = []
    for g, (e, _, _), lg in zip(generations, inputs, logits, strict=True):
        try:
            out.append(g.advance(e.shape[0], lg))
        except Exception as exc:  # its forward is done: a failure here is this generation's alone
            g.stop("error")
            out.append(exc)
    return out

"""KV chunks: a run of frames' cached keys and values, movable to other positions.

transformers caches keys *after* RoPE. 1-D rotary rotations compose, so a key cached at position p
becomes exactly the key of position p' by one more rotation of angle (p' - p) * inv_freq. That is
what lets SceneKV prefill every frame once, park its KV in Redis, and later lay any subset of chunks
side by side at contiguous positions for a question, without re-encoding anything.
Always move from the chunk's original position (never chain moves): in bf16 each rotation rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from transformers import DynamicCache


@dataclass(frozen=True)
class FrameSpan:
    """Where one frame sits inside a chunk: its time tag then its carriers."""

    index: int  # frame index in the stream
    pts: float  # seconds
    offset: int  # first token of the frame's segment, relative to the chunk
    tokens: int  # tag + carriers


@dataclass
class KVChunk:
    keys: torch.Tensor  # [layers, kv_heads, tokens, head_dim], RoPE applied at `position`
    values: torch.Tensor  # same shape
    position: int  # position of the first token when it was prefilled
    frames: list[FrameSpan] = field(default_factory=list)
    model_id: str = ""
    carriers: str = ""
    span: int = 0  # RoPE positions covered: == tokens for 1-D RoPE, fewer under M-RoPE (0: tokens)
    # Mean key with RoPE undone, per layer and KV head [layers, kv_heads, head_dim]: what the chunk is
    # about, independent of where it sits. Retrieval scores questions against it.
    content_keys: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not self.span:
            self.span = self.tokens

    @property
    def tokens(self) -> int:
        return self.keys.shape[2]

    @property
    def cuttable(self) -> bool:
        """Whether frames can be cut out of it at their own positions: under 1-D RoPE a frame's
        positions are its tokens; under M-RoPE its span is not its token count."""
        return self.span == self.tokens

    @property
    def first_pts(self) -> float:
        return self.frames[0].pts

    @property
    def last_pts(self) -> float:
        return self.frames[-1].pts

    @property
    def nbytes(self) -> int:
        return self.keys.numel() * self.keys.element_size() * 2

    def through(self, pts: float) -> KVChunk | None:
        """The chunk cut after its last frame at or before ``pts`` (None if none is; self if all are).

        A prefix keeps the original position, so the cut is exact; only a ``cuttable`` chunk.
        """
        keep = [f for f in self.frames if f.pts <= pts + 1e-9]
        if len(keep) == len(self.frames):
            return self
        if not keep:
            return None
        if not self.cuttable:
            raise ValueError("only chunks with 1-D RoPE positions can be cut by time")
        n = keep[-1].offset + keep[-1].tokens
        return replace(
            self,
            keys=self.keys[:, :, :n],
            values=self.values[:, :, :n],
            frames=keep,
            span=n,
            content_keys=None,
        )

    def frame_at(self, pts: float) -> KVChunk | None:
        """Just the chunk's first frame at or after ``pts`` (None if none is), at its own original
        position: its keys and values are the ones it was prefilled with, so the slice is exact.
        1-D RoPE only, as for :meth:`through`."""
        frame = next((f for f in self.frames if f.pts >= pts - 1e-6), None)
        if frame is None:
            return None
        return self._alone(frame)

    def split_frames(self) -> list[KVChunk]:
        """Every frame as its own chunk, exact slices at their original positions (1-D RoPE only)."""
        return [self._alone(f) for f in self.frames]

    def _alone(self, frame: FrameSpan) -> KVChunk:
        if len(self.frames) == 1:
            return self
        if not self.cuttable:
            raise ValueError("only chunks with 1-D RoPE positions can be cut by time")
        a, b = frame.offset, frame.offset + frame.tokens
        return replace(
            self,
            keys=self.keys[:, :, a:b],
            values=self.values[:, :, a:b],
            position=self.position + a,
            frames=[replace(frame, offset=0)],
            span=frame.tokens,
            content_keys=None,
        )

    def moved_to(self, position: int, inv_freq: torch.Tensor) -> KVChunk:
        """The same chunk as if it had been prefilled at ``position`` (values do not depend on it)."""
        if position == self.position:
            return self
        keys = rotate_keys(self.keys, position - self.position, inv_freq)
        return replace(self, keys=keys, position=position)


def rotate_keys(keys: torch.Tensor, delta: int, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotate RoPE'd keys [..., tokens, head_dim] by ``delta`` positions (rotate_half convention)."""
    return rotate(keys, delta * inv_freq.to(device=keys.device, dtype=torch.float64))


def rotate(keys: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate keys [..., tokens, head_dim] by ``angles``, [head_dim/2] or per token [tokens, head_dim/2]."""
    cos = torch.cat([angles.cos(), angles.cos()], dim=-1).float().to(keys.device)
    sin = torch.cat([angles.sin(), angles.sin()], dim=-1).float().to(keys.device)
    k = keys.float()
    half = k.shape[-1] // 2
    rotated_half = torch.cat([-k[..., half:], k[..., :half]], dim=-1)
    return (k * cos + rotated_half * sin).to(keys.dtype)


def cache_tensors(cache: DynamicCache) -> tuple[torch.Tensor, torch.Tensor]:
    """All layers of a batch-1 cache as [layers, kv_heads, tokens, head_dim] keys and values."""
    keys = torch.stack([layer.keys[0] for layer in cache.layers])
    values = torch.stack([layer.values[0] for layer in cache.layers])
    return keys, values


def build_cache(parts: list[tuple[torch.Tensor, torch.Tensor]], config) -> DynamicCache:
    """A fresh cache holding ``parts`` ([layers, heads, T, dim] keys, values) one after another."""
    keys = torch.cat([k for k, _ in parts], dim=2)
    values = torch.cat([v for _, v in parts], dim=2)
    layers = [(keys[i : i + 1].clone(), values[i : i + 1].clone()) for i in range(keys.shape[0])]
    return DynamicCache(ddp_cache_data=layers, config=config)

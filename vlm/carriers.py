"""Carrier strategies: how many embeddings a frame costs in the LLM.

``--carriers`` takes ``NAME[:K]`` optionally followed by ``+dedup:TAU``:

- ``native``  the checkpoint's own video tokens for the frame (LLaVA-OV: 196); the fidelity reference.
- ``pool:K``  average pooling of the token grid to a sqrt(K) x sqrt(K) grid (K a square).
- ``mean:1``  one semantic carrier, the mean of the frame's tokens (VideoScan). VideoScan trains the
              model for this; on an untrained checkpoint it is a speed/size mode that loses detail.
- ``topk:K``  the K tokens that receive the most attention in the vision tower's last layer, in
              raster order, plus one token merging the rest (training-free, VisionZip style): K+1.
- ``+dedup:TAU`` a frame whose visual feature has cosine > TAU to the last kept frame is not
              prefilled at all (0 carriers); its time maps to the kept frame.

The budget is exact: a strategy puts ``tokens_per_frame`` embeddings per kept frame, never more.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scenekv.errors import UserError

from .backend import VisionFeatures, VLMBackend

KINDS = ("native", "pool", "mean", "topk")
_PART = re.compile(r"^(?P<name>[a-z]+)(?::(?P<arg>[0-9.]+))?$")


@dataclass(frozen=True)
class CarrierSpec:
    kind: str
    k: int | None = None
    dedup_tau: float | None = None

    @classmethod
    def parse(cls, text: str) -> CarrierSpec:
        kind, k, tau = None, None, None
        for part in text.strip().lower().split("+"):
            m = _PART.match(part.strip())
            if not m:
                raise UserError(
                    f"bad carrier strategy {text!r}: expected NAME[:K][+dedup:TAU], e.g. pool:16+dedup:0.95"
                )
            name, arg = m["name"], m["arg"]
            if name == "dedup":
                if tau is not None:
                    raise UserError(f"bad carrier strategy {text!r}: dedup given twice")
                try:
                    tau = float(arg) if arg is not None else 0.95
                except ValueError as exc:
                    raise UserError(f"bad dedup threshold in {text!r}") from exc
                if not 0.0 < tau <= 1.0:
                    raise UserError(f"dedup threshold must be in (0, 1], got {tau}")
                continue
            if kind is not None:
                raise UserError(f"bad carrier strategy {text!r}: only one of {', '.join(KINDS)} may be given")
            if name not in KINDS:
                raise UserError(
                    f"unknown carrier strategy {name!r}; choose from {', '.join(KINDS)} (+dedup:TAU)"
                )
            kind = name
            if arg is not None and not arg.isdigit():
                raise UserError(f"carrier count must be a whole number in {text!r}")
            k = int(arg) if arg is not None else None
        if kind is None:
            raise UserError(f"bad carrier strategy {text!r}: name one of {', '.join(KINDS)}")
        return cls._checked(kind, k, tau, text)

    @classmethod
    def _checked(cls, kind: str, k: int | None, tau: float | None, text: str) -> CarrierSpec:
        if kind == "native":
            if k is not None:
                raise UserError("native takes no count: it is whatever the checkpoint's video path produces")
        elif kind == "mean":
            if k not in (None, 1):
                raise UserError("mean produces exactly one carrier: use mean:1")
            k = 1
        elif kind == "pool":
            if k is None or k < 1 or math.isqrt(k) ** 2 != k:
                raise UserError(f"pool:K needs a square K (1, 4, 16, 49, ...), got {text!r}")
        elif kind == "topk" and (k is None or k < 1):
            raise UserError(f"topk:K needs K >= 1, got {text!r}")
        return cls(kind, k, tau)

    def __str__(self) -> str:
        base = self.kind if self.kind == "native" else f"{self.kind}:{self.k}"
        return base if self.dedup_tau is None else f"{base}+dedup:{self.dedup_tau:g}"

    def tokens_per_frame(self, backend: VLMBackend) -> int:
        if self.kind == "native":
            return backend.native_tokens_per_frame
        if self.kind == "topk":
            return self.k + 1
        return self.k

    @property
    def needs_importance(self) -> bool:
        return self.kind == "topk"


def compress(
    spec: CarrierSpec, features: VisionFeatures, backend: VLMBackend
) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """Carriers for every frame of the batch, [F, tokens_per_frame, D], and their spatial grid
    (None for topk, whose tokens are a set, not a grid)."""
    tokens = features.carrier_source
    if spec.kind == "native":
        return backend.native_carriers(features)
    if spec.kind == "mean":
        return tokens.mean(dim=1, keepdim=True), (1, 1)
    if spec.kind == "pool":
        side = math.isqrt(spec.k)
        return _grid_pool(tokens, features.grid, side), (side, side)
    return _topk(tokens, features.importance, spec.k), None


def _grid_pool(tokens: torch.Tensor, grid: tuple[int, int], side: int) -> torch.Tensor:
    f, n, d = tokens.shape
    maps = tokens.transpose(1, 2).reshape(f, d, *grid)
    pooled = F.adaptive_avg_pool2d(maps.float(), side).to(tokens.dtype)
    return pooled.flatten(2).transpose(1, 2)


def _topk(tokens: torch.Tensor, importance: torch.Tensor | None, k: int) -> torch.Tensor:
    if importance is None:
        raise ValueError("topk carriers need the vision tower's attention (encode with need_importance=True)")
    f, n, d = tokens.shape
    k = min(k, n - 1)
    top = importance.topk(k, dim=1).indices.sort(dim=1).values  # raster order keeps the layout readable
    keep = torch.zeros(f, n, dtype=torch.bool, device=tokens.device)
    keep.scatter_(1, top, True)
    kept = tokens[keep].view(f, k, d)
    rest = tokens[~keep].view(f, n - k, d).mean(dim=1, keepdim=True)
    return torch.cat([kept, rest], dim=1)


def frame_signature(features: VisionFeatures) -> torch.Tensor:
    """One unit vector per frame for dedup and scene tiling: a 2x2 grid of mean tokens, centred.

    A plain mean over 729 tokens is dominated by what every frame shares (cosine ~1 between very
    different frames); keeping a coarse layout and centring each vector (so the cosine is a Pearson
    correlation) separates them. A checkpoint may name an earlier tower layer to read instead
    (``signature_layer`` in its scenekv.json: SceneKV's world model, whose last layers move with
    the object).
    """
    tokens = features.tokens if features.signature_tokens is None else features.signature_tokens
    pooled = _grid_pool(tokens, features.grid, 2).float().flatten(1)
    pooled = pooled - pooled.mean(dim=1, keepdim=True)
    return F.normalize(pooled, dim=1)


class Deduper:
    """Drops frames too similar to the last kept one; keeps state across batches of one stream."""

    def __init__(self, tau: float | None) -> None:
        self.tau = tau
        self.last_kept: torch.Tensor | None = None

    def keep(self, signature: torch.Tensor) -> bool:
        if self.tau is None:
            return True
        if self.last_kept is not None and float(signature @ self.last_kept) > self.tau:
            return False
        self.last_kept = signature
        return True


def frame_signatures(
    frames: Iterable, backend: VLMBackend, batch: int = 8, max_frames: int | None = None
) -> Iterator[tuple[float, torch.Tensor]]:
    """Yield (pts, signature) for frames (anything with ``pts`` and ``image``), ``batch`` per vision pass."""
    pending = []
    for seen, frame in enumerate(frames, start=1):
        pending.append(frame)
        last = max_frames is not None and seen >= max_frames
        if len(pending) >= batch or last:
            yield from _signed(pending, backend)
            pending = []
        if last:
            break
    if pending:
        yield from _signed(pending, backend)


def _signed(frames: list, backend: VLMBackend) -> Iterator[tuple[float, torch.Tensor]]:
    signatures = frame_signature(backend.encode_frames([f.image for f in frames]))
    return zip([f.pts for f in frames], signatures, strict=True)

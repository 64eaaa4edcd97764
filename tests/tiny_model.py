"""Shared, built-once tiny model and frames for the vlm tests (a plain module: conftest stays small)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from scenekv.vlm import StreamSession, load_backend


@lru_cache(maxsize=1)
def tiny():
    return load_backend("tiny-random-llava-onevision")


def frames(n: int, *, seed: int = 0, start: float = 0.0, step: float = 1.0) -> list[tuple[float, np.ndarray]]:
    """n distinct random RGB frames at start, start+step, ..."""
    rng = np.random.default_rng(seed)
    return [(start + i * step, rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)) for i in range(n)]


def session(carriers: str = "native") -> StreamSession:
    return StreamSession(tiny(), carriers)

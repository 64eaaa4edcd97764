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


def assert_moved_chunk_answers_identically(backend, carriers: str, question: str, *, n: int = 4) -> None:
    """A chunk moved far away (re-rotated) answers with the tokens and logits it had where it was
    prefilled: the KV move is exact for this backend's RoPE. (``torch`` imported here: the module
    stays cheap to import.)"""
    import torch

    from scenekv.vlm import SamplingParams

    sess = StreamSession(backend, carriers)
    sess.append(frames(n))
    chunk = sess.export(0, n - 1)
    params = SamplingParams(max_new_tokens=4)
    direct = sess.ask(question, chunks=[chunk], params=params, record_logits=True)
    list(direct)
    far = chunk.moved_to(chunk.position + 777, backend.rope_inv_freq())
    moved = sess.ask(question, chunks=[far], params=params, record_logits=True)
    list(moved)
    assert moved.token_ids == direct.token_ids
    for a, c in zip(moved.logits, direct.logits, strict=True):
        assert torch.allclose(a, c, atol=1e-4)

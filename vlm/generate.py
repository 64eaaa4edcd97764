"""Token-by-token decoding on an explicit cache, with streaming text, stop strings and cancel.

We decode ourselves instead of calling ``generate()`` because the cache is assembled from moved
chunks at positions generate() cannot infer, and because a live service must stream deltas and stop
between tokens when a client cancels. Greedy decoding reproduces generate()'s tokens exactly (the
fidelity tests check it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from .backend import VLMBackend


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")


@dataclass
class Generation:
    """Iterate for text deltas; afterwards ``text``, ``token_ids``, ``finish_reason`` are final."""

    backend: VLMBackend
    cache: DynamicCache
    prompt: torch.Tensor  # [T, D] embeddings to prefill before decoding
    position: int  # position of the prompt's first token
    params: SamplingParams = field(default_factory=SamplingParams)
    cancel: threading.Event | None = None
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" | "length" | "cancelled"
    ttft_s: float | None = None
    record_logits: bool = False  # keep every step's logits in ``logits`` (tests, debugging)
    logits: list[torch.Tensor] = field(default_factory=list)

    def __iter__(self) -> Iterator[str]:
        if self.finish_reason is not None or self.token_ids:
            raise RuntimeError("a Generation can be iterated once: its cache already holds the answer")
        start = time.perf_counter()
        backend, params = self.backend, self.params
        gen = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        stop_ids = backend.eos_token_ids
        emitted = 0
        positions = backend.text_positions(self.position, self.prompt.shape[0])
        logits = backend.forward(self.prompt, self.cache, positions, logits=True)
        next_pos = self.position + self.prompt.shape[0]
        while True:
            if self.cancel is not None and self.cancel.is_set():
                self.finish_reason = "cancelled"
                break
            if self.record_logits:
                self.logits.append(logits)
            token = _pick(logits, params, gen)
            if self.ttft_s is None:
                self.ttft_s = time.perf_counter() - start
            if token in stop_ids:
                self.finish_reason = "stop"
                break
            self.token_ids.append(token)
            full = backend.tokenizer.decode(self.token_ids, skip_special_tokens=True)
            cut = _first_stop(full, params.stop)
            if cut is not None:
                self.text = full[:cut]
                self.finish_reason = "stop"
                break
            self.text = full
            # Hold back an incomplete UTF-8 sequence and anything that may grow into a stop string.
            safe = len(full) - _held_back(full, params.stop)
            if safe > emitted:
                yield full[emitted:safe]
                emitted = safe
            if len(self.token_ids) >= params.max_new_tokens:
                self.finish_reason = "length"
                break
            logits = backend.forward(
                backend.embed_ids([token]), self.cache, backend.text_positions(next_pos, 1), logits=True
            )
            next_pos += 1
        if self.finish_reason != "cancelled" and len(self.text) > emitted:
            yield self.text[emitted:]


def _pick(logits: torch.Tensor, params: SamplingParams, gen: torch.Generator | None) -> int:
    if params.temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < params.top_p
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs.cpu(), 1, generator=gen))


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [i for s in stops if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    hold = 1 if text.endswith("\ufffd") else 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                hold = max(hold, n)
                break
    return hold

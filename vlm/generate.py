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

from .backend import VLMBackend
from .batch_decode import SequenceKV


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
    """One answer's decoding, as a state machine a scheduler can step together with others
    (vlm/batch_decode.py): ``inputs`` gives the next tokens to run (a chunk of the prompt, or the
    last picked token), ``advance`` takes their logits and returns the text that may be shown now.
    Iterating steps it alone, for text deltas; afterwards ``text``, ``token_ids``,
    ``finish_reason`` are final."""

    backend: VLMBackend
    cache: SequenceKV  # Answerer.sequence builds it with room for the prompt and the answer
    prompt: torch.Tensor  # [T, D] embeddings to prefill before decoding
    position: int  # position of the prompt's first token
    params: SamplingParams = field(default_factory=SamplingParams)
    cancel: threading.Event | None = None
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" | "length" | "cancelled"
    ttft_s: float | None = None
    first_token_at: float | None = None  # perf_counter() when the first token was picked
    record_logits: bool = False  # keep every step's logits in ``logits`` (tests, debugging)
    logits: list[torch.Tensor] = field(default_factory=list)
    _fed: int = field(default=0, repr=False)  # prompt tokens already run
    _started: float | None = field(default=None, repr=False)
    _emitted: int = field(default=0, repr=False)
    _rng: torch.Generator | None = field(default=None, repr=False)
    _iterated: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.params.seed is not None:
            self._rng = torch.Generator().manual_seed(self.params.seed)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def prompt_left(self) -> int:
        """Prompt tokens not run yet (0 once decoding)."""
        return self.prompt.shape[0] - self._fed

    def inputs(self, budget: int | None = None) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The next tokens to run: (embeds [n, D], positions, whether their last token's logits are
        needed). A prompt is run in chunks of at most ``budget`` tokens; then one token a step."""
        if self._started is None:
            self._started = time.perf_counter()
        backend = self.backend
        left = self.prompt_left
        if left > 0:
            n = left if budget is None else max(1, min(left, budget))
            embeds = self.prompt[self._fed : self._fed + n]
            return embeds, backend.text_positions(self.position + self._fed, n), n == left
        at = self.position + self.prompt.shape[0] + len(self.token_ids) - 1
        return backend.embed_ids([self.token_ids[-1]]), backend.text_positions(at, 1), True

    def advance(self, n: int, logits: torch.Tensor | None) -> str:
        """``n`` tokens from ``inputs`` were run (``logits``: their last one's, where asked for);
        returns the text that may be shown now ("" if none)."""
        if self.prompt_left > 0:
            self._fed += n
            if self.prompt_left > 0:
                return ""
        if logits is None:
            raise ValueError("a finished prompt or a decoded token needs its logits")
        if self.cancel is not None and self.cancel.is_set():
            self.finish_reason = "cancelled"
            return ""
        if self.record_logits:
            self.logits.append(logits)
        token = _pick(logits, self.params, self._rng)
        if self.ttft_s is None:
            self.first_token_at = time.perf_counter()
            self.ttft_s = self.first_token_at - (self._started or self.first_token_at)
        if token in self.backend.eos_token_ids:
            self.finish_reason = "stop"
            return self._rest()
        self.token_ids.append(token)
        full = self.backend.tokenizer.decode(self.token_ids, skip_special_tokens=True)
        cut = _first_stop(full, self.params.stop)
        if cut is not None:
            self.text = full[:cut]
            self.finish_reason = "stop"
            return self._rest()
        self.text = full
        delta = ""
        # Hold back an incomplete UTF-8 sequence and anything that may grow into a stop string.
        safe = len(full) - _held_back(full, self.params.stop)
        if safe > self._emitted:
            delta, self._emitted = full[self._emitted : safe], safe
        if len(self.token_ids) >= self.params.max_new_tokens:
            self.finish_reason = "length"
            return delta + self._rest()
        return delta

    def _rest(self) -> str:
        rest, self._emitted = self.text[self._emitted :], len(self.text)
        return rest

    def stop(self, reason: str = "cancelled") -> None:
        """Finish now without another step (a scheduler dropping it: cancel, client gone, error)."""
        if self.finish_reason is None:
            self.finish_reason = reason

    def step(self) -> str:
        """One step alone (the prompt whole, or the next token) on the same path as a packed step
        of many; returns its text, raises what failed it."""
        from .batch_decode import step_generations

        delta = step_generations(self.backend, [self])[0]
        if isinstance(delta, Exception):
            raise delta
        return delta

    def __iter__(self) -> Iterator[str]:
        if self._iterated or self.finished or self.token_ids:
            raise RuntimeError("a Generation can be iterated once: its cache already holds the answer")
        self._iterated = True
        while not self.finished:
            if self.cancel is not None and self.cancel.is_set() and self.prompt_left == 0:
                self.finish_reason = "cancelled"
                break
            delta = self.step()
            if delta:
                yield delta


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

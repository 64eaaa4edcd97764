"""Answering on stored KV: the sink plus chosen chunks, laid side by side, then the question.

This is the answer half of a stream, apart from the stream window (session.py): it needs no frame,
only the sink (the same system prompt every stream of the backend was encoded under, prefilled once)
and the chunks QA picked. Chunks are re-rotated to contiguous positions after the sink in time
order; the question is written in the checkpoint's own layout (with the anchor's frame tag where it
wants one) and decoded token by token.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from transformers import DynamicCache

from .backend import VLMBackend
from .batch_decode import SequenceKV
from .generate import Generation, SamplingParams
from .kv import KVChunk, build_cache, cache_tensors


class Answerer:
    def __init__(self, backend: VLMBackend, sink: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """``sink``: the sink's (keys, values) when a session already has them; else prefilled here."""
        self.backend = backend
        self.prompter = backend.prompter
        self.sink_len = len(self.prompter.sink_ids)
        if sink is None:
            cache = backend.new_cache()
            backend.forward(
                backend.embed_ids(self.prompter.sink_ids),
                cache,
                backend.text_positions(0, self.sink_len),
                logits=False,
            )
            keys, values = cache_tensors(cache)
            sink = (keys.clone(), values.clone())
        self.sink = sink

    def question_ids(self, question: str, anchor_pts: float | None = None) -> list[int]:
        return self.prompter.question_ids(question, anchor_pts)

    def context(self, chunks: Sequence[KVChunk]) -> tuple[DynamicCache, int]:
        """A fresh cache of sink + ``chunks`` at contiguous positions, and where the question starts."""
        parts, position = self._parts(chunks)
        return build_cache(parts, self.backend.model.config.get_text_config()), position

    def sequence(self, chunks: Sequence[KVChunk], room: int = 0) -> tuple[SequenceKV, int]:
        """As ``context``, in a generation's own buffers with ``room`` tokens to spare."""
        parts, position = self._parts(chunks)
        keys = torch.cat([k for k, _ in parts], dim=2)
        values = torch.cat([v for _, v in parts], dim=2)
        return SequenceKV(keys, values, room=room), position

    def _parts(self, chunks: Sequence[KVChunk]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
        inv_freq = self.backend.rope_inv_freq()
        parts = [self.sink]
        position = self.sink_len
        for chunk in sorted(chunks, key=lambda c: c.first_pts):
            moved = chunk.moved_to(position, inv_freq)
            parts.append(
                (
                    moved.keys.to(self.backend.device, self.backend.dtype),
                    moved.values.to(self.backend.device, self.backend.dtype),
                )
            )
            position += chunk.span
        return parts, position

    def queries(self, question_ids: list[int]) -> torch.Tensor:
        """The question's mean pre-RoPE queries on the sink alone (retrieval scores chunks with them)."""
        cache = build_cache([self.sink], self.backend.model.config.get_text_config())
        positions = self.backend.text_positions(self.sink_len, len(question_ids))
        return self.backend.question_queries(cache, self.backend.embed_ids(question_ids), positions)

    def ask(
        self,
        question: str,
        chunks: Sequence[KVChunk],
        *,
        anchor_pts: float | None = None,
        params: SamplingParams | None = None,
        cancel: threading.Event | None = None,
        record_logits: bool = False,
    ) -> Generation:
        """Answer on sink + ``chunks``; iterate the result for streamed text."""
        prompt = self.backend.embed_ids(self.question_ids(question, anchor_pts))
        params = params or SamplingParams()
        cache, position = self.sequence(chunks, room=prompt.shape[0] + params.max_new_tokens)
        return Generation(
            self.backend,
            cache,
            prompt,
            position,
            params,
            cancel,
            record_logits=record_logits,
        )

    def check_ids(self, question: str) -> list[int]:
        return self.prompter.check_ids(question)

    def read(self, check_ids: list[int], chunks: Sequence[KVChunk], max_new_tokens: int = 8) -> str:
        """The model's greedy answer to a scene check (``check_ids``) on sink + ``chunks``: what the
        scene shows of the kind the question asks about (``purple triangle``, ``green``)."""
        generation = self.reading(check_ids, chunks, max_new_tokens)
        for _ in generation:
            pass
        return generation.text.strip()

    def reading(self, check_ids: list[int], chunks: Sequence[KVChunk], max_new_tokens: int = 8) -> Generation:
        """``read``'s generation, not run yet (a scheduler batches it with others)."""
        prompt = self.backend.embed_ids(check_ids)
        cache, position = self.sequence(chunks, room=prompt.shape[0] + max_new_tokens)
        params = SamplingParams(max_new_tokens=max_new_tokens)
        return Generation(self.backend, cache, prompt, position, params)


def nearest_frame_pts(chunks: Sequence[KVChunk], target: float) -> float | None:
    """The anchor's frame: the latest frame in ``chunks`` at or before ``target`` (what was on screen
    at that moment, dedup-dropped frames included), else the earliest one after it."""
    times = [f.pts for c in chunks for f in c.frames]
    before = [t for t in times if t <= target + 1e-6]
    if before:
        return max(before)
    return min(times) if times else None

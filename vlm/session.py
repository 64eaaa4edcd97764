"""One stream's KV state on the device: an attention sink plus one segment per kept frame.

Layout (positions are RoPE positions, contiguous as frames arrive):

    [system prompt + "user:" opening = sink] [<t=0.0s> carriers] [<t=1.0s> carriers] ...

Each frame is encoded and prefilled exactly once, on top of everything before it. A question is
answered on a *context*: the sink plus any chunks (resident or brought back from memory), laid at
contiguous positions by re-rotating their keys; the question is prefilled there and decoded
(answer.py). The question never enters the stream's own cache, so asking does not change what later
answers see. The text pieces (sink, tags, question) come from the backend's prompt format (prompt.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import DynamicCache

from scenekv.errors import UserError

from .answer import Answerer
from .backend import VisionFeatures, VLMBackend
from .carriers import CarrierSpec, Deduper, compress, frame_signature
from .generate import Generation, SamplingParams
from .kv import FrameSpan, KVChunk, cache_tensors, rotate
from .prompt import time_tag

__all__ = ["CONTEXT_FRAMES", "FrameRecord", "ResumePoint", "StreamSession", "time_tag"]

CONTEXT_FRAMES = 8  # kept frames before it that a frame attends to, besides the sink


@dataclass
class FrameRecord:
    index: int
    pts: float
    carriers: int  # 0 when dedup dropped the frame
    kv_tokens: int  # time tag + carriers; 0 when dropped
    position: int | None  # first RoPE position of the frame's segment; None when dropped
    kept_as: int  # the frame whose KV stands for this one (itself unless dropped)
    signature: torch.Tensor  # unit vector: dedup and scene tiling compare frames with it


@dataclass(frozen=True)
class ResumePoint:
    next_index: int
    next_position: int
    last_pts: float | None
    last_kept_index: int = 0  # the frame a dedup-dropped next frame would map to
    last_signature: torch.Tensor | None = None  # dedup compares the next frame with it


@dataclass
class _Resident:
    index: int
    position: int
    tokens: int
    span: int  # RoPE positions the segment occupies (< tokens under M-RoPE, where a grid shares them)
    pts: float
    positions: torch.Tensor | None  # of every token, [T] or [3, T]: to undo RoPE for retrieval keys
    stored: bool = False  # read back from storage as context (``preload``): never exported again


class StreamSession:
    def __init__(
        self,
        backend: VLMBackend,
        carriers: CarrierSpec | str = "native",
        *,
        resume: ResumePoint | None = None,
        context_frames: int = CONTEXT_FRAMES,
    ) -> None:
        """``context_frames``: how many kept frames before it a frame attends to (besides the sink),
        whatever else is on the device: a frame's KV is a function of the stream alone, not of how
        frames were batched, how long the window was, or where a restart resumed (``preload``)."""
        self.backend = backend
        self.context_frames = context_frames
        self.spec = CarrierSpec.parse(carriers) if isinstance(carriers, str) else carriers
        if self.spec.needs_importance and not backend.supports_importance:
            raise UserError(
                f"{self.spec} carriers need vision attention, which {backend.model_id} does not expose"
            )
        grid = backend.token_grid
        if self.spec.kind == "pool" and grid is not None and self.spec.k > grid[0] * grid[1]:
            n = grid[0] * grid[1]
            raise UserError(
                f"pool:{self.spec.k} asks for more carriers than {backend.model_id} has tokens a frame "
                f"({n}, a {grid[0]}x{grid[1]} grid): use pool:K with K <= {n}"
            )
        self.prompter = backend.prompter  # sink, tags and questions in the checkpoint's layout
        self.frames: list[FrameRecord] = []  # recent frames only: evict() forgets the old ones
        self._dedup = Deduper(self.spec.dedup_tau)
        self._resident: list[_Resident] = []
        self.lock = threading.RLock()  # appends and context building may come from different threads
        sink_ids = self.prompter.sink_ids
        self.sink_len = len(sink_ids)
        self.cache: DynamicCache = backend.new_cache()
        backend.forward(
            backend.embed_ids(sink_ids), self.cache, backend.text_positions(0, self.sink_len), logits=False
        )
        self.next_position = self.sink_len
        self.next_index = 0
        self.last_pts: float | None = None
        self._last_kept = 0
        if resume is not None:  # a stream continued after a restart: numbering and positions go on
            if resume.next_position < self.sink_len:
                raise ValueError(
                    f"resume position {resume.next_position} is inside the sink ({self.sink_len})"
                )
            self.next_index, self.next_position, self.last_pts = (
                resume.next_index,
                resume.next_position,
                resume.last_pts,
            )
            self._last_kept = resume.last_kept_index
            self._dedup.last_kept = resume.last_signature

    def resume_point(self) -> ResumePoint:
        """What a new session needs to continue this stream (memory/ stores it with the stream)."""
        return ResumePoint(
            self.next_index, self.next_position, self.last_pts, self._last_kept, self._dedup.last_kept
        )

    @property
    def tokens_per_frame(self) -> int:
        return self.spec.tokens_per_frame(self.backend)

    @torch.inference_mode()
    def append(
        self, frames: Sequence[tuple[float, np.ndarray]], features: VisionFeatures | None = None
    ) -> list[FrameRecord]:
        """Encode a batch of (pts, RGB frame) in one vision forward and prefill the kept ones once.

        ``features``: the frames' vision features when a scheduler already ran the tower on them in
        a batch with other streams' frames (the tower sees each frame alone, so they are the same)."""
        if not frames:
            return []
        with self.lock:
            last = self.last_pts
            for pts, _ in frames:
                if last is not None and pts <= last:
                    raise UserError(f"frame pts {pts:.3f}s is not after the previous frame ({last:.3f}s)")
                last = pts
            backend = self.backend
            if features is None:
                features = backend.encode_frames(
                    [img for _, img in frames], need_importance=self.spec.needs_importance
                )
            elif (
                len(features) != len(frames)
                or (self.spec.needs_importance and features.importance is None)
                or (backend.signature_layer is not None and features.signature_tokens is None)
            ):
                raise ValueError(
                    "features must be the frames' own, with importance where the carriers need it and "
                    "the signature layer's tokens where the checkpoint names one"
                )
            carriers, grid = compress(self.spec, features, backend)
            signatures = frame_signature(features)
            pieces: list[torch.Tensor] = []
            places: list[torch.Tensor] = []
            records: list[FrameRecord] = []
            position = self.next_position
            kept_as = self._last_kept
            for i, (pts, _) in enumerate(frames):
                index = self.next_index + len(records)
                if not self._dedup.keep(signatures[i]):
                    records.append(FrameRecord(index, pts, 0, 0, None, kept_as, signatures[i]))
                    continue
                tag = self.prompter.tag_ids(pts)
                segment, where, end = backend.frame_segment(position, tag, carriers[i], grid)
                pieces.append(segment)
                places.append(where)
                kept_as = index
                records.append(
                    FrameRecord(
                        index, pts, carriers.shape[1], segment.shape[0], position, index, signatures[i]
                    )
                )
                self._resident.append(
                    _Resident(index, position, segment.shape[0], end - position, pts, where)
                )
                position = end
            if pieces:
                embeds = torch.cat(pieces)
                visible = self._visible([p.shape[0] for p in pieces])
                backend.forward(embeds, self.cache, torch.cat(places, dim=-1), logits=False, visible=visible)
            self.next_position = position
            self.next_index += len(records)
            self.last_pts = records[-1].pts
            self._last_kept = kept_as
            self.frames.extend(records)
            return records

    def _visible(self, sizes: list[int]) -> torch.Tensor | None:
        """Which keys the new frames' tokens (segments of ``sizes``, already in ``_resident``)
        attend to: the sink, the ``context_frames`` kept frames before their own, and their own
        frame up to themselves. None where that is everything before them (a plain causal pass)."""
        segments = [r.tokens for r in self._resident]  # cached frames, then the new ones, in order
        first_new = len(segments) - len(sizes)
        if len(segments) - 1 <= self.context_frames:
            return None  # no new frame has more frames before it than it may see
        starts, at = [], self.sink_len
        for n in segments:
            starts.append(at)
            at += n
        cached, total = starts[first_new], at
        visible = torch.zeros(total - cached, total, dtype=torch.bool)
        visible[:, : self.sink_len] = True
        for k in range(first_new, len(segments)):
            rows = slice(starts[k] - cached, starts[k] - cached + segments[k])
            lo = starts[max(0, k - self.context_frames)]
            visible[rows, lo : starts[k]] = True  # the frames before it
            visible[rows, starts[k] : starts[k] + segments[k]] = torch.ones(
                segments[k], segments[k], dtype=torch.bool
            ).tril()  # its own tokens, causally
        return visible

    # -- moving KV out and in -------------------------------------------------------------------
    @property
    def resident_frames(self) -> list[int]:
        """Kept frames on the device that are not stored yet (what a rolling memory exports)."""
        return [r.index for r in self._resident if not r.stored]

    def preload(self, chunks: Sequence[KVChunk]) -> int:
        """Put the stream's last stored frames (its newest ``chunks``, oldest first) back on the
        device as context, after a restart: the next frames attend to them as they would have if
        the stream had never stopped. Exact slices of what was stored; never exported again; the
        next evict drops them. 1-D RoPE only (M-RoPE chunks cannot be cut into frames): returns how
        many frames were loaded (0 where none could be)."""
        with self.lock:
            if self.context_frames <= 0 or self._resident or not chunks:
                return 0
            if not all(c.cuttable for c in chunks):
                return 0
            frames = [f for c in chunks for f in c.split_frames()][-self.context_frames :]
            ends = [f.position + f.span for f in frames]
            gaps = any(e != f.position for e, f in zip(ends[:-1], frames[1:], strict=True))
            if ends[-1] != self.next_position or gaps:
                return 0  # not the run of frames right before the resume point: none rather than wrong
            keys = torch.cat([f.keys for f in frames], dim=2)  # [layers, kv_heads, tokens, dim]
            values = torch.cat([f.values for f in frames], dim=2)
            for i, layer in enumerate(self.cache.layers):  # the sink, then these frames
                k = keys[i : i + 1].to(layer.keys.device, layer.keys.dtype)
                v = values[i : i + 1].to(layer.values.device, layer.values.dtype)
                layer.keys = torch.cat([layer.keys, k], dim=2)
                layer.values = torch.cat([layer.values, v], dim=2)
            for f in frames:
                span = f.frames[0]
                self._resident.append(
                    _Resident(span.index, f.position, f.tokens, f.span, span.pts, None, stored=True)
                )
            return len(frames)

    def export(self, first: int, last: int) -> KVChunk:
        """The KV of resident kept frames with index in [first, last], as one movable chunk."""
        with self.lock:
            offset = self.sink_len
            start = stop = end = None
            spans: list[FrameSpan] = []
            places: list[torch.Tensor] = []
            for r in self._resident:
                if first <= r.index <= last and not r.stored:
                    if start is None:
                        start, position = offset, r.position
                    spans.append(FrameSpan(r.index, r.pts, offset - start, r.tokens))
                    places.append(r.positions)
                    stop, end = offset + r.tokens, r.position + r.span
                offset += r.tokens
            if start is None:
                raise KeyError(f"no resident frame in [{first}, {last}]")
            keys, values = cache_tensors(self.cache)
            keys = keys[:, :, start:stop]
            angles = self.backend.rope_angles(torch.cat(places, dim=-1))
            return KVChunk(
                content_keys=rotate(keys, -angles).float().mean(dim=2),
                keys=keys.clone(),
                values=values[:, :, start:stop].clone(),
                position=position,
                frames=spans,
                model_id=self.backend.model_id,
                carriers=str(self.spec),
                span=end - position,
            )

    def evict(self, through: int) -> int:
        """Drop the device KV of resident frames with index <= ``through`` (after they were exported)."""
        with self.lock:
            gone = [r for r in self._resident if r.index <= through]
            if not gone:
                return 0
            n = sum(r.tokens for r in gone)
            s = self.sink_len
            for layer in self.cache.layers:
                layer.keys = torch.cat([layer.keys[:, :, :s], layer.keys[:, :, s + n :]], dim=2)
                layer.values = torch.cat([layer.values[:, :, :s], layer.values[:, :, s + n :]], dim=2)
            self._resident = self._resident[len(gone) :]
            self.frames = [r for r in self.frames if r.index > through]
            return n

    def sink_kv(self) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = cache_tensors(self.cache)
        return keys[:, :, : self.sink_len], values[:, :, : self.sink_len]

    def answerer(self) -> Answerer:
        """Answers on this session's own sink (for callers that hold a session, not a QA engine)."""
        return Answerer(self.backend, self.sink_kv())

    def context(self, chunks: Sequence[KVChunk] | None = None):
        """A fresh cache of sink + ``chunks`` (default: every resident frame) at contiguous positions.

        Returns the cache and the position where the question starts.
        """
        with self.lock:
            return self.answerer().context(self._chunks_or_window(chunks))

    def _chunks_or_window(self, chunks: Sequence[KVChunk] | None) -> Sequence[KVChunk]:
        if chunks is not None:
            return chunks
        own = self.resident_frames  # stored context frames (preload) are not this session's to export
        return [self.export(own[0], own[-1])] if own else []

    def ask(
        self,
        question: str,
        *,
        chunks: Sequence[KVChunk] | None = None,
        anchor_pts: float | None = None,
        params: SamplingParams | None = None,
        cancel: threading.Event | None = None,
        record_logits: bool = False,
    ) -> Generation:
        """Answer on sink + ``chunks`` (default: the resident window); iterate for streamed text."""
        with self.lock:
            chunks = self._chunks_or_window(chunks)
            answerer = self.answerer()
        return answerer.ask(
            question, chunks, anchor_pts=anchor_pts, params=params, cancel=cancel, record_logits=record_logits
        )

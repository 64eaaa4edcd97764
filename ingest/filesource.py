"""Sampling frames from a file (or a finite URL such as an MP4 over HTTP or an HLS VOD playlist).

Four methods return the same kind of frames, each with the exact pts of the frame returned:

- ``decode``: decode every frame, convert only the kept ones to RGB. Cost ~ decoding the whole file.
  Best when every GOP holds a sampling slot (long GOPs, or a high target fps). For H.264, packets of
  non-reference pictures (most B-frames) that fall before the next slot are not decoded at all
  (:mod:`scenekv.ingest.h264`): nothing depends on them, so the result is unchanged and exact.
- ``seek``: before each slot, if the container index shows a keyframe between the decoder's position
  and the slot, seek to it and decode forward from there; otherwise keep decoding. Whole GOPs without
  a slot are skipped, so it wins with short GOPs; with long GOPs it degenerates to ``decode``.
  The landing point is verified against real frame pts, so the result equals ``decode``'s.
- ``keyframes``: decode keyframes only (non-key packets are not even sent to the decoder). Fastest,
  but APPROXIMATE: each slot gets the first keyframe at or after it, up to one GOP late, and slots
  without a keyframe stay empty. The pts reported are the keyframes' own, exact.
- ``decord``: decord's random access by frame index; frame pts come from a demux-only pass over the
  packets (exact), and the frames are picked with the same slot rule. Local files only.

``auto`` picks ``seek`` when the container has a keyframe index and the target rate is below the video's
(seeking only ever skips work, and was faster for both 0.48 s and 10 s GOPs), else ``decode``; it
never picks an approximate method. Measurements behind the choice are in docs/benchmarks.md.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from collections.abc import Iterator

import av

from .base import Frame, Source, SourceStats
from .errors import DamagedMediaWarning, InvalidOption, NotMedia
from .h264 import disposable_checker
from .probe import VideoInfo, describe, video_stream
from .sampling import EPS, Resize, Sampler, frame_turns, to_rgb

log = logging.getLogger(__name__)

METHODS = ("auto", "decode", "seek", "keyframes", "decord")
_MAX_CONSECUTIVE_DEMUX_ERRORS = 100
# Codecs where every packet holds exactly one frame, so a packet that yields no frame was damaged.
# (VP8/VP9 have invisible frames and AV1 temporal units, so they are not counted this way.)
# Containers whose duration is written in the header (not estimated from damaged timestamps).
_HEADER_DURATION_FORMATS = {"matroska", "mov", "avi"}
_ONE_FRAME_PER_PACKET = {"h264", "hevc", "mpeg4", "mpeg2video", "mjpeg"}


def choose_method(method: str, info: VideoInfo, fps: float | None, local: bool) -> str:
    """Resolve ``auto`` and reject methods the source cannot support."""
    if method not in METHODS:
        raise InvalidOption(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if method == "decord" and not local:
        raise InvalidOption("method 'decord' reads local files only")
    if method != "auto":
        return method
    # seek only jumps when a keyframe lies between the decoder and the next slot, so with an index it
    # never decodes more than decode does; without one (MPEG-TS) it would have to guess.
    if fps is None or info.gop_s is None or (info.fps and fps >= info.fps):
        return "decode"
    return "seek"


class FileSource(Source):
    """A finite source read from start to end; see the module docstring for the methods."""

    def __init__(
        self,
        container: av.container.InputContainer,
        name: str,
        *,
        fps: float | None,
        resize: Resize,
        method: str = "auto",
        local_path: str | None = None,
        start: float = 0.0,
        end: float | None = None,
    ) -> None:
        self.container = container
        self.start, self.end = start, end  # a time range of the file (seconds on its own timeline)
        self.name = name
        self.resize = resize
        self.fps = fps
        try:
            self.stream = video_stream(container, name)
            self.info = describe(container, self.stream)
            self.method = choose_method(method, self.info, fps, local_path is not None)
        except BaseException:
            container.close()
            raise
        self.stream.thread_type = "AUTO"
        self.local_path = local_path
        self.start_time = self.info.origin
        self.stats = SourceStats(method=self.method)
        self._tb = self.stream.time_base
        self._tb_num, self._tb_den = self._tb.numerator, self._tb.denominator
        self._disposable = disposable_checker(self.info.codec, self.stream.codec_context.extradata)
        self._skip_before = -math.inf  # non-reference packets with pts before this are not decoded
        self._index = 0
        self._decoded_frames = 0
        self._last_pts: float | None = None
        self._last_duration = 0.0
        self._closed = False
        self._finished = False
        # close() may come from another thread while the consumer is inside next(): the generator
        # and the container are then released by the iterating thread as it leaves next()
        self._iterating = threading.Lock()
        self._release_lock = threading.Lock()
        self._released = False
        self._gen: Iterator[Frame] = getattr(self, "_" + self.method)()

    # -- iteration -------------------------------------------------------------------------------

    def __next__(self) -> Frame:
        if not self._iterating.acquire(blocking=False):
            raise RuntimeError(f"{self.name}: a source is iterated by one thread at a time")
        try:
            if self._closed or self._finished:
                raise StopIteration
            start = time.perf_counter()
            try:
                frame = next(self._gen)
                if self.end is not None and frame.pts >= self.end - EPS:
                    raise StopIteration
            except StopIteration:
                self._finish()
                raise
            finally:
                self.stats.decode_s += time.perf_counter() - start
            self.stats.frames += 1
            return frame
        finally:
            self._iterating.release()
            if self._closed:  # closed meanwhile (maybe from another thread): release here
                self._release()

    def close(self) -> None:
        """Stop the source; thread-safe. If another thread is inside next(), it releases on its way out."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        if self._iterating.acquire(blocking=False):
            try:
                self._release()
            finally:
                self._iterating.release()

    def _release(self) -> None:
        with self._release_lock:
            if self._released:
                return
            self._released = True
            gen = getattr(self, "_gen", None)
            try:
                if gen is not None and hasattr(gen, "close"):
                    gen.close()
            finally:
                self.container.close()

    def _finish(self) -> None:
        self._finished = True
        end = (self._last_pts or 0.0) + self._last_duration
        declared = self.info.duration
        note = ""
        if (
            self.method != "keyframes"
            and self.end is None  # a range stops early on purpose
            and declared
            and self.container.format.name.split(",")[0] in _HEADER_DURATION_FORMATS
            and end < declared - max(1.0, 2 * self._last_duration)
        ):
            # The demuxer drops a packet cut by truncation (or lost to resync) without a word.
            self.stats.bad_packets += 1
            note = f"; the video ends at {end:.2f} s but the file declares {declared:.2f} s (truncated?)"
        self.stats.duration = round(max(end, declared or 0.0), 6) if not note else round(end, 6)
        if self._decoded_frames == 0 and self.stats.bad_packets:
            self.close()
            raise NotMedia(f"{self.name}: no decodable video frame ({self.stats.bad_packets} bad packets)")
        if self.stats.bad_packets:
            msg = (
                f"{self.name}: skipped {self.stats.bad_packets} damaged packet(s); "
                f"every decodable frame was delivered{note}"
            )
            log.info(msg)  # callers get it as a DamagedMediaWarning
            warnings.warn(msg, DamagedMediaWarning, stacklevel=3)
        self.close()

    # -- shared plumbing ---------------------------------------------------------------------------

    def _pts(self, frame: av.VideoFrame) -> float:
        ticks = frame.pts if frame.pts is not None else frame.dts
        if ticks is None:  # no timestamp at all: assume the nominal rate
            step = 1.0 / self.info.fps if self.info.fps else 0.04
            return round((self._last_pts if self._last_pts is not None else -step) + step, 6)
        return round(ticks * self._tb_num / self._tb_den - self.info.origin, 6)

    def _note(self, frame: av.VideoFrame, pts: float) -> None:
        self._decoded_frames += 1
        if self._last_pts is None or pts > self._last_pts:
            self._last_pts = pts
            if frame.duration:
                self._last_duration = float(frame.duration * self._tb)
            elif self.info.fps:
                self._last_duration = 1.0 / self.info.fps
            self.stats.duration = round(pts + self._last_duration, 6)

    def _emit(self, image, pts: float) -> Frame:
        frame = Frame(index=self._index, pts=pts, image=image)
        self._index += 1
        return frame

    def _packets(self, keyframes_only: bool = False) -> Iterator[av.Packet]:
        """Demux the video stream, skipping (and counting) packets the demuxer cannot read."""
        errors = 0
        while True:
            try:
                for packet in self.container.demux(self.stream):
                    errors = 0
                    if packet.size and packet.is_corrupt:
                        self.stats.bad_packets += 1
                    if keyframes_only and packet.size and not packet.is_keyframe:
                        continue
                    yield packet
                return
            except av.error.EOFError:
                return
            except (av.FFmpegError, IndexError):  # IndexError: PyAV meets a stream born mid-file (damage)
                self.stats.bad_packets += 1
                errors += 1
                if errors > _MAX_CONSECUTIVE_DEMUX_ERRORS:
                    return

    def _frames(self, packets: Iterator[av.Packet]) -> Iterator[tuple[av.VideoFrame, float]]:
        """Decode packets into (frame, pts seconds); undecodable packets are counted and skipped.

        Decoders often swallow a damaged packet without an error; for one-frame-per-packet codecs the
        packets that never came out as a frame are counted when the decoder is drained.
        """
        sent = out = skipped = 0
        disposable = self._disposable
        for packet in packets:
            if (
                disposable is not None
                and packet.size
                and packet.pts is not None
                and packet.pts * self._tb_num / self._tb_den - self.info.origin < self._skip_before - EPS
                and disposable(bytes(packet))
            ):
                skipped += 1
                self.stats.extra["skipped_packets"] = skipped
                continue
            if packet.size:
                sent += 1
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                self.stats.bad_packets += 1
                sent -= 1
                continue
            for frame in decoded:
                out += 1
                if frame.is_corrupt:
                    self.stats.bad_packets += 1
                pts = self._pts(frame)
                self._note(frame, pts)
                yield frame, pts
            if not packet.size and self.info.codec in _ONE_FRAME_PER_PACKET and sent > out:
                self.stats.bad_packets += sent - out  # the flush packet: the decoder is drained

    # -- methods -----------------------------------------------------------------------------------

    def _sampler(self) -> Sampler:
        sampler = Sampler(self.fps, origin=0.0)
        sampler.skip_to(self.start)
        return sampler

    def _before_start(self, sampler: Sampler, pts: float) -> bool:
        """Frames of a range decoded before its start only set the sampler's state (see observe)."""
        if self.start > 0 and pts < self.start - EPS:
            if not sampler.kept:  # a later seek may land before the start again: state is set once
                sampler.observe(pts)
            return True
        return False

    def _decode(self) -> Iterator[Frame]:
        sampler = self._sampler()
        # A range jumps instead of decoding up to its start, landing strictly before it so that the
        # start's predecessor is decoded (it decides whether the first frame of the range is kept).
        frames = self._seek_to(self.start - 2 * EPS) if self.start > 0 else None
        for frame, pts in frames or self._frames(self._packets()):
            if self._before_start(sampler, pts):
                continue
            if sampler.take(pts):
                self._skip_before = sampler.next_time
                yield self._emit(to_rgb(frame, self.resize, frame_turns(frame)), pts)

    def _keyframes(self) -> Iterator[Frame]:
        gop = self.info.gop_s
        if self.fps and gop and gop > 1.0 / self.fps + EPS:
            msg = (
                f"{self.name}: keyframes are {gop:.2f} s apart but {self.fps:g} fps asks for a frame every "
                f"{1 / self.fps:.2f} s; method 'keyframes' returns fewer frames (use 'decode' or 'seek')"
            )
            warnings.warn(msg, UserWarning, stacklevel=4)
        self.stream.codec_context.skip_frame = "NONKEY"
        sampler = self._sampler()
        for frame, pts in self._frames(self._packets(keyframes_only=True)):
            if sampler.take(pts):
                yield self._emit(to_rgb(frame, self.resize, frame_turns(frame)), pts)

    def _seek(self) -> Iterator[Frame]:
        sampler = self._sampler()
        info = self.info
        no_index_gap = max(4.0, 2 * (info.gop_s or 0.0))
        frames: Iterator[tuple[av.VideoFrame, float]] | None = None
        position: float | None = None  # pts of the last decoded frame
        can_seek = True
        begin = self.start > 0  # a range first lands before its start, to see the start's predecessor
        while True:
            target = self.start - 2 * EPS if begin else sampler.next_time
            begin = False
            keyframe = info.keyframe_before(target)
            if info.keyframes:
                jump = keyframe is not None and keyframe > (position if position is not None else 0.0) + EPS
            else:
                jump = target - (position if position is not None else 0.0) > no_index_gap
            if jump and can_seek:
                landed = self._seek_to(target)
                if landed is None:
                    can_seek = False  # the demuxer refused: keep decoding where we are
                else:
                    frames = landed
            if frames is None:
                frames = self._frames(self._packets())
            for frame, pts in frames:
                position = pts
                if self._before_start(sampler, pts):
                    continue
                if sampler.take(pts):
                    self._skip_before = sampler.next_time
                    yield self._emit(to_rgb(frame, self.resize, frame_turns(frame)), pts)
                    break
            else:
                return

    def _seek_to(self, target: float) -> Iterator[tuple[av.VideoFrame, float]] | None:
        """Seek so that decoding starts at or before ``target``; None if the demuxer cannot seek.

        Index timestamps are decode times and some demuxers land after the requested time, so the first
        decoded frame is checked and the seek repeated further back until it starts early enough.
        """
        back = 0.0
        step = max(self.info.gop_s or 0.0, 1.0)
        for _ in range(4):
            start = max(target - back, 0.0)
            try:
                self.container.seek(int((start + self.info.origin) / self._tb), stream=self.stream)
            except av.FFmpegError:
                return None
            frames = self._frames(self._packets())
            first = next(frames, None)
            if first is None:  # nothing after the target: the end of the file
                return frames
            if first[1] <= target + EPS or start <= 0.0:
                break
            back = back * 2 + step
        return _prepend(first, frames)

    def _decord(self) -> Iterator[Frame]:
        try:
            import decord
        except ImportError as exc:  # decord has no wheels for some platforms
            raise InvalidOption("method 'decord' needs the decord package (pip install decord)") from exc
        decord.logging.set_level(decord.logging.QUIET)  # its bundled FFmpeg would print to stderr
        # Exact pts for every frame index: a demux-only pass, no decoding.
        pts_list = sorted(
            round(float(p.pts * self._tb) - self.info.origin, 6)
            for p in self._packets()
            if p.size and p.pts is not None
        )
        # decord applies the display matrix itself and takes the upright output size.
        first = self._first_frame()
        turns = frame_turns(first) if first is not None else 0
        upright = (self.info.height, self.info.width) if turns % 2 else (self.info.width, self.info.height)
        out = self.resize.output(*upright)
        scale = {} if out == upright else {"width": out[0], "height": out[1]}
        try:
            reader = decord.VideoReader(self.local_path, ctx=decord.cpu(0), num_threads=0, **scale)
        except decord.DECORDError as exc:
            raise NotMedia(f"{self.name}: decord cannot read it ({str(exc).splitlines()[0]})") from exc
        if len(reader) != len(pts_list):
            # Frame count disagrees (edit lists, damaged index): fall back to decord's own timestamps.
            pts_list = [round(float(s), 6) for s, _ in reader.get_frame_timestamp(range(len(reader)))]
        sampler = self._sampler()
        chosen = [i for i, pts in enumerate(pts_list) if sampler.take(pts)]
        self._decoded_frames = len(pts_list)
        if pts_list:
            self._last_pts = pts_list[-1]
            self._last_duration = 1.0 / self.info.fps if self.info.fps else 0.0
        for start in range(0, len(chosen), 8):
            batch = chosen[start : start + 8]
            try:
                images = reader.get_batch(batch).asnumpy()
            except decord.DECORDError as exc:
                raise NotMedia(
                    f"{self.name}: decord failed on damaged data; method 'decode' skips damaged packets"
                ) from exc
            for i, image in zip(batch, images, strict=True):
                yield self._emit(image, pts_list[i])

    def _first_frame(self) -> av.VideoFrame | None:
        self.container.seek(0, stream=self.stream)
        for frame, _ in self._frames(self._packets()):
            return frame
        return None


def _prepend(first, rest):
    yield first
    yield from rest

"""Live sources (RTSP, RTMP, UDP, live HTTP MPEG-TS / HLS): bounded lag, reconnects, clean shutdown.

A reader thread demuxes, decodes and samples; only kept frames are converted to RGB and put into a
:class:`~scenekv.ingest.latest.LatestQueue` that drops the oldest frame when the consumer falls behind,
so lag stays bounded by ``queue_size`` frames and drops are counted in ``stats.dropped``.

Timeline: pts 0 is the first frame received. A live stream's own timestamps are arbitrary (MPEG-TS
starts anywhere, RTSP restarts on reconnect), so after a reconnect, or a backwards jump of the stream
clock, the timeline continues from the last pts plus the wall-clock gap: pts stay increasing and
roughly track real time.

When the stream drops (EOF, error, or no data for ``timeout`` seconds) the reader reconnects with
exponential backoff (:class:`Reconnect`); after ``max_attempts`` failures in a row, or
``give_up_after`` seconds without a frame, iteration ends with a :class:`SourceLostWarning` and
``stats.error`` set. ``close()`` stops the reader; it returns within ``close_timeout`` even if the
thread is stuck in a network read (the thread is a daemon and exits by itself within ``timeout``).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import av

from .base import Frame, Source, SourceStats
from .errors import IngestError, SourceLostWarning
from .latest import Closed, LatestQueue
from .probe import open_url, video_stream
from .sampling import Resize, Sampler, frame_turns, to_rgb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reconnect:
    """Backoff policy: wait ``initial``, then x``factor`` per failed attempt, at most ``max_delay``.

    Gives up after ``max_attempts`` consecutive failed attempts or ``give_up_after`` seconds without a
    frame (either may be None for no limit, not both). ``max_attempts=0`` disables reconnecting.
    """

    initial: float = 0.5
    factor: float = 2.0
    max_delay: float = 10.0
    max_attempts: int | None = 8
    give_up_after: float | None = 120.0

    def delay(self, failures: int) -> float:
        return min(self.initial * self.factor**failures, self.max_delay)


class LiveSource(Source):
    live = True

    def __init__(
        self,
        url: str,
        container: av.container.InputContainer,
        *,
        fps: float | None,
        resize: Resize,
        timeout: float = 5.0,
        queue_size: int = 2,
        reconnect: Reconnect | None = None,
        options: dict[str, str] | None = None,
        close_timeout: float = 2.0,
    ) -> None:
        self.name = url
        self.url = url
        self.fps = fps
        self.resize = resize
        self.timeout = timeout
        self.options = options
        self.reconnect = reconnect if reconnect is not None else Reconnect()
        self.close_timeout = close_timeout
        self.stats = SourceStats(method="live")
        try:
            video_stream(container, url)
        except BaseException:
            container.close()
            raise
        self._queue: LatestQueue[Frame] = LatestQueue(queue_size)
        self._stop = threading.Event()
        self._sampler = Sampler(fps, origin=0.0)
        self._index = 0
        self._base: float | None = None  # stream seconds that map to pts 0 on the current connection
        self._last_pts: float | None = None
        self._last_wall = time.monotonic()
        self._rebase = False
        self._closed = False
        self._warned = False
        self._thread = threading.Thread(target=self._run, args=(container,), name="scenekv-live", daemon=True)
        self._thread.start()

    # -- consumer side -----------------------------------------------------------------------------

    def __next__(self) -> Frame:
        try:
            frame, waited = self._queue.get()
        except Closed:
            self._end()
            raise StopIteration from None
        self.stats.frames += 1
        self.stats.lag_s = round(waited, 6)
        return frame

    def _end(self) -> None:
        if self.stats.error and not self._warned and not self._closed:
            self._warned = True
            warnings.warn(self.stats.error, SourceLostWarning, stacklevel=3)

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._stop.set()
        self._queue.close(discard=True)
        if self._thread is not threading.current_thread():
            self._thread.join(self.close_timeout)

    # -- reader thread -----------------------------------------------------------------------------

    def _run(self, container: av.container.InputContainer | None) -> None:
        failures = 0
        try:
            while container is not None and not self._stop.is_set():
                got_frames, reason = self._read(container)
                container.close()
                container = None
                if self._stop.is_set():
                    break
                if got_frames:
                    failures = 0
                log.warning("live source %s dropped (%s); reconnecting", self.url, reason)
                container, failures = self._reconnect(failures, reason)
        except Exception as exc:  # a bug or an unexpected FFmpeg state: end the stream, keep the reason
            log.exception("live reader for %s failed", self.url)
            self.stats.error = f"{self.url}: reader failed: {exc}"
        finally:
            if container is not None:
                container.close()
            self._queue.close()

    def _reconnect(self, failures: int, reason: str) -> tuple[av.container.InputContainer | None, int]:
        policy = self.reconnect
        while not self._stop.is_set():
            silent = time.monotonic() - self._last_wall
            if (policy.max_attempts is not None and failures >= policy.max_attempts) or (
                policy.give_up_after is not None and silent > policy.give_up_after
            ):
                if policy.max_attempts == 0:
                    self.stats.error = f"lost {self.url} ({reason}); reconnecting is disabled"
                else:
                    self.stats.error = (
                        f"lost {self.url} ({reason}); gave up after {failures} reconnect attempt(s) "
                        f"and {silent:.0f} s without frames"
                    )
                log.info(self.stats.error)  # the consumer gets it as a SourceLostWarning
                return None, failures
            if self._stop.wait(policy.delay(failures)):
                return None, failures
            failures += 1
            try:
                container = open_url(self.url, timeout=self.timeout, options=self.options)
                video_stream(container, self.url)
            except IngestError as exc:
                reason = str(exc)
                continue
            self.stats.reconnects += 1
            self._rebase = True
            log.info("reconnected to %s", self.url)
            return container, failures
        return None, failures

    def _read(self, container: av.container.InputContainer) -> tuple[bool, str]:
        """Decode until the stream ends, fails or we are stopped; returns (any frame?, why it ended)."""
        stream = video_stream(container, self.url)
        stream.thread_type = "AUTO"
        tb = stream.time_base
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        step = 1.0 / float(rate) if rate else 0.04
        got = False
        packets: Iterator[av.Packet] = container.demux(stream)
        while not self._stop.is_set():
            try:
                packet = next(packets)
            except StopIteration:
                return self._drain(stream, tb, step) or got, "end of stream"
            except av.error.ExitError:
                return self._drain(stream, tb, step) or got, f"no data for {self.timeout:g} s"
            except (av.FFmpegError, OSError) as exc:
                return self._drain(stream, tb, step) or got, str(getattr(exc, "strerror", None) or exc)
            if packet.size and packet.is_corrupt:
                self.stats.bad_packets += 1
            started = time.perf_counter()
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                self.stats.bad_packets += 1
                continue
            for frame in decoded:
                got = True
                self._offer(frame, tb, step)
            self.stats.decode_s += time.perf_counter() - started
        return got, "closed"

    def _drain(self, stream, tb, step: float) -> bool:
        """The connection ended: the frames still inside the decoder (reordering, threads) are real."""
        got = False
        try:
            for frame in stream.codec_context.decode(None):
                got = True
                self._offer(frame, tb, step)
        except av.FFmpegError:
            pass
        return got

    def _offer(self, frame: av.VideoFrame, tb, step: float) -> None:
        now = time.monotonic()
        last = self._last_pts
        if frame.pts is None or tb is None:
            if last is None:
                return  # RTSP delivers the first frames before RTCP gives them a clock: untimeable
            pts = round(last + step, 6)
        else:
            raw = float(frame.pts * tb)
            jumped_back = self._base is not None and last is not None and raw - self._base < last - 0.5
            if self._base is None or self._rebase or jumped_back:
                if last is None:
                    self._base = raw
                else:  # continue the timeline: last pts + the wall-clock gap (at least one frame)
                    gap = max(now - self._last_wall, step) if (self._rebase or jumped_back) else step
                    self._base = raw - (last + gap)
                self._rebase = False
                if self.start_time is None:
                    self.start_time = self._base
            pts = round(raw - self._base, 6)
        self._last_wall = now
        if last is None or pts > last:
            self._last_pts = pts
            self.stats.duration = round(
                pts + (float(frame.duration * tb) if frame.duration and tb else step), 6
            )
        if self._sampler.take(pts):
            image = to_rgb(frame, self.resize, frame_turns(frame))
            if not self._queue.put(Frame(index=self._index, pts=pts, image=image)) and not self._queue.closed:
                self.stats.dropped += 1
            self._index += 1

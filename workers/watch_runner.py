"""Watches evaluated where the readings are made: in the encoder, as each read frame is stored.

``on_readings`` is a StreamHub ``on_readings`` hook: for every stored reading it loads the stream's
watches (one HGETALL), feeds each watch's detector (qa/watch_detector.py) and stores what it finds
(memory/watches.py: one idempotent Lua step, which also logs ``watch.hit`` for the gateways). So a
hit costs no model pass of its own: the reading was being made for the content index anyway, and a
watch's latency is the readings' (made between vision batches) plus its ``confirm`` frames.

A detector lives in this process; a new one (a watch just added, an encoder restarted, a stream
moved here) is restored from what is stored: the watch's last hit (open: its start; ended: its end,
for the cooldown) and the read frames since, up to ``REPLAY`` of them. Replays find the hits already
stored, and the store tells them apart by (watch, start), so nothing is told twice.

Checkpoints that read no frames (real ones) have their watches matched against scene captions as
they are written (``on_caption``): the hit is the scene, start and end at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from scenekv.memory import MemoryStore, Reading
from scenekv.memory.watches import Watch, WatchHit
from scenekv.qa.watch_detector import Ended, Started, WatchDetector, WatchMatcher, WatchParams

from .webhooks import WebhookSender

log = logging.getLogger(__name__)

REPLAY = 8  # read frames replayed into a restored detector (more than confirm + end_after)


class WatchRunner:
    def __init__(
        self, store: MemoryStore, webhooks: WebhookSender | None = None, params: WatchParams | None = None
    ) -> None:
        self.store, self.webhooks = store, webhooks
        self.params = params or WatchParams()
        self._detectors: dict[tuple[str, str, float], tuple[WatchDetector, WatchMatcher]] = {}
        self._lock = threading.Lock()  # hooks run in the thread that made the reading
        self.hits = 0  # hits stored (new ones and ends)

    def on_readings(self, sid: str, readings: Sequence[Reading]) -> None:
        """Feed newly stored readings (time order) to the stream's watches."""
        if not readings:
            return
        watches = self.store.watches(sid)
        with self._lock:
            self._forget_removed(sid, watches)
            for watch in watches:
                detector, matcher = self._detector(sid, watch, readings[0].pts)
                for reading in readings:
                    for change in detector.process(reading.pts, matcher.reading(reading)):
                        self._record(sid, watch, change)

    def on_caption(self, sid: str, scene_id: int, start: float, end: float | None, caption: str) -> None:
        """A scene's caption written: each watch it matches gets one hit, start and end at once
        (quiet within the watch's cooldown of its previous hit's end)."""
        for watch in self.store.watches(sid):
            if WatchMatcher.of(watch.text).caption(caption):
                before = [h for h in self.store.watch_hits(sid, watch.id, quiet=True) if h.start < start]
                last_end = before[-1].end if before else None
                quiet = last_end is not None and start - last_end < watch.cooldown_s
                span = (start, end if end is not None else start)
                self._store(sid, watch, WatchHit(watch.id, watch.text, start, end, scene_id, [span], quiet))

    def finish(self, sid: str, step: float) -> None:
        """The stream ended: every appearance still open ends after its last matching frame (also
        one this process never saw begin: its detector is restored first); the detectors go."""
        newest = self.store.read_through(sid)
        with self._lock:
            for watch in self.store.watches(sid):
                detector, _ = self._detector(sid, watch, float("inf") if newest is None else newest + 1e-6)
                for change in detector.finish(step):
                    self._record(sid, watch, change)
        self.forget(sid)

    def forget(self, sid: str) -> None:
        """Drop the stream's detectors (it left this encoder): restored from Redis if it comes back."""
        with self._lock:
            for key in [k for k in self._detectors if k[0] == sid]:
                del self._detectors[key]

    def _forget_removed(self, sid: str, watches: Sequence[Watch]) -> None:
        alive = {(sid, w.id, w.created) for w in watches}
        for key in [k for k in self._detectors if k[0] == sid and k not in alive]:
            del self._detectors[key]

    def _detector(self, sid: str, watch: Watch, before: float) -> tuple[WatchDetector, WatchMatcher]:
        key = (sid, watch.id, watch.created)
        found = self._detectors.get(key)
        if found is None:
            found = self._restore(sid, watch, before)
            self._detectors[key] = found
        return found

    def _restore(self, sid: str, watch: Watch, before: float) -> tuple[WatchDetector, WatchMatcher]:
        """A detector as if it had run all along: the watch's last stored hit (told or quiet; open:
        under way from its start; ended: the cooldown counts from its end), then at most ``REPLAY``
        read frames after it and before ``before``. A watch with no hit yet replays the last
        ``REPLAY`` frames: an appearance in progress when it was added is told."""
        matcher = WatchMatcher.of(watch.text)
        detector = WatchDetector(self.params, watch.cooldown_s)
        hits = self.store.watch_hits(sid, watch.id, quiet=True)
        after = None
        if hits:
            last = hits[-1]
            if last.end is None:  # under way: told (or quiet) already
                detector.open_start, detector.silent, after = last.start, last.quiet, last.start
            else:
                detector.last_end, after = last.end, last.end - 1e-6
        for reading in self.store.recent_readings(sid, before, after, REPLAY):
            for change in detector.process(reading.pts, matcher.reading(reading)):
                self._record(sid, watch, change)
        return detector, matcher

    def _record(self, sid: str, watch: Watch, change: Started | Ended) -> None:
        end = change.end if isinstance(change, Ended) else None
        scene_id = self.store.scene_at(sid, change.start) if not change.quiet else None
        self._store(
            sid,
            watch,
            WatchHit(watch.id, watch.text, change.start, end, scene_id, [change.evidence], change.quiet),
        )

    def _store(self, sid: str, watch: Watch, hit: WatchHit) -> None:
        try:
            stored = self.store.put_watch_hit(sid, watch, hit)
        except Exception:  # the reading stays stored; the next replay finds the hit again
            log.exception("storing a hit of watch %s on %s failed", watch.id, sid)
            return
        if not stored or hit.quiet:
            return
        self.hits += 1
        if watch.webhook and self.webhooks is not None:
            payload = {"type": "watch.hit", "stream_id": sid, **hit.as_message()}
            self.webhooks.send(watch.webhook, payload, allow=watch.webhook_allow)

"""Opening a stream's memory: what a new stream is registered with, and what attach checks against
and restores from it after a restart.

Both directions of the stream hash's opening fields (model, revision, carriers, tiler, retention)
are here, so a field ``register`` writes is read back by ``restore`` in the same file; the per-chunk
resume state is resume.py's. Either way the caller leaves holding the stream's writer lease.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scenekv.errors import UserError
from scenekv.vlm import StreamSession, VLMBackend
from scenekv.vlm.session import CONTEXT_FRAMES

from .records import StreamBusy
from .resume import StreamResume
from .retention import Retention
from .scenetiling import SceneTiler
from .store import MemoryStore

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .rolling import RollingConfig


@dataclass
class Opened:
    """The parts a RollingMemory is wired from, with the lease token it holds."""

    sid: str
    session: StreamSession
    tiler: SceneTiler
    config: RollingConfig
    token: str
    next_index: int = 0  # where the stream continues (0: a new stream)


def register(
    store: MemoryStore,
    backend: VLMBackend,
    config: RollingConfig,
    *,
    carriers: str,
    sid: str | None,
    source: str,
    fps: float,
) -> Opened:
    """Create the stream's record (StreamExists if ``sid`` is taken) and take its writer lease."""
    tiler = SceneTiler(config.tiler)
    config.check(tiler.lookahead)
    session = StreamSession(backend, carriers, context_frames=context_frames(config))
    sid = store.create_stream(
        sid,
        source=source,
        model=backend.model_id,
        fps=fps,
        carriers=str(session.spec),
        fields={
            "window": config.window,
            "chunk_frames": config.chunk_frames,
            "next_pos": session.next_position,
            "sink_len": session.sink_len,
            "tiler": json.dumps(tiler.state()),
            "revision": backend.revision or "",
            **config.retention.as_fields(),
        },
    )
    token = secrets.token_hex(8)
    store.claim(sid, token, config.lease_s)
    return Opened(sid, session, tiler, config, token)


def restore(
    store: MemoryStore, backend: VLMBackend, sid: str, config: RollingConfig, *, takeover: bool
) -> Opened:
    """Check that ``backend`` may continue ``sid``, take its lease (StreamBusy while another live
    process holds it, unless ``takeover``) and rebuild the session, tiler and retention it had."""
    h = store.stream_fields(sid)
    model = h["model"].decode()
    if model != backend.model_id:
        raise UserError(
            f"stream {sid!r} was recorded with model {model}; its KV cannot be continued with "
            f"{backend.model_id}",
            code="model_mismatch",
        )
    revision = h.get("revision", b"").decode()
    if backend.revision is not None and revision != backend.revision:
        raise UserError(
            f"stream {sid!r} was recorded with other weights of {model} (revision "
            f"{revision or 'unrecorded'}, loaded {backend.revision}): its KV and scene signatures "
            "cannot be continued; start a new stream",
            code="model_mismatch",
        )
    token = secrets.token_hex(8)
    if not store.claim(sid, token, config.lease_s, takeover=takeover):
        raise StreamBusy(
            f"stream {sid!r} is being written by another process (lease {config.lease_s:.0f}s); "
            "wait for it to stop, or take it over"
        )
    stored_state = StreamResume.from_fields(h)
    resume = stored_state.point()
    session = StreamSession(
        backend,
        h["carriers"].decode(),
        resume=resume if resume.next_index else None,
        context_frames=context_frames(config),
    )
    if session.next_position < session.sink_len:  # a stream that never wrote a frame
        session.next_position = session.sink_len
    elif resume.next_index:
        _preload(store, sid, session)
    tiler = SceneTiler.from_state(stored_state.tiler) if stored_state.tiler else SceneTiler(config.tiler)
    stored = Retention.from_fields(h)
    if stored is not None:  # the policy the stream was started with, whoever continues it
        config = dataclasses.replace(config, retention=stored)
    store.touch(sid)  # every key of the stream starts a fresh TTL, as any activity does
    return Opened(sid, session, tiler, config, token, resume.next_index)


def context_frames(config: RollingConfig) -> int:
    """Kept frames a frame attends to: at most what the device window always holds after an
    export (``window - chunk_frames``), so every frame sees exactly as many."""
    return max(0, min(CONTEXT_FRAMES, config.window - config.chunk_frames))


def _preload(store: MemoryStore, sid: str, session: StreamSession) -> None:
    """The stream's newest stored frames back on the device as the next frames' context."""
    if session.context_frames == 0:
        return
    metas = [m for m in store.chunk_index(sid) if m.last_frame < session.next_index]
    picked, frames = [], 0
    for meta in reversed(metas):  # newest first, until they hold enough frames
        picked.append(meta.cid)
        frames += meta.frames
        if frames >= session.context_frames:
            break
    if not picked:
        return
    try:
        session.preload(store.load_chunks(sid, list(reversed(picked)), strict=False))
    except Exception as exc:  # the stream continues all the same, its next frames without context
        log.warning(
            "stream %s continues without its last frames as context: %s: %s", sid, type(exc).__name__, exc
        )

"""What SceneKVService hands its callers (the gateway, the CLI): frozen, typed results.

The encoder actors answer in plain dicts (what Ray pickles cheaply and an older actor still sends);
the service turns them into these once, at its edge, so web/ reads named fields, not ``.get`` on
whatever keys an actor happened to send.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamInfo:
    """A stream opened (``start_stream``) or continued (``attach``)."""

    stream_id: str
    model: str | None = None
    random_weights: bool = False
    world_only: bool = False
    fps: float | None = None
    carriers: str | None = None
    last_pts: float | None = None
    source: str | None = None
    stream_key: str | None = None  # the owner key: only from start_stream, and only once
    reopened: bool = False  # attach: the stream was not open here (it takes a place again)

    @property
    def pushed(self) -> bool:
        """Frames come from clients (no file or URL behind it)."""
        return self.source in ("push", "", None)

    @classmethod
    def of(cls, info: dict, **extra) -> StreamInfo:
        return cls(**{k: info[k] for k in _FIELDS[cls] if k in info}, **extra)


@dataclass(frozen=True)
class ClosedScene:
    """A scene that closed, or (``start`` None) a caption for one announced before."""

    scene_id: int
    start: float | None = None
    end: float | None = None
    frames: int | None = None
    caption: str | None = None  # None: not captioned yet; "": the model wrote nothing

    @classmethod
    def of(cls, scene: dict) -> ClosedScene:
        scene = {**scene, "scene_id": int(scene.get("scene_id", scene.get("scene", -1)))}
        return cls(**{k: scene[k] for k in _FIELDS[cls] if k in scene})


@dataclass(frozen=True)
class PushResult:
    """One pushed frame encoded: the stream's newest pts and the scenes it closed."""

    last_pts: float | None
    closed: tuple[ClosedScene, ...] = ()


@dataclass(frozen=True)
class SceneRow:
    """One stored scene (``scenes``)."""

    scene_id: int
    start: float
    end: float
    caption: str | None
    closed: bool


@dataclass(frozen=True)
class Progress:
    """Where a stream is: its decoder's progress (file and live URL streams) and its memory."""

    status: str = "push"
    frames: int | None = None
    pts: float | None = None
    lag_s: float | None = None
    dropped: int | None = None
    restarts: int | None = None
    error: dict | None = None
    last_pts: float | None = None
    memory_bytes: int | None = None
    chunks: int | None = None
    scenes: int | None = None

    @classmethod
    def of(cls, decoder: dict, info: dict) -> Progress:
        out = {k: decoder[k] for k in _FIELDS[cls] if k in decoder}
        memory = {"last_pts": info.get("last_pts"), "memory_bytes": info.get("bytes")}
        memory.update(chunks=info.get("chunks"), scenes=info.get("scenes"))
        return cls(**{**out, **memory})


@dataclass(frozen=True)
class AnswerDelta:
    text: str


@dataclass(frozen=True)
class AnswerDone:
    text: str
    evidence: tuple = ()
    ttft_ms: float | None = None
    usage: dict | None = None
    finish_reason: str = "stop"


@dataclass(frozen=True)
class AnswerError:
    code: str
    message: str


AnswerEvent = AnswerDelta | AnswerDone | AnswerError


def answer_event(item: dict) -> AnswerEvent:
    """An encoder's answer item as a typed event."""
    kind = item.get("type")
    if kind == "delta":
        return AnswerDelta(item.get("text", ""))
    if kind == "done":
        return AnswerDone(
            text=item.get("text", ""),
            evidence=tuple(item.get("evidence") or ()),
            ttft_ms=item.get("ttft_ms"),
            usage=item.get("usage"),
            finish_reason=item.get("finish_reason") or "stop",
        )
    return AnswerError(item.get("code", "internal"), item.get("message", ""))


_FIELDS = {c: tuple(c.__dataclass_fields__) for c in (StreamInfo, ClosedScene, Progress)}
__all__ = [
    "AnswerDelta",
    "AnswerDone",
    "AnswerError",
    "AnswerEvent",
    "ClosedScene",
    "Progress",
    "PushResult",
    "SceneRow",
    "StreamInfo",
    "answer_event",
]

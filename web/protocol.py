"""The WebSocket protocol's client messages: parsing and validation, one place for every rule.

Every client message is checked here before it reaches the service, so a bad message becomes one
``error`` reply with a stable code and the connection stays usable. docs/protocol.md is the
user-facing description of the same rules.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from scenekv.errors import UserError
from scenekv.units import parse_seconds

# Stable error codes (docs/protocol.md lists them with their meaning).
BAD_JSON = "bad_json"
UNKNOWN_TYPE = "unknown_type"
BAD_REQUEST = "bad_request"
TOO_LARGE = "too_large"
RATE_LIMITED = "rate_limited"
NO_SESSION = "no_session"
NO_FRAMES = "no_frames"
BAD_PTS = "bad_pts"
BAD_IMAGE = "bad_image"
DUPLICATE_ID = "duplicate_id"
UNKNOWN_QUESTION = "unknown_question"
UNKNOWN_WATCH = "unknown_watch"
FORBIDDEN_SOURCE = "forbidden_source"
NOT_OWNER = "not_owner"
TOO_MANY_STREAMS = "too_many_streams"
GOING_AWAY = "going_away"
ENCODER_UNAVAILABLE = "encoder_unavailable"
INTERNAL = "internal"

MAX_ID_CHARS = 128
MAX_QUESTION_CHARS = 4000
MAX_TOKENS_LIMIT = 1024
MAX_HEADER_BYTES = 4096
MAX_SEARCH_CHARS = 500
MAX_SEARCH_STREAMS = 64  # qa/search.py's MAX_STREAMS
MAX_SEARCH_HITS = 100
MAX_WATCH_CHARS = 200
MAX_WEBHOOK_CHARS = 2048
MAX_COOLDOWN_S = 86400.0
MAX_SECONDS = 1e9  # any stream time or duration a client gives (31 years): far from float overflow
MAX_RETENTION_CHARS = 64
_DATA_URL = re.compile(r"^data:image/(jpeg|jpg|png|webp);base64,", re.IGNORECASE)
# the base64 body of a frame.append's image, found without parsing: what may exceed max_text_bytes
_IMAGE_RUN = re.compile(r'"data:image/[A-Za-z]+;base64,([A-Za-z0-9+/=]*)"')
NOT_URL_TEXT = re.compile(r"[^\x21-\x7e]")  # URLs a client gives: printable ASCII only
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class ProtocolError(UserError):
    """A message the server refuses; becomes ``{"type": "error", code, message, id?}``."""

    def __init__(self, code: str, message: str, *, id: str | None = None, **extra: Any) -> None:
        super().__init__(message, code=code)
        self.id = id
        self.extra = extra


@dataclass(frozen=True)
class SessionStart:
    source: str | None  # None when attaching to stream_id
    stream_id: str | None
    fps: float | None
    carriers: str | None
    # retention of a live or push stream, each at most the server's (memory.Retention field names)
    retention: dict | None = None
    stream_key: str | None = None  # with stream_id: the owner key, to push, end and edit watches


@dataclass(frozen=True)
class FrameAppend:
    pts: float
    image: bytes  # encoded JPEG / PNG


@dataclass(frozen=True)
class QuestionAsk:
    id: str
    text: str
    at: float | str | None
    range: tuple[float | str, float | str] | None
    last: float | None
    max_tokens: int


@dataclass(frozen=True)
class QuestionCancel:
    id: str


@dataclass(frozen=True)
class SessionEnd:
    pass


@dataclass(frozen=True)
class SearchRequest:
    id: str
    text: str
    streams: tuple[str, ...] | None  # None: every stream the server knows
    limit: int


@dataclass(frozen=True)
class WatchAdd:
    id: str
    text: str
    webhook: str | None  # http(s) URL: each hit is POSTed there as JSON
    cooldown_s: float


@dataclass(frozen=True)
class WatchRemove:
    id: str


ClientMessage = (
    SessionStart
    | FrameAppend
    | QuestionAsk
    | QuestionCancel
    | SessionEnd
    | SearchRequest
    | WatchAdd
    | WatchRemove
)


def encode(type_: str, **fields: Any) -> str:
    """A server message as JSON text (``None`` fields are left out)."""
    return json.dumps({"type": type_, **{k: v for k, v in fields.items() if v is not None}})


def error_message(code: str, message: str, id: str | None = None, **extra: Any) -> str:
    return encode("error", code=code, message=message, id=id, **extra)


def parse_text(text: str, *, max_text_bytes: int, max_frame_bytes: int) -> ClientMessage:
    """Parse one JSON text message. Frames may be larger than other messages (base64 images).

    Sizes are checked before ``json.loads``: only a frame.append may exceed ``max_text_bytes``, and
    only by its base64 image, so no other message costs a parse of megabytes (or of a nesting bomb)."""
    frame_limit = max_frame_bytes * 4 // 3 + MAX_HEADER_BYTES
    if _longer_than(text, frame_limit):
        raise ProtocolError(TOO_LARGE, f"message of {len(text)} characters exceeds {frame_limit} bytes")
    big = _longer_than(text, max_text_bytes)
    if big:
        image = _IMAGE_RUN.search(text)
        rest = len(text) - (len(image[1]) if image else 0)
        if rest > max_text_bytes:
            raise ProtocolError(
                TOO_LARGE,
                f"message exceeds {max_text_bytes} bytes (only a frame.append's image may be larger)",
            )
    msg = _loads(text)
    if not isinstance(msg, dict):
        raise ProtocolError(BAD_JSON, "a message must be a JSON object with a 'type'")
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(BAD_REQUEST, "missing field 'type'")
    if kind != "frame.append" and big:
        raise ProtocolError(TOO_LARGE, f"{kind} message of {len(text)} characters exceeds {max_text_bytes}")
    if not _is_text(text, msg):
        raise ProtocolError(
            BAD_REQUEST, "a string in the message is not text (a lone UTF-16 surrogate such as \\ud800)"
        )
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {kind!r}", id=_maybe_id(msg))
    return parser(msg, max_frame_bytes)


def parse_binary(data: bytes, *, max_frame_bytes: int) -> FrameAppend:
    """Binary frame: 4-byte big-endian header length, JSON header {pts}, then JPEG/PNG bytes."""
    if len(data) > max_frame_bytes + MAX_HEADER_BYTES:
        raise ProtocolError(TOO_LARGE, f"binary frame of {len(data)} bytes exceeds {max_frame_bytes}")
    if len(data) < 4:
        raise ProtocolError(BAD_REQUEST, "binary frame shorter than its 4-byte header length")
    (n,) = struct.unpack(">I", data[:4])
    if n > MAX_HEADER_BYTES or 4 + n > len(data):
        raise ProtocolError(BAD_REQUEST, f"binary frame header length {n} is out of range")
    try:
        header = _loads(data[4 : 4 + n])
    except UnicodeDecodeError as exc:
        raise ProtocolError(BAD_JSON, f"binary frame header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(BAD_JSON, "binary frame header must be a JSON object")
    image = bytes(data[4 + n :])
    if not image:
        raise ProtocolError(BAD_REQUEST, "binary frame has no image bytes")
    if len(image) > max_frame_bytes:
        raise ProtocolError(TOO_LARGE, f"image of {len(image)} bytes exceeds {max_frame_bytes}")
    return FrameAppend(pts=_pts(header), image=image)


def _loads(text: str | bytes) -> Any:
    """``json.loads`` with every way it fails as a ProtocolError: bad syntax or nesting too deep for
    the parser (RecursionError) is ``bad_json``; an integer of more than 4300 digits, which Python
    refuses to convert (ValueError), is ``bad_request``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(BAD_JSON, f"message is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(BAD_JSON, "message is not valid JSON: nested too deeply") from None
    except ValueError:
        raise ProtocolError(BAD_REQUEST, "a number in the message has too many digits") from None


def _longer_than(text: str, limit: int) -> bool:
    """Whether ``text`` is more than ``limit`` bytes as UTF-8, encoding it only when its length
    cannot tell: ``len(text) <= bytes <= 4 * len(text)``, and ASCII (an O(1) check) is 1:1."""
    if len(text) > limit:
        return True
    if text.isascii() or 4 * len(text) <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


def _is_text(text: str, msg: Any) -> bool:
    """Whether every string in ``msg`` encodes as UTF-8: a JSON ``\\ud800`` escape decodes to a lone
    surrogate, which fails later where the string is encoded (Redis, a tokenizer, a file name)."""
    if text.isascii() and not _SURROGATE_ESCAPE.search(text):
        return True
    todo = [msg]
    while todo:  # iterative: a message may nest as deep as json.loads allows
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True


def pack_binary_frame(pts: float, image: bytes) -> bytes:
    """The binary frame layout, for clients written in Python (tests, scripts)."""
    header = json.dumps({"pts": pts}).encode()
    return struct.pack(">I", len(header)) + header + image


# -- per-type parsers -------------------------------------------------------------------------------
def _session_start(msg: dict, _limit: int) -> SessionStart:
    sid = msg.get("stream_id")
    source = msg.get("source")
    if sid is not None:
        if not isinstance(sid, str) or not sid or len(sid) > MAX_ID_CHARS:
            raise ProtocolError(BAD_REQUEST, "'stream_id' must be a non-empty string")
        if source is not None:
            raise ProtocolError(BAD_REQUEST, "give either 'source' (new stream) or 'stream_id' (attach)")
        key = msg.get("stream_key")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_ID_CHARS):
            raise ProtocolError(BAD_REQUEST, "'stream_key' must be the string session.started gave")
        return SessionStart(source=None, stream_id=sid, fps=None, carriers=None, stream_key=key)
    if not isinstance(source, str) or not source:
        raise ProtocolError(
            BAD_REQUEST, "session.start needs 'source' (push, file:NAME or URL) or 'stream_id'"
        )
    fps = msg.get("fps")
    if fps is not None and (not _is_number(fps) or not 0 < fps <= 30):
        raise ProtocolError(BAD_REQUEST, "'fps' must be a number in (0, 30]")
    carriers = msg.get("carriers")
    if carriers is not None and (not isinstance(carriers, str) or not 0 < len(carriers) <= 64):
        raise ProtocolError(BAD_REQUEST, "'carriers' must be a string like 'pool:16'")
    return SessionStart(
        source=source,
        stream_id=None,
        fps=float(fps) if fps is not None else None,
        carriers=carriers,
        retention=_retention(msg),
    )


def _retention(msg: dict) -> dict | None:
    """keep_full / keep_compact (seconds or "30m", "1h30m") and max_stream_bytes (bytes or "2MB",
    "2MiB") as Retention fields; the server lowers its own limits to them, never raises them."""
    from scenekv.errors import UserError
    from scenekv.units import parse_duration, parse_size

    fields = {"keep_full": ("keep_s", parse_duration), "keep_compact": ("max_s", parse_duration)}
    fields["max_stream_bytes"] = ("max_bytes", parse_size)
    out = {}
    for name, (field, parse) in fields.items():
        value = msg.get(name)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, str))
            or (isinstance(value, str) and len(value) > MAX_RETENTION_CHARS)
        ):
            raise ProtocolError(BAD_REQUEST, f"'{name}' must be a number or a string like 30m / 2MB")
        try:
            out[field] = parse(value)
        except UserError as exc:
            raise ProtocolError(BAD_REQUEST, f"'{name}': {exc}") from None
    return out or None


def _frame_append(msg: dict, max_frame_bytes: int) -> FrameAppend:
    pts = _pts(msg)
    image = msg.get("image")
    if not isinstance(image, str):
        raise ProtocolError(BAD_REQUEST, "frame.append needs 'image' as a data:image/jpeg;base64 URL")
    match = _DATA_URL.match(image)
    if match is None:
        raise ProtocolError(BAD_REQUEST, "'image' must be a data URL: data:image/jpeg;base64,... (or png)")
    try:
        raw = base64.b64decode(image[match.end() :], validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(BAD_IMAGE, "'image' is not valid base64") from None
    if len(raw) > max_frame_bytes:
        raise ProtocolError(TOO_LARGE, f"image of {len(raw)} bytes exceeds {max_frame_bytes}")
    return FrameAppend(pts=pts, image=raw)


def _question_ask(msg: dict, _limit: int) -> QuestionAsk:
    qid = _id(msg)
    text = _text(msg, qid, "question.ask needs a non-empty 'text'", "question", MAX_QUESTION_CHARS, TOO_LARGE)
    at, range_, last = msg.get("at"), msg.get("range"), msg.get("last")
    if sum(x is not None for x in (at, range_, last)) > 1:
        raise ProtocolError(BAD_REQUEST, "give at most one of 'at', 'range', 'last'", id=qid)
    if at is not None and not _is_time(at):
        raise ProtocolError(BAD_REQUEST, "'at' must be seconds or 'hh:mm:ss'", id=qid)
    if at is not None:
        at = _time(at)
    if range_ is not None:
        if not isinstance(range_, list) or len(range_) != 2 or not all(_is_time(x) for x in range_):
            raise ProtocolError(BAD_REQUEST, "'range' must be [start, end] in seconds or 'hh:mm:ss'", id=qid)
        range_ = (_time(range_[0]), _time(range_[1]))
    if last is not None and (not _is_seconds(last) or last <= 0):
        raise ProtocolError(
            BAD_REQUEST, f"'last' must be a positive number of seconds, at most {MAX_SECONDS:g}", id=qid
        )
    max_tokens = msg.get("max_tokens", 128)
    if (
        not isinstance(max_tokens, int)
        or isinstance(max_tokens, bool)
        or not 1 <= max_tokens <= MAX_TOKENS_LIMIT
    ):
        raise ProtocolError(
            BAD_REQUEST, f"'max_tokens' must be an integer in [1, {MAX_TOKENS_LIMIT}]", id=qid
        )
    return QuestionAsk(id=qid, text=text, at=at, range=range_, last=last, max_tokens=max_tokens)


def _question_cancel(msg: dict, _limit: int) -> QuestionCancel:
    return QuestionCancel(id=_id(msg))


def _session_end(msg: dict, _limit: int) -> SessionEnd:
    return SessionEnd()


def _search(msg: dict, _limit: int) -> SearchRequest:
    sid = _id(msg)
    text = _text(msg, sid, "search needs a non-empty 'text'", "search text", MAX_SEARCH_CHARS)
    streams = msg.get("streams")
    if streams is not None:
        if not isinstance(streams, list) or not all(
            isinstance(x, str) and 0 < len(x) <= MAX_ID_CHARS for x in streams
        ):
            raise ProtocolError(BAD_REQUEST, "'streams' must be a list of stream ids", id=sid)
        if not 0 < len(streams) <= MAX_SEARCH_STREAMS:
            raise ProtocolError(BAD_REQUEST, f"'streams' must name 1-{MAX_SEARCH_STREAMS} streams", id=sid)
        streams = tuple(streams)
    limit = msg.get("limit", 10)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_SEARCH_HITS:
        raise ProtocolError(BAD_REQUEST, f"'limit' must be an integer in [1, {MAX_SEARCH_HITS}]", id=sid)
    return SearchRequest(id=sid, text=text, streams=streams, limit=limit)


def _watch_add(msg: dict, _limit: int) -> WatchAdd:
    wid = _id(msg)
    missing = "watch.add needs a non-empty 'text' (what to watch for)"
    text = _text(msg, wid, missing, "watch text", MAX_WATCH_CHARS)
    webhook = msg.get("webhook")
    if webhook is not None and not _is_webhook(webhook):
        raise ProtocolError(
            BAD_REQUEST, f"'webhook' must be an http(s) URL of at most {MAX_WEBHOOK_CHARS} characters", id=wid
        )
    cooldown = msg.get("cooldown_s", 0)
    if not _is_number(cooldown) or not 0 <= cooldown <= MAX_COOLDOWN_S:
        raise ProtocolError(
            BAD_REQUEST, f"'cooldown_s' must be a number of seconds in [0, {MAX_COOLDOWN_S:g}]", id=wid
        )
    return WatchAdd(id=wid, text=text.strip(), webhook=webhook, cooldown_s=float(cooldown) + 0.0)


def _is_webhook(url: Any) -> bool:
    if not isinstance(url, str) or len(url) > MAX_WEBHOOK_CHARS or NOT_URL_TEXT.search(url):
        return False  # a space, control character or NUL may split the URL differently elsewhere
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a malformed host or port
        return False


def _watch_remove(msg: dict, _limit: int) -> WatchRemove:
    return WatchRemove(id=_id(msg))


_PARSERS = {
    "session.start": _session_start,
    "frame.append": _frame_append,
    "question.ask": _question_ask,
    "question.cancel": _question_cancel,
    "session.end": _session_end,
    "search": _search,
    "watch.add": _watch_add,
    "watch.remove": _watch_remove,
}


# -- field helpers --------------------------------------------------------------------------------
def _is_number(x: Any) -> bool:
    """A JSON number that is a finite float: not a bool (an int in Python), NaN, Infinity (or 1e400,
    which json reads as inf), nor an int too large for a float (math.isfinite raises for those)."""
    if not isinstance(x, int | float) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def _is_seconds(x: Any) -> bool:
    """A number of seconds in [0, MAX_SECONDS]."""
    return _is_number(x) and 0 <= x <= MAX_SECONDS


def _text(msg: dict, id: str, missing: str, name: str, limit: int, too_long: str = BAD_REQUEST) -> str:
    """The message's ``text``: a string with something in it, at most ``limit`` characters."""
    text = msg.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError(BAD_REQUEST, missing, id=id)
    if len(text) > limit:
        raise ProtocolError(too_long, f"{name} longer than {limit} characters", id=id)
    return text


def _is_time(x: Any) -> bool:
    """Seconds, or a string units.parse_seconds reads ("1:23", "90s"), in [0, MAX_SECONDS]; checked
    here so that a time the service cannot read is bad_request now, not a failure later."""
    if not isinstance(x, str):
        return _is_seconds(x)
    if not 0 < len(x) <= 32:
        return False
    try:
        return parse_seconds(x) <= MAX_SECONDS
    except (ValueError, OverflowError):
        return False


def _time(x: float | str) -> float | str:
    """A checked time as the service gets it: numbers as floats (-0.0 as 0.0), strings as given."""
    return x if isinstance(x, str) else float(x) + 0.0


def _pts(msg: dict) -> float:
    pts = msg.get("pts")
    if not _is_seconds(pts):
        raise ProtocolError(BAD_REQUEST, f"'pts' must be a finite number of seconds in [0, {MAX_SECONDS:g}]")
    return float(pts) + 0.0  # -0.0 is 0.0


def _id(msg: dict) -> str:
    qid = msg.get("id")
    if isinstance(qid, int) and not isinstance(qid, bool):
        qid = str(qid)
    if not isinstance(qid, str) or not qid or len(qid) > MAX_ID_CHARS:
        raise ProtocolError(BAD_REQUEST, f"{msg.get('type')} needs an 'id' (string, 1-{MAX_ID_CHARS} chars)")
    return qid


def _maybe_id(msg: dict) -> str | None:
    qid = msg.get("id")
    return qid if isinstance(qid, str) and len(qid) <= MAX_ID_CHARS else None

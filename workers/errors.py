"""Errors of the encoder's lifecycle that callers act on (they cross Ray, so they pickle plainly)."""

from __future__ import annotations

from scenekv.errors import UserError


class StreamResumed(UserError):
    """The encoder had to re-open the stream from Redis (it restarted, or dropped the stream after a
    write failure): frames after ``last_pts`` that the caller sent earlier are gone and must be sent
    again, in order, before new ones. Raised instead of appending, so nothing lands after a gap."""

    code = "stream_resumed"

    def __init__(self, message: str, last_pts: float | None = None) -> None:
        super().__init__(message)
        self.last_pts = last_pts


class EncoderUnavailable(UserError):
    """The encoder actor is dead or restarting; the same call succeeds once it is back."""

    code = "encoder_unavailable"

    def __init__(self, message: str, retry_after_ms: int = 1000) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms

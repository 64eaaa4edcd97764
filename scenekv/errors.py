"""Errors a user can act on.

Every layer raises a subclass of :class:`UserError` for bad input (missing file, corrupt media,
unknown model, malformed request); the CLI prints its message as one line and exits with code 2,
the web layer turns it into an ``error`` message. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


def unwrap(exc: BaseException) -> BaseException:
    """The exception an actor raised, not Ray's wrapper (RayTaskError carries it as ``cause``)."""
    while getattr(exc, "cause", None) is not None and exc.cause is not exc:
        exc = exc.cause
    return exc


def redis_full(text: str) -> bool:
    """Redis's own words for a write refused at ``maxmemory`` (noeviction)."""
    return "maxmemory" in text or "OOM" in text


def first_line(text: str) -> str:
    """The first non-blank line of an error's text (remote tracebacks and Redis replies run long)."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


class UserError(Exception):
    """Bad input or environment that the user can fix; ``code`` is a stable machine-readable tag."""

    code: str = "bad_input"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

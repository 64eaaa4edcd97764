"""Every CLI failure as one sentence in SceneKV's words, with an exit status a script can act on.

2: bad input or configuration (fix the command or the setup); 1: the run failed on the way (a
store that refuses writes, a lost source, a dependency that broke) and what was kept is said.
Errors raised inside Ray actors arrive wrapped in RayTaskError, whose text is a remote traceback:
only the cause's own message is shown.
"""

from __future__ import annotations

from scenekv.errors import UserError, first_line, redis_full, unwrap

# codes of failures that happen during a run, not because of how it was started
RUNTIME_CODES = {
    "memory_write_failed",
    "memory_backpressure",
    "store_full",
    "source_lost",
    "internal",
    "encoder_unavailable",
    "stream_resumed",
}


def describe(exc: BaseException) -> tuple[str, int]:
    """(one-line message, exit status) for any exception that reached the command line."""
    exc = unwrap(exc)
    if isinstance(exc, UserError):
        return first_line(str(exc)) or exc.code, 1 if exc.code in RUNTIME_CODES else 2
    name = type(exc).__module__.split(".")[0]
    text = first_line(str(exc)) or type(exc).__name__
    if name == "redis":
        if redis_full(text):
            return f"Redis is full ({text}); free memory or raise maxmemory, then run again", 1
        return f"Redis failed: {text} (is it running? REDIS_URL / --redis-url)", 1
    if name == "ray":
        return f"Ray failed: {text}", 1
    if name == "av":
        return f"cannot read the media: {text}", 2
    if isinstance(exc, OSError):
        return f"{exc.strerror or text}" + (f": {exc.filename}" if getattr(exc, "filename", None) else ""), 1
    return f"{type(exc).__name__}: {text} (a bug: run with --verbose for the traceback)", 1

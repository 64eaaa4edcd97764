"""Time anchors: which part of a stream a question is about.

A question may carry a structured anchor (``at`` seconds or "hh:mm:ss", ``range`` [a, b], ``last`` S)
or say it in words ("what happened at 1:23?", "between 2:00 and 2:30", "in the last 30 seconds",
"at the start"). Structured fields win over text. ``last`` is relative to the stream's time when the
question is answered, so it is resolved then, not when parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scenekv.errors import UserError
from scenekv.units import clock, parse_seconds

AT_PAD_S = 2.0  # "at T" looks at [T - pad, T + pad]: frames are sampled, T itself may fall between them
START_S = 10.0  # "at the start" = the first 10 s
NOW_S = 10.0  # "just now" / "right now" = the last 10 s


class AnchorError(UserError):
    code = "bad_anchor"


class AnchorInFuture(UserError):
    code = "anchor_in_future"


@dataclass(frozen=True)
class TimeAnchor:
    kind: str  # "at" | "range" | "last"
    start: float = 0.0  # at: T; range: a; last: unused
    end: float = 0.0  # range: b
    seconds: float = 0.0  # last: S

    def window(self, now: float) -> tuple[float, float]:
        """The [start, end] seconds the anchor covers on a stream whose newest frame is at ``now``."""
        if self.kind == "last":
            return max(0.0, now - self.seconds), now
        if self.kind == "at":
            return max(0.0, self.start - AT_PAD_S), self.start + AT_PAD_S
        return self.start, min(self.end, max(now, self.start))

    def focus(self, now: float) -> float:
        """The one moment the anchor points at, for a model that reads one frame's tag: ``at`` T,
        the newest frame for ``last``, the middle of a range (a scene, for captions)."""
        if self.kind == "at":
            return self.start
        a, b = self.window(now)
        return b if self.kind == "last" else (a + b) / 2

    def earliest_needed(self) -> float:
        """The stream time that must have been reached before the anchor can be answered.

        A range only needs its start: "between 2:00 and 2:30" asked at 2:15 (or "at the start" of a
        6-second video) is answered from what exists, its window ending at the newest frame.
        """
        return self.start if self.kind in ("at", "range") else 0.0

    def check_reached(self, now: float | None) -> None:
        """Refuse an anchor in the future of the stream (the caller may wait instead)."""
        need = self.earliest_needed()
        if need > 0 and (now is None or need > now + 1e-6):
            have = "no frames yet" if now is None else f"the stream is at {clock(now, tenths=True)}"
            raise AnchorInFuture(f"time {clock(need, tenths=True)} has not happened yet ({have})")

    def describe(self) -> str:
        if self.kind == "last":
            return f"the last {self.seconds:g} s"
        if self.kind == "at":
            return f"at {clock(self.start, tenths=True)}"
        return f"{clock(self.start, tenths=True)}-{clock(self.end, tenths=True)}"


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}  # the units a question's words use ("2 minutes")


def parse_timestamp(value: str | float | int) -> float:
    """Seconds from 83, 83.5, "83", "1:23", "01:02:03", "1h2m3s", "90s", "2m" (scenekv/units.py's
    rule); AnchorError otherwise."""
    try:
        return parse_seconds(value)
    except ValueError as exc:
        raise AnchorError(f"not a time: {value!r} ({exc})") from None


def anchor_from_fields(
    at: str | float | None = None, range_: list | tuple | None = None, last: str | float | None = None
) -> TimeAnchor | None:
    given = [name for name, v in (("at", at), ("range", range_), ("last", last)) if v is not None]
    if len(given) > 1:
        raise AnchorError(f"give one time anchor, not {' and '.join(given)}")
    if at is not None:
        return TimeAnchor("at", start=parse_timestamp(at))
    if range_ is not None:
        if not isinstance(range_, list | tuple) or len(range_) != 2:
            raise AnchorError(f"range must be [start, end], got {range_!r}")
        a, b = parse_timestamp(range_[0]), parse_timestamp(range_[1])
        if b < a:
            raise AnchorError(
                f"range end {clock(b, tenths=True)} is before its start {clock(a, tenths=True)}"
            )
        return TimeAnchor("range", start=a, end=b)
    if last is not None:
        seconds = parse_timestamp(last)
        if seconds <= 0:
            raise AnchorError("last must be more than 0 seconds")
        return TimeAnchor("last", seconds=seconds)
    return None


# -- anchors in the question's words -------------------------------------------------------------
# A clock time, or numbers with units; no letter may follow a unit ("3 men" is not 3 minutes).
_T = (
    r"(\d+:\d{1,2}(?::\d{1,2})?(?:\.\d+)?\b|\d+(?:\.\d+)?\s*(?:hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)(?![a-z])"
    r"(?:\s*\d+(?:\.\d+)?\s*(?:minutes?|mins?|m|seconds?|secs?|s)(?![a-z]))*)"
)
_NUM_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "ten": 10,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "forty-five": 45,
    "sixty": 60,
    "few": 3,
    "couple of": 2,
}
_PATTERNS = [
    ("range", re.compile(rf"\b(?:between|from)\s+{_T}\s+(?:and|to|-|until|till)\s+{_T}")),
    (
        "last",
        re.compile(
            r"\b(?:last|past|previous|recent)\s+(?:(\d+(?:\.\d+)?|"
            + "|".join(_NUM_WORDS)
            + r")\s+)?(seconds?|secs?|s|minutes?|mins?|m|hours?|h)\b"
        ),
    ),
    ("at", re.compile(rf"\b(?:at|around|near|by)\s+(?:time\s+)?{_T}")),
    ("at", re.compile(r"(?<![\w:])(\d+:\d{2}(?::\d{2})?)(?![\w:])")),  # a bare clock time anywhere
    ("start", re.compile(r"\b(?:at|in)\s+the\s+(?:very\s+)?(?:start|beginning)\b|\bfirst\s+few\s+seconds\b")),
    ("now", re.compile(r"\b(?:just now|right now|at the moment|currently|at the end)\b")),
]


def _to_seconds(text: str) -> float:
    t = text.strip().lower()
    if ":" in t:
        return parse_timestamp(t)
    total, found = 0.0, False
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", t):
        total += float(num) * _UNITS[unit[0]]
        found = True
    return total if found else parse_timestamp(t)


def anchor_from_text(question: str) -> TimeAnchor | None:
    q = question.lower()
    for kind, pattern in _PATTERNS:
        m = pattern.search(q)
        if not m:
            continue
        if kind == "range":
            a, b = _to_seconds(m.group(1)), _to_seconds(m.group(2))
            return TimeAnchor("range", start=min(a, b), end=max(a, b))
        if kind == "last":
            count = m.group(1)
            n = (
                1.0
                if count is None
                else float(_NUM_WORDS.get(count, count) if count in _NUM_WORDS else count)
            )
            return TimeAnchor("last", seconds=n * _UNITS[m.group(2)[0]])
        if kind == "at":
            return TimeAnchor("at", start=_to_seconds(m.group(1)))
        if kind == "start":
            return TimeAnchor("range", start=0.0, end=START_S)
        return TimeAnchor("last", seconds=NOW_S)
    return None


def resolve_anchor(
    question: str,
    *,
    at: str | float | None = None,
    range_: list | tuple | None = None,
    last: str | float | None = None,
) -> TimeAnchor | None:
    """Structured fields if any were given, else what the question's words say, else None."""
    return anchor_from_fields(at, range_, last) or anchor_from_text(question)

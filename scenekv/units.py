"""Times, durations and sizes as people write them (a command line, a session.start message, a
question's ``at``), and stream times as SceneKV writes them back: each rule once, for every layer.

Times and durations: seconds as a number or amounts with ``d``, ``h``, ``m``, ``s`` (``90s``, ``30m``,
``1h30m``, ``2m 30s``, ``7d``); times also as a clock (``1:23``, ``01:02:03.5``), durations not (is
``12:00`` twelve minutes or twelve hours?). Written back as a clock
(``01:23``, ``1:02:03`` from an hour on). Sizes: bytes as a number, or with SI (``kB``, ``MB``, ``GB``,
``TB``: powers of 1000) or IEC (``KiB``, ``MiB``, ``GiB``, ``TiB``: powers of 1024) suffixes, so ``2MB``
is 2,000,000 bytes and ``2MiB`` is 2,097,152. Each refuses anything else with one sentence saying what
is accepted.
"""

from __future__ import annotations

import math
import re

from scenekv.errors import UserError

_CLOCK = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)")
_N = r"(\d+(?:\.\d+)?)"
_AMOUNTS = re.compile(rf"(?:{_N}\s*d)?\s*(?:{_N}\s*h)?\s*(?:{_N}\s*m)?\s*(?:{_N}\s*s)?")
_UNIT_SECONDS = (86400.0, 3600.0, 60.0, 1.0)
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kKMGT]i?B|B)?$")
MAX_SIZE = 2**63  # sizes are signed 64-bit counts wherever they are stored
_FACTORS = {
    "B": 1,
    "kB": 10**3,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "kiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}


def parse_seconds(value: str | float | int, *, clock_time: bool = True) -> float:
    """Seconds in ``value`` (``83.5``, ``"1:23"``, ``"01:02:03"``, ``"1h30m"``, ``"2m 30s"``); a
    ValueError saying what is accepted for anything else (callers word it as their own error).
    ``clock_time=False`` refuses the clock form: a point in a stream reads well as ``1:23``, but a
    duration written ``12:00`` could mean 12 minutes or 12 hours."""
    if isinstance(value, bool):
        raise ValueError("it is not a number of seconds")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond float's range (hundreds of digits)
            raise ValueError("it must be a finite number of seconds, not negative") from None
    else:
        text = str(value).strip().lower()
        clock = _CLOCK.fullmatch(text)
        if clock and not clock_time:
            raise ValueError("a clock time is ambiguous for a duration: use amounts (e.g. 90, 30m, 12h)")
        if clock:
            hours, minutes, secs = clock.groups()
            if float(secs) >= 60 or (hours is not None and int(minutes) >= 60):
                raise ValueError("it is not a clock time: minutes and seconds go up to 59")
            seconds = int(hours or 0) * 3600 + int(minutes) * 60 + float(secs)
        else:
            try:
                seconds = float(text)
            except ValueError:
                amounts = _AMOUNTS.fullmatch(text)
                if not text or not amounts or not any(amounts.groups()):
                    raise ValueError(
                        "use seconds, mm:ss, h:mm:ss or amounts with d, h, m, s (e.g. 90, 1:30, 1h30m)"
                    ) from None
                seconds = sum(
                    float(n) * unit for n, unit in zip(amounts.groups(), _UNIT_SECONDS, strict=True) if n
                )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("it must be a finite number of seconds, not negative")
    return seconds + 0.0  # -0.0 is 0


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text`` (``1h30m`` -> 5400.0), as ``parse_seconds`` reads amounts; UserError otherwise."""
    try:
        return parse_seconds(text, clock_time=False)
    except ValueError as exc:
        raise UserError(f"bad duration {text!r}: {exc}") from None


def clock(seconds: float, *, tenths: bool = False) -> str:
    """A stream time as ``mm:ss`` (``h:mm:ss`` from an hour on): 341.7 -> ``05:41``; with ``tenths``,
    to the nearest tenth where it is not whole: ``05:41.7``. Prompts hold the whole-second form (a
    checkpoint was trained on these exact strings), so it must not change."""
    if tenths:
        whole, tenth = divmod(round(max(0.0, seconds) * 10), 10)
    else:
        whole, tenth = max(0, math.floor(seconds + 1e-6)), 0
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    text = f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
    return f"{text}.{tenth}" if tenth else text


def parse_size(text: str | int) -> int:
    """Bytes in ``text`` (``2MB`` -> 2000000, ``2MiB`` -> 2097152)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = _SIZE.match(str(text).strip())
        if not m:
            raise UserError(
                f"bad size {text!r}: use bytes or a number with kB, MB, GB, TB (powers of 1000) or "
                "KiB, MiB, GiB, TiB (powers of 1024), e.g. 2MB or 512MiB"
            )
        amount = float(m[1]) * _FACTORS[m[2] or "B"]
        if not amount < MAX_SIZE:  # also inf, from hundreds of digits
            raise UserError(f"bad size {text!r}: it must be less than 2**63 bytes")
        value = int(amount)
    if not isinstance(value, int):
        raise UserError(f"bad size {text!r}: use a whole number of bytes or a number with a suffix")
    if value < 0:
        raise UserError(f"bad size {text!r}: it must not be negative")
    if value >= MAX_SIZE:  # beyond a signed 64-bit count: a float, Redis or numpy would overflow
        raise UserError(f"bad size {text!r}: it must be less than 2**63 bytes")
    return value

"""Durations and sizes as people write them on a command line or in a session.start message.

Durations: seconds as a number, or amounts with ``s``, ``m``, ``h``, ``d`` (``90``, ``90s``, ``30m``,
``1h30m``, ``7d``). Sizes: bytes as a number, or with SI (``kB``, ``MB``, ``GB``, ``TB``: powers of 1000)
or IEC (``KiB``, ``MiB``, ``GiB``, ``TiB``: powers of 1024) suffixes, so ``2MB`` is 2,000,000 bytes and
``2MiB`` is 2,097,152. Both refuse anything else with one sentence saying what is accepted.
"""

from __future__ import annotations

import math
import re

from scenekv.errors import UserError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(d|h|m|s)")
_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kKMGT]i?B|B)?$")
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


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text`` (``1h30m`` -> 5400.0)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().lower()
        try:
            value = float(s)
        except ValueError:
            parts = _DURATION.findall(s)
            if not parts or "".join(a + u for a, u in parts) != s:
                raise UserError(
                    f"bad duration {text!r}: use seconds or amounts with s, m, h, d (e.g. 90, 30m, 1h30m)"
                ) from None
            value = sum(float(a) * _SECONDS[u] for a, u in parts)
    if not math.isfinite(value) or value < 0:
        raise UserError(f"bad duration {text!r}: it must be a finite number, not negative")
    return value


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
        value = int(float(m[1]) * _FACTORS[m[2] or "B"])
    if not isinstance(value, int):
        raise UserError(f"bad size {text!r}: use a whole number of bytes or a number with a suffix")
    if value < 0:
        raise UserError(f"bad size {text!r}: it must not be negative")
    return value

"""The core's one parser and formatter of times, durations and sizes (scenekv/units.py)."""

from __future__ import annotations

import pytest

from scenekv.errors import UserError
from scenekv.units import clock, parse_duration, parse_seconds, parse_size


def test_sizes_and_durations_parse_as_people_write_them():
    assert parse_size("2MB") == 2_000_000 and parse_size("2MiB") == 2_097_152
    assert parse_size("512 KiB") == 524_288 and parse_size(1000) == 1000 and parse_size("1.5GB") == 1.5e9
    assert parse_duration("1h30m") == 5400.0 and parse_duration(90) == 90.0 and parse_duration("7d") == 604800
    for bad in ("2 megabytes", "-1", "MB"):
        with pytest.raises(UserError, match="bad size"):
            parse_size(bad)
    for bad in ("1 hour", "12:00", "1:30", "30s1m"):  # a clock is a point in time, not a duration
        with pytest.raises(UserError, match="bad duration"):
            parse_duration(bad)


def test_a_time_reads_as_a_clock_and_is_written_back_as_one():
    assert parse_seconds("1:23") == 83.0 and parse_seconds("01:02:03.5") == 3723.5
    assert parse_seconds("2m 30s") == 150.0 and parse_seconds(12) == 12.0
    for bad in ("1:75", "abc", "-3", True):
        with pytest.raises(ValueError):
            parse_seconds(bad)
    assert clock(83.9) == "01:23" and clock(3723.5) == "1:02:03" and clock(341.7, tenths=True) == "05:41.7"

"""The fixtures every test folder shares, in one place: synthetic videos made once per session, and
the real Redis the tests use (tests/support/redis_fixtures.py). Helpers that are not fixtures live
in tests/support/ and are imported by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.redis_fixtures import own_redis, prefix, redis_client, redis_url, store  # noqa: F401


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """``media(name, **make_video_kwargs) -> Path``: a synthetic video, generated once per session."""
    from scenekv.world.cut_video import make_video

    root: Path = tmp_path_factory.mktemp("media")
    made: dict[str, Path] = {}

    def get(name: str, **kwargs) -> Path:
        if name not in made:
            kwargs.setdefault("size", (160, 120))
            kwargs.setdefault("duration", 3.0)
            made[name] = make_video(root / name, **kwargs)
        return made[name]

    return get

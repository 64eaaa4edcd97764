"""Shared fixtures: synthetic videos made once per test session (small, a few seconds each)."""

from __future__ import annotations

from pathlib import Path

import pytest


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

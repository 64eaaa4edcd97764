"""The live pipeline in one process: frames in, scenes closed and captioned, questions answered."""

# ruff: noqa: F811  (pytest fixtures imported from redis_fixtures are redefined as parameters)

from __future__ import annotations

import pytest

from scenekv.ingest import make_video, open_source
from scenekv.memory import RollingConfig, StreamNotFound
from scenekv.qa.hub import StreamHub
from scenekv.vlm import SamplingParams

from redis_fixtures import prefix, redis_client, redis_url, store  # noqa: F401
from tiny_model import tiny

CUTS = (10.5, 21.5)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = make_video(
        tmp_path_factory.mktemp("hub") / "v.mp4", duration=32, fps=2, size=(160, 120), cuts=CUTS
    )
    with open_source(path, fps=1.0) as src:
        return [(f.pts, f.image) for f in src]


def test_scenes_close_with_captions_and_questions_cite_them(store, video):
    hub = StreamHub(tiny(), store, rolling=RollingConfig(window=12, chunk_frames=4), caption_tokens=6)
    opened = hub.open(source="v.mp4", carriers="pool:4")
    sid = opened["stream_id"]
    assert opened["random_weights"] is True and opened["carriers"] == "pool:4"
    closed = []
    for i in range(0, len(video), 6):
        closed += hub.append(sid, video[i : i + 6])["closed"]
    closed += hub.end(sid)
    starts = [c["start"] for c in closed]
    assert len(closed) == 3 and starts[0] == 0.0
    assert [abs(s - c) <= 1.0 for s, c in zip(starts[1:], CUTS, strict=True)] == [True, True]
    stored = store.scenes(sid)
    assert [s.caption for s in stored] == [c["caption"] for c in closed]
    assert all(isinstance(c["caption"], str) and c["caption"] for c in closed)
    events = [t for _, t, _ in store.events(sid)]
    assert events.count("scene.captioned") == 3 and events.count("scene.closed") == 3
    # after the stream ended it is still answerable from Redis alone
    answer = hub.ask(sid, "what happened at 0:15?", params=SamplingParams(max_new_tokens=3))
    list(answer)
    assert any(e["start"] <= 15 <= e["end"] for e in answer.evidence)
    with pytest.raises(StreamNotFound):
        hub.append(sid, video[:1])
    with pytest.raises(StreamNotFound):
        hub.ask("nope", "anything?")


def test_a_detached_stream_continues_after_reopen(store, video):
    config = RollingConfig(window=12, chunk_frames=4)
    first = StreamHub(tiny(), store, rolling=config, captions=False)
    sid = first.open(carriers="pool:4")["stream_id"]
    first.append(sid, video[:10])
    first.close()  # a graceful restart
    second = StreamHub(tiny(), store, rolling=config, captions=False)
    again = second.open(sid=sid, carriers="pool:4")
    assert again["last_pts"] == video[9][0]
    out = second.append(sid, video[10:14])
    assert out["frames"] == 4 and out["last_pts"] == video[13][0]
    second.close()

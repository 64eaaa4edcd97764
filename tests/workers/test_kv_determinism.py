"""A frame's KV is a function of the stream, not of the schedule: each frame attends to the sink
and the kept frames before it (vlm/session.py ``context_frames``), whatever the batching, the other
streams in its vision batches, or where a restart resumed. The same 40 frames through four
schedules store the same KV (fp32, ``kv_dtype="exact"``) and give the same greedy answer."""

from __future__ import annotations

import numpy as np
import torch

from scenekv.memory import RollingConfig
from scenekv.vlm import SamplingParams
from scenekv.workers.stream_hub import StreamHub

from support.tiny_model import tiny

CONFIG = RollingConfig(window=12, chunk_frames=4, kv_dtype="exact")  # 8 frames of context each
N = 40
QUESTION = "what happened at 0:31?"


def _video(seed: int = 0) -> list[tuple[float, np.ndarray]]:
    """40 frames, a new scene every 7 (so scenes close and chunks are cut at scene bounds)."""
    rng = np.random.default_rng(seed)
    base = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(N // 7 + 1)]
    noise = rng.integers(-12, 12, (N, 96, 128, 3))
    return [(float(i), np.clip(base[i // 7] + noise[i], 0, 255).astype(np.uint8)) for i in range(N)]


def _hub(store) -> StreamHub:
    return StreamHub(tiny(), store, rolling=CONFIG, captions=False)


def _stored(store, sid: str) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Every stored frame's keys and values, by frame index (chunk cuts may differ by schedule)."""
    cids = [m.cid for m in store.chunk_index(sid)]
    out = {}
    for chunk in store.load_chunks(sid, cids):
        for f in chunk.split_frames():
            out[f.frames[0].index] = (f.keys, f.values, f.position)
    return out


def _answer(hub: StreamHub, sid: str) -> list[int]:
    """A greedy answer over every stored frame (``full``: how the frames were cut into chunks,
    which a restart changes, does not pick a different context)."""
    answer = hub.ask(sid, QUESTION, params=SamplingParams(max_new_tokens=12), policy="full")
    list(answer)
    return answer.generation.token_ids


def one_at_a_time(store, video):
    hub = _hub(store)
    sid = hub.open(carriers="pool:4")["stream_id"]
    for frame in video:
        hub.append(sid, [frame])
    return hub, sid


def bursts(store, video):
    hub = _hub(store)
    sid = hub.open(carriers="pool:4")["stream_id"]
    i = 0
    for size in [3, 9, 1, 6, 2, 8, 5, 4, 2]:
        hub.append(sid, video[i : i + size])
        i += size
    assert i == N
    return hub, sid


def with_other_streams(store, video):
    """In vision batches with three other streams' frames, as the encoder's scheduler makes them."""
    hub = _hub(store)
    sid = hub.open(carriers="pool:4")["stream_id"]
    others = [(hub.open(carriers="pool:4")["stream_id"], _video(seed=k + 1)) for k in range(3)]
    for i in range(0, N, 5):
        batch = [(sid, video[i : i + 5])] + [(o, v[i : i + 3]) for o, v in others if i + 3 <= N]
        for result in hub.append_batch(batch):
            assert isinstance(result, dict), result
    return hub, sid


def across_a_restart(store, video):
    """17 frames, the encoder lets the stream go; another one continues it from Redis."""
    first = _hub(store)
    sid = first.open(carriers="pool:4")["stream_id"]
    for frame in video[:17]:
        first.append(sid, [frame])
    first.detach(sid)
    first.close()
    hub = _hub(store)
    hub.open(sid=sid, takeover=True)
    for i in range(17, N, 6):
        hub.append(sid, video[i : i + 6])
    return hub, sid


def test_four_schedules_store_the_same_kv_and_answer_alike(store):
    video = _video()
    runs = {}
    for schedule in (one_at_a_time, bursts, with_other_streams, across_a_restart):
        hub, sid = schedule(store, video)
        hub.end(sid)
        runs[schedule.__name__] = (_stored(store, sid), _answer(hub, sid))
        hub.close()
    reference, answer = runs.pop("one_at_a_time")
    assert sorted(reference) == list(range(N))
    for name, (frames, tokens) in runs.items():
        assert sorted(frames) == sorted(reference), name
        for index, (k, v, position) in reference.items():
            k2, v2, position2 = frames[index]
            assert position2 == position, (name, index)
            torch.testing.assert_close(k2, k, atol=1e-5, rtol=1e-5, msg=f"{name}: keys of frame {index}")
            torch.testing.assert_close(v2, v, atol=1e-5, rtol=1e-5, msg=f"{name}: values of frame {index}")
        assert tokens == answer, name

"""The retrieval index kept between questions: same answers, reads only what changed (real Redis)."""

from __future__ import annotations

import redis

from scenekv.memory import MemoryStore, RollingConfig, RollingMemory
from scenekv.qa.engine import QAEngine
from scenekv.qa.key_index import KeyIndex
from scenekv.qa.memory_view import MemoryView
from scenekv.vlm import SamplingParams

from support.tiny_model import frames, tiny

PARAMS = SamplingParams(max_new_tokens=4)


def _stream(store: MemoryStore, n: int) -> RollingMemory:
    mem = RollingMemory.create(
        store, tiny(), carriers="pool:4", config=RollingConfig(window=6, chunk_frames=2)
    )
    mem.append(frames(n, seed=3))
    mem.flush()
    return mem


def test_answers_with_the_kept_index_equal_answers_read_from_scratch(store: MemoryStore):
    mem = _stream(store, 30)
    engine, index = QAEngine(tiny(), top_k=2), KeyIndex()
    for question in ("Describe the scene.", "What happened at 00:07?"):
        plain = engine.ask(MemoryView(store, mem.sid), question, params=PARAMS)
        kept = engine.ask(MemoryView(store, mem.sid, index=index), question, params=PARAMS)
        assert "".join(kept) == "".join(plain) and kept.evidence == plain.evidence
        assert kept.plan.retrieved == plain.plan.retrieved
    mem.detach()


def test_a_question_reads_only_the_chunks_written_since_the_last_one(store: MemoryStore):
    mem = _stream(store, 20)
    index = KeyIndex()
    MemoryView(store, mem.sid, index=index)
    first = dict(index.stats)
    assert first["keys_read"] == len(store.chunk_ids(mem.sid)) > 0
    MemoryView(store, mem.sid, index=index)
    assert index.stats["keys_read"] == first["keys_read"]  # nothing new: nothing read
    mem.append(frames(8, seed=4, start=40.0))
    mem.flush()
    snap = index.refresh(store, mem.sid)
    assert index.stats["keys_read"] == len(store.chunk_ids(mem.sid)) == len(snap.order) == len(snap.metas)
    gone = snap.metas[0].cid
    store.drop_chunk(mem.sid, gone, snap.metas[0].scene)
    snap = index.refresh(store, mem.sid)
    assert gone not in snap.order and gone not in {m.cid for m in snap.metas}
    assert index.stats["resyncs"] == 1 and snap.matrix.shape[0] == len(snap.order)
    mem.detach()


def test_the_bytes_a_question_reads_do_not_grow_with_the_stream(own_redis):
    """Redis's own count of bytes sent, around a question, on a short and a 3x longer stream: with
    the kept index the later questions read the chunk ids and the chosen chunks' KV, not every key."""
    store = MemoryStore(own_redis.url, "kidx:", ttl_s=None)
    client = redis.Redis.from_url(own_redis.url)
    # a context budget both streams fill: what is compared is the reading around the context
    engine, costs = QAEngine(tiny(), top_k=2, budget_tokens=160), {}
    for n in (24, 72):
        mem = _stream(store, n)
        index = KeyIndex()
        engine.ask(MemoryView(store, mem.sid, index=index), "Describe the scene.", params=PARAMS)  # warm
        before = int(client.info("stats")["total_net_output_bytes"])
        answer = engine.ask(MemoryView(store, mem.sid, index=index), "Describe the scene.", params=PARAMS)
        list(answer)
        costs[n] = int(client.info("stats")["total_net_output_bytes"]) - before
        mem.detach()
    assert costs[72] <= 1.5 * costs[24], costs

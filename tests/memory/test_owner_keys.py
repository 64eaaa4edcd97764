"""Stream owner keys in the real Redis: given once, only the hash stored, checked by anyone."""

from __future__ import annotations

from scenekv.memory.owner_keys import key_hash, key_matches, new_key


def test_a_stream_takes_one_owner_key_and_stores_only_its_hash(store):
    sid = store.create_stream(source="push", model="m", carriers="pool:4")
    key, digest = new_key()
    assert store.key_hash(sid) is None  # made without a key: nobody writes over the WebSocket
    assert not key_matches(store.key_hash(sid), key)
    assert store.set_key_hash(sid, digest)
    other, other_digest = new_key()
    assert not store.set_key_hash(sid, other_digest)  # a second key never replaces the first
    stored = store.key_hash(sid)
    assert key_matches(stored, key) and not key_matches(stored, other)
    assert not key_matches(stored, None) and not key_matches(stored, "")
    raw = store.client.hgetall(store.keys(sid).stream)
    assert key.encode() not in b"".join(raw.values())  # the key itself is nowhere in Redis
    assert stored == key_hash(key) and "key_sha256" not in store.info(sid).extra  # nor shown by info


def test_the_operator_gives_a_stream_a_new_key(store, redis_url, prefix):
    """`scenekv memory key SID`: the way back in for a stream made before keys, or a lost key."""
    import json
    import subprocess
    import sys

    sid = store.create_stream(source="push", model="m", carriers="pool:4")
    old, digest = new_key()
    store.set_key_hash(sid, digest)
    argv = [sys.executable, "-m", "scenekv.cli", "memory", "key", sid, "--redis-url", redis_url]
    run = subprocess.run([*argv, "--prefix", prefix, "--json"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    new = json.loads(run.stdout)["stream_key"]
    assert key_matches(store.key_hash(sid), new) and not key_matches(store.key_hash(sid), old)
    missing = subprocess.run(
        [*argv[:-3], "s-none", *argv[-2:], "--prefix", prefix], capture_output=True, text=True
    )
    assert missing.returncode != 0 and "no stream 's-none'" in missing.stderr

"""`scenekv watch --stream SID` as a process: it stores its watch in Redis, prints the hits an
encoder finds on that stream as they are stored (here a WatchRunner in this process stands in for the
encoder of another process, on real readings in the real store), and takes its watch away on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from scenekv.memory import MemoryStore, Reading
from scenekv.workers.watch_runner import WatchRunner

from support.redis_fixtures import REDIS_URL

pytestmark = pytest.mark.slow


def test_watch_on_a_stream_prints_each_hit_and_removes_its_watch_on_ctrl_c(store: MemoryStore, prefix: str):
    sid = store.create_stream(source="push", model="m", fps=1.0)
    cmd = [sys.executable, "-m", "scenekv.cli", "watch", "--stream", sid, "red square", "--json"]
    cmd += ["--redis-url", REDIS_URL, "--prefix", prefix]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not store.watches(sid):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the watch never reached Redis"
            time.sleep(0.1)
        assert [w.text for w in store.watches(sid)] == ["red square"]
        runner = WatchRunner(store)  # the encoder that reads the stream's frames
        for t, thing in enumerate("..RRRR....GG..."):
            reading = Reading(float(t), "red square" if thing == "R" else "green circle", "blue")
            store.put_reading(sid, reading)
            runner.on_readings(sid, [reading])
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [(h["start"], h.get("end")) for h in lines] == [(2.0, None), (2.0, 6.0)]
        assert lines[0]["stream_id"] == sid and lines[0]["text"] == "red square"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
    assert store.watches(sid) == []  # not --keep: the command's watch goes with it


def test_watch_refuses_a_stream_redis_does_not_know(prefix: str):
    cmd = [sys.executable, "-m", "scenekv.cli", "watch", "--stream", "nope", "red square"]
    done = subprocess.run(
        cmd + ["--redis-url", REDIS_URL, "--prefix", prefix], capture_output=True, text=True
    )
    assert done.returncode == 2 and "no stream 'nope'" in done.stderr

"""What a user sees in the terminal: `scenekv ask` / `caption` as real processes, their stderr
(SceneKV's lines only), their --json output, and a failure as one sentence with the right status."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis

from scenekv.world.cut_video import make_video

from support.redis_fixtures import REDIS_URL, free_port

pytestmark = pytest.mark.slow

TINY = ["--model", "tiny-random-llava-onevision"]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return str(make_video(tmp_path_factory.mktemp("cli") / "clip.mp4", duration=24, fps=2, cuts=[8.0, 16.0]))


def scenekv(*args: str, redis_url: str = REDIS_URL, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_URL": redis_url}
    return subprocess.run(
        [sys.executable, "-m", "scenekv.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


def noise(stderr: str) -> list[str]:
    """Lines of stderr that are not SceneKV's: Python warnings, Ray's prefixes, tracebacks."""
    bad = ("Warning", "warnings.warn", "(EncoderActor", "(raylet)", "(pid=", "Traceback", "outputs = func")
    return [line for line in stderr.splitlines() if any(b in line for b in bad)]


def test_ask_prints_only_scenekv_lines_and_json_has_what_answer_done_has(video):
    run = scenekv("ask", video, "What happens at 0:10?", *TINY, "--json", "--max-tokens", "4")
    assert run.returncode == 0, run.stderr[-2000:]
    assert noise(run.stderr) == [], run.stderr
    assert "RANDOM WEIGHTS" in run.stderr and "memory: file-" in run.stderr
    out = json.loads(run.stdout)
    assert set(out) >= {"answer", "evidence", "ttft_ms", "usage", "finish_reason", "stream_id", "model"}
    assert out["finish_reason"] in ("stop", "length") and out["usage"]["generated_tokens"] <= 4
    assert out["model"] == "tiny-random-llava-onevision" and out["stream_id"].startswith("file-")
    verbose = scenekv("ask", video, "What happens at 0:10?", *TINY, "--max-tokens", "2", "--verbose")
    assert verbose.returncode == 0, verbose.stderr[-2000:]


def test_caption_json_is_one_line_per_written_file(video, tmp_path):
    run = scenekv("caption", video, "--out", str(tmp_path), "--format", "srt", "--json", *TINY)
    assert run.returncode == 0, run.stderr[-2000:]
    assert noise(run.stderr) == [], run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["format"] == "srt" and rows[0]["scenes"] == 3
    assert os.path.isfile(rows[0]["path"]) and rows[0]["video"] == video


def test_a_full_redis_is_one_sentence_saying_what_was_kept(video, own_redis):
    client = redis.Redis.from_url(own_redis.url)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", used + 700_000)  # room for a few chunks, not for 24 s of video
    client.close()
    full_size = ("--kv-dtype", "exact")  # fp32 chunks: int8 ones would all fit in the room left
    run = scenekv("ask", video, "What happens?", *TINY, *full_size, "--redis-url", own_redis.url)
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("scenekv ask: error: Redis is full"), run.stderr[-2000:]
    assert "stored" in last and "run the same command again to resume" in last
    assert "Traceback" not in run.stderr and noise(run.stderr) == [], run.stderr
    # ... and it is true: with room again, the same command finishes the stream and answers
    client = redis.Redis.from_url(own_redis.url)
    client.config_set("maxmemory", 0)
    client.close()
    again = scenekv("ask", video, "What happens?", *TINY, *full_size, "--redis-url", own_redis.url, "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["answer"] is not None


def test_no_redis_at_an_explicit_url_is_one_sentence_and_status_2(video):
    url = f"redis://127.0.0.1:{free_port()}/0"
    run = scenekv("ask", video, "What happens?", *TINY, "--redis-url", url)
    assert run.returncode == 2 and run.stderr.strip().splitlines()[-1].startswith(
        "scenekv ask: error: no Redis"
    )


def test_a_model_that_cannot_load_is_one_sentence_and_status_2(video, tmp_path):
    run = scenekv("ask", video, "What happens?", "--model", str(tmp_path / "no-such-checkpoint"))
    last = run.stderr.strip().splitlines()[-1]
    assert run.returncode == 2, run.stderr[-2000:]
    assert last.startswith("scenekv ask: error:") and "ray::" not in last and "pid=" not in last, last
    assert "Traceback" not in run.stderr


def test_encoders_that_do_not_load_in_time_are_one_sentence_and_status_2(video):
    """An encoder the cluster cannot start (here: no time at all to load) fails the start, it does
    not wait forever."""
    run = scenekv("ask", video, "What happens?", *TINY, "--load-timeout", "0.001")
    last = run.stderr.strip().splitlines()[-1]
    assert run.returncode == 2, run.stderr[-2000:]
    assert last.startswith("scenekv ask: error: the encoders did not load"), last
    assert "Traceback" not in run.stderr
    refused = scenekv("ask", video, "What happens?", *TINY, "--load-timeout", "0")
    assert refused.returncode == 2 and "must be more than 0 s" in refused.stderr, refused.stderr[-500:]


def test_scheduler_flags_out_of_range_are_one_sentence_before_anything_starts():
    """serve's scheduler policy is checked before Ray, Redis or the model start."""
    for flags, said in [
        (("--decode-share", "1.5"), "--decode-share must be in [0, 0.9], got 1.5"),
        (("--busy-vision-s", "0"), "--busy-vision-s must be in (0, max-vision-s=2], got 0"),
        (("--prefill-tokens", "0"), "--prefill-tokens must be at least 1, got 0"),
    ]:
        run = scenekv("serve", *TINY, *flags)
        last = run.stderr.strip().splitlines()[-1]
        assert run.returncode == 2 and last == f"scenekv serve: error: {said}", run.stderr[-2000:]
        assert "Traceback" not in run.stderr and "INFO scenekv.serve: redis:" not in run.stderr  # not started

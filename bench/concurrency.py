"""Concurrent questions through the service: aggregate decode tokens/s, TTFT, and ingest beside them.

    python bench/concurrency.py --model random-llava-onevision-qwen2-0.5b --dtype bf16 --json out.json

Through SceneKVService (Ray, one encoder actor and its scheduler; no gateway), on one push stream
of ``--frames`` frames:

- **concurrency**: for each N in ``--concurrency``, N questions at once (one thread each, as N
  clients), each decoding exactly ``--max-tokens`` tokens (random weights rarely stop early; the
  tokens really decoded are counted). Aggregate tokens/s = all tokens / wall time from the first
  ask to the last answer; per-question TTFT (ask -> first delta) p50 / p99.
- **ingesting** (``--ingest-streams`` > 0): that many push streams fed at ``--fps`` each (a push
  waits for its encode, as a live client's does) while questions are asked one after another:
  TTFT p50 / p99 of those questions; then frames/s of ingest alone and with ``--busy-questions``
  questions decoding at once throughout.

One run per table; the machine, model and dtype go in the output. Nothing is extrapolated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
import uuid

import numpy as np
from question_wait import cpu_name  # bench/: the machine line every service bench prints

from scenekv.workers.blocking_service import BlockingService
from scenekv.workers.results import AnswerDelta, AnswerDone, AnswerError
from scenekv.workers.scheduler_policy import SchedulerPolicy

QUESTION = "What is happening in the video right now? Describe it in detail."


def frame(i: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed * 100_000 + i // 10)  # a new "scene" every 10 frames
    return (rng.random((288, 384, 3)) * 255).astype(np.uint8)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[k], 3)


def ask(service: BlockingService, sid: str, qid: str, max_tokens: int) -> dict:
    t0 = time.perf_counter()
    first, done = None, None
    for item in service.ask(sid, QUESTION, qid=qid, max_tokens=max_tokens):
        if first is None and isinstance(item, AnswerDelta):
            first = time.perf_counter()
        if isinstance(item, AnswerDone | AnswerError):
            done = item
    end = time.perf_counter()
    if not isinstance(done, AnswerDone):
        raise RuntimeError(f"question {qid} failed: {done}")
    # TTFT: the encoder's own figure (the question's arrival there -> its first token, its planning
    # wait included), since a random-weight model's first tokens often decode to no text at all;
    # the client's view adds a Ray hop (milliseconds)
    return {
        "ttft_s": done.ttft_ms / 1000 if done.ttft_ms is not None else (first or end) - t0,
        "first_text_s": (first or end) - t0,
        "tokens": done.usage["generated_tokens"],
        "start": t0,
        "end": end,
    }


def at_once(service: BlockingService, sid: str, n: int, max_tokens: int, tag: str) -> list[dict]:
    rows: list[dict] = [{} for _ in range(n)]
    go = threading.Barrier(n)

    def one(i: int) -> None:
        go.wait()
        rows[i] = ask(service, sid, f"{tag}{i}", max_tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return rows


def concurrency(
    service: BlockingService, sid: str, ns: list[int], max_tokens: int, repeat: int
) -> list[dict]:
    """Each level ``repeat`` times: the median round's tokens/s, and TTFT over every round."""
    table = []
    for n in ns:
        rounds, ttft = [], []
        for k in range(repeat):
            rows = at_once(service, sid, n, max_tokens, f"c{n}-{k}-")
            wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
            rounds.append((sum(r["tokens"] for r in rows) / wall, wall, sum(r["tokens"] for r in rows)))
            ttft += [r["ttft_s"] for r in rows]
        tok_s, wall, tokens = sorted(rounds)[len(rounds) // 2]
        table.append(
            {
                "questions": n,
                "tokens": tokens,
                "wall_s": round(wall, 3),
                "tok_s": round(tok_s, 2),
                "tok_s_rounds": [round(r[0], 2) for r in rounds],
                "ttft_p50_s": pct(ttft, 50),
                "ttft_p99_s": pct(ttft, 99),
            }
        )
        print(json.dumps(table[-1]), flush=True)
    one = table[0]["tok_s"] if table and table[0]["questions"] == 1 else None
    for row in table:
        row["vs_one"] = round(row["tok_s"] / one, 2) if one else None
    return table


class Pushers:
    """``n`` push streams fed at ``fps`` each from their own threads; frames encoded per second."""

    def __init__(self, service: BlockingService, n: int, fps: float) -> None:
        self.service, self.fps = service, fps
        self.sids = [service.start_stream("push", fps=fps, carriers="pool:16").stream_id for _ in range(n)]
        self.count = [0] * n
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def _run(self, i: int) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            k = self.count[i]
            self.service.push_frame(self.sids[i], float(k) / self.fps, frame(k, seed=i + 1))
            self.count[i] += 1
            time.sleep(max(0.0, 1.0 / self.fps - (time.perf_counter() - started)))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def rate(self, seconds: float) -> float:
        before, t0 = sum(self.count), time.perf_counter()
        time.sleep(seconds)
        return round((sum(self.count) - before) / (time.perf_counter() - t0), 3)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)
        for sid in self.sids:
            self.service.end_stream(sid)
            self.service.store.delete_stream(sid)


def ingesting(service: BlockingService, sid: str, args) -> dict:
    pushers = Pushers(service, args.ingest_streams, args.fps)
    pushers.start()
    try:
        time.sleep(2.0)
        rows = []
        deadline = time.monotonic() + args.ingest_seconds
        while time.monotonic() < deadline or len(rows) < 3:
            rows.append(ask(service, sid, f"ing{len(rows)}", args.max_tokens))
            time.sleep(0.3)
        ttft = [r["ttft_s"] for r in rows]
        alone = pushers.rate(args.rate_seconds)
        stop, busy_rows = threading.Event(), []

        def keep_asking(i: int) -> None:
            k = 0
            while not stop.is_set():
                busy_rows.append(ask(service, sid, f"busy{i}-{k}", args.max_tokens))
                k += 1

        askers = [threading.Thread(target=keep_asking, args=(i,)) for i in range(args.busy_questions)]
        for t in askers:
            t.start()
        time.sleep(3.0)  # the questions are decoding
        with_questions = pushers.rate(args.rate_seconds)
        stop.set()
        for t in askers:
            t.join(300)
    finally:
        pushers.close()
    return {
        "streams": args.ingest_streams,
        "fps_each": args.fps,
        "questions": len(rows),
        "ttft_p50_s": pct(ttft, 50),
        "ttft_p99_s": pct(ttft, 99),
        "ttft_max_s": round(max(ttft), 3),
        "ingest_fps_alone": alone,
        "ingest_fps_with_questions": with_questions,
        "busy_questions": args.busy_questions,
        "busy_tokens": sum(r["tokens"] for r in busy_rows),
        "ratio": round(with_questions / alone, 3) if alone else None,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="random-llava-onevision-qwen2-0.5b")
    p.add_argument("--dtype", default=None, help="default: the service's auto")
    p.add_argument("--frames", type=int, default=8, help="frames of the stream the questions ask about")
    p.add_argument("--concurrency", default="1,4,8,16")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3, help="rounds of each concurrency level (median)")
    p.add_argument("--ingest-streams", type=int, default=4)
    p.add_argument("--fps", type=float, default=1.0)
    p.add_argument("--ingest-seconds", type=float, default=20.0, help="questions asked while ingesting")
    p.add_argument("--busy-questions", type=int, default=8)
    p.add_argument("--rate-seconds", type=float, default=15.0, help="seconds each ingest rate is measured")
    p.add_argument(
        "--decode-share", type=float, default=None, help="the scheduler's (serve's flag; default its own)"
    )
    p.add_argument("--json", default=None)
    args = p.parse_args()
    share = {} if args.decode_share is None else {"decode_share": args.decode_share}
    policy = SchedulerPolicy(**share)

    service = BlockingService(
        model=args.model,
        dtype=args.dtype,
        prefix=f"skvbench:conc:{uuid.uuid4().hex[:8]}:",
        captions=False,
        scheduling=policy,
    )
    (stats,) = service.encoder_stats()
    result: dict = {
        "command": " ".join(["python", *sys.argv]),
        "model": service.model,
        "machine": f"{platform.machine()}, {cpu_name()}, {os.cpu_count()} cores",
        "device": stats.get("device"),
        "decode_share": policy.decode_share,
    }
    import ray

    result["dtype"] = ray.get(service.encoder.describe_model.remote())["dtype"]
    try:
        sid = service.start_stream("push", fps=1.0, carriers="pool:16").stream_id
        for i in range(args.frames):
            service.push_frame(sid, float(i), frame(i))
        ask(service, sid, "warm", 2)
        result["concurrency"] = concurrency(
            service, sid, [int(x) for x in args.concurrency.split(",")], args.max_tokens, args.repeat
        )
        if args.ingest_streams > 0:
            result["ingesting"] = ingesting(service, sid, args)
        (stats,) = service.encoder_stats()
        result["decode_batch"] = stats.get("decode_batch")
        service.end_stream(sid)
        service.store.delete_stream(sid)
    finally:
        service.shutdown()
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A question's time to first token through the service, with and without a stream being ingested.

    python bench/question_wait.py --model random-llava-onevision-qwen2-0.5b --dtype bf16 --json out.json

In-process `bench/ttft.py --profile` puts a question over a short stream at 0.1-0.3 s on the
full-size 0.5B on this CPU, while through the WebSocket it took 4-5 s (issue 29). This measures the
service path between them (SceneKVService: Ray, the encoder actor, its model lock; no gateway):

- **idle**: a push stream of ``--frames`` frames, fully encoded; then ``--questions`` questions one
  after another.
- **ingesting**: the same questions while a second thread pushes frames into the same stream at
  ``--fps`` (each push waits for its encode, as a live client's frames do), starting 1 s before.

Per question: ``wall`` (from the call to the first streamed token or the end, as a client sees
it) and ``model`` (the engine's own ttft_ms, inside the encoder). Their difference is time spent
outside the model's passes: Ray hops, and waiting for the encoder's lock behind vision batches.
Medians and maxima; one run; the machine and dtype in the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from scenekv.workers.blocking_service import BlockingService
from scenekv.workers.results import AnswerDone, AnswerError

QUESTION = "What is happening in the video right now?"


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "?"
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    flags = next((ln for ln in lines if ln.startswith("flags")), "")
    return name + (" (AVX512-BF16)" if "avx512_bf16" in flags.split() else "")


def frame(i: int) -> np.ndarray:
    rng = np.random.default_rng(i // 10)  # a new "scene" every 10 frames
    return (rng.random((288, 384, 3)) * 255).astype(np.uint8)


def ask(service: BlockingService, sid: str, qid: str, max_tokens: int) -> dict:
    t0 = time.perf_counter()
    first = None
    done = None
    for item in service.ask(sid, QUESTION, qid=qid, max_tokens=max_tokens):
        if first is None:
            first = time.perf_counter()
        if isinstance(item, AnswerDone | AnswerError):
            done = item
    if not isinstance(done, AnswerDone):
        raise RuntimeError(f"question {qid} failed: {done}")
    return {"wall_s": round(first - t0, 3), "model_s": round((done.ttft_ms or 0) / 1000, 3)}


def summary(rows: list[dict]) -> dict:
    out = {}
    for key in ("wall_s", "model_s"):
        values = [r[key] for r in rows]
        out[key] = {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="random-llava-onevision-qwen2-0.5b")
    p.add_argument("--dtype", default=None, help="default: the service's auto")
    p.add_argument("--frames", type=int, default=8, help="frames encoded before the idle questions")
    p.add_argument("--questions", type=int, default=5)
    p.add_argument("--fps", type=float, default=1.0, help="push rate while ingesting")
    p.add_argument("--max-tokens", type=int, default=4)
    p.add_argument("--json", default=None)
    args = p.parse_args()

    service = BlockingService(
        model=args.model, dtype=args.dtype, prefix=f"skvbench:qwait:{uuid.uuid4().hex[:8]}:", captions=False
    )
    result: dict = {"command": " ".join(["python", *sys.argv]), "model": service.model}
    result["machine"] = f"{platform.machine()}, {cpu_name()}, {os.cpu_count()} cores"
    try:
        sid = service.start_stream("push", fps=1.0, carriers="pool:16").stream_id
        for i in range(args.frames):
            service.push_frame(sid, float(i), frame(i))
        ask(service, sid, "warm", args.max_tokens)
        idle = [ask(service, sid, f"idle{i}", args.max_tokens) for i in range(args.questions)]

        stop, pushed, encode_s = threading.Event(), [args.frames], []

        def pusher() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                service.push_frame(sid, float(pushed[0]), frame(pushed[0]))
                encode_s.append(time.perf_counter() - started)
                pushed[0] += 1
                time.sleep(max(0.0, 1.0 / args.fps - (time.perf_counter() - started)))

        thread = threading.Thread(target=pusher, daemon=True)
        thread.start()
        time.sleep(1.0)
        busy = []
        for i in range(args.questions):
            busy.append(ask(service, sid, f"busy{i}", args.max_tokens))
            time.sleep(0.5)
        stop.set()
        thread.join(60)
        result.update(
            idle=summary(idle),
            ingesting=summary(busy),
            push_s={"median": round(statistics.median(encode_s), 3), "max": round(max(encode_s), 3)},
            frames_pushed_while_asking=pushed[0] - args.frames,
            raw={"idle": idle, "ingesting": busy},
        )
        service.end_stream(sid)
        service.store.delete_stream(sid)
    finally:
        service.shutdown()
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

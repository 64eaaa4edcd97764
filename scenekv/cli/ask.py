"""`scenekv ask`: one question about a video file, answered from its memory (ingested once)."""

from __future__ import annotations

import argparse

HELP = "ingest a video (or reuse its memory) and answer a question about it, with evidence times"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from scenekv.cli.service_args import add_service_arguments

    p.add_argument("source", help="video file")
    p.add_argument("question", help='e.g. "what happened at 1:23?"')
    anchor = p.add_mutually_exclusive_group()
    anchor.add_argument("--at", help="time the question is about (seconds or hh:mm:ss)")
    anchor.add_argument("--range", nargs=2, metavar=("A", "B"), help="a time range")
    anchor.add_argument("--last", help="the last S seconds of the video")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    add_service_arguments(p)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from scenekv.cli.service_args import service_from_args, warn_if_random
    from scenekv.errors import UserError
    from scenekv.workers.results import AnswerDelta, AnswerDone, AnswerError

    service = service_from_args(args, captions=False)
    try:
        warn_if_random(service)
        sid, reused = service.ingest_file(args.source, fps=args.fps, carriers=args.carriers)
        print(f"memory: {sid} ({'reused' if reused else 'ingested'})", file=sys.stderr)
        done = None
        for item in service.ask(
            sid, args.question, at=args.at, range_=args.range, last=args.last, max_tokens=args.max_tokens
        ):
            if isinstance(item, AnswerDelta) and not args.json:
                print(item.text, end="", flush=True)
            elif isinstance(item, AnswerError):
                raise UserError(item.message, code=item.code)
            elif isinstance(item, AnswerDone):
                done = item
        if args.json:  # the schema is in README.md ("JSON output"); like answer.done on the WebSocket
            out = {"stream_id": sid, "model": service.model["model"], "question": args.question}
            got = {"answer": done.text, "evidence": list(done.evidence), "ttft_ms": done.ttft_ms}
            got.update(usage=done.usage, finish_reason=done.finish_reason)
            print(json.dumps({**out, **got}))
        else:
            spans = ", ".join(f"{e['start']:.1f}-{e['end']:.1f}s" for e in done.evidence) or "none"
            print(f"\nevidence: {spans}  (ttft {done.ttft_ms} ms)")
    finally:
        service.shutdown()
    return 0

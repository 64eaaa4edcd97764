"""`scenekv watch`: a standing question on a video, a live URL or a stream; prints each hit as it happens."""

from __future__ import annotations

import argparse

# the person at this terminal is the operator: their webhook may be on their own network
ANYWHERE = ("0.0.0.0/0", "::/0")

HELP = "watch a file, a URL or a stream (--stream SID) for something; print each appearance as it happens"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from scenekv.cli.service_args import add_service_arguments

    p.add_argument("source", nargs="?", help="video file or URL (leave out with --stream)")
    p.add_argument("text", help='what to watch for, e.g. "red square" or "purple background"')
    p.add_argument(
        "--stream",
        metavar="SID",
        default=None,
        help="a stream kept in Redis that another process ingests (e.g. `scenekv serve`): only Redis is used",
    )
    p.add_argument("--webhook", metavar="URL", default=None, help="also POST each hit there as JSON")
    p.add_argument("--cooldown", type=float, default=0.0, help="seconds after an appearance that stay quiet")
    p.add_argument(
        "--keep", action="store_true", help="leave the watch on the stream when this command exits"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per hit (watch.hit's fields)")
    add_service_arguments(p)


def run(args: argparse.Namespace) -> int:
    import uuid

    from scenekv.errors import UserError

    if (args.source is None) == (args.stream is None):
        raise UserError(
            'give a SOURCE (file or URL) and the text, or --stream SID and the text: watch VIDEO "red square"'
        )
    if args.webhook is not None and not args.webhook.lower().startswith(("http://", "https://")):
        raise UserError("--webhook must be an http(s) URL")
    if not 0 <= args.cooldown <= 86400:
        raise UserError("--cooldown must be in [0, 86400] seconds")
    watch_id = f"cli-{uuid.uuid4().hex[:8]}"
    if args.stream is not None:
        return _watch_stored(args, watch_id)
    return _watch_source(args, watch_id)


def _watch_stored(args: argparse.Namespace, watch_id: str) -> int:
    from scenekv.errors import UserError
    from scenekv.memory import MemoryStore
    from scenekv.memory.watches import new_watch
    from scenekv.qa.watch_detector import watch_terms

    store = MemoryStore(args.redis_url, args.prefix)
    store.ping()
    if not store.exists(args.stream):
        raise UserError(f"no stream {args.stream!r} in Redis", code="unknown_stream")
    if not watch_terms(args.text):
        raise UserError(f"{args.text!r} names nothing to watch for")
    after = _last_event(store, args.stream)
    store.add_watch(args.stream, _cli_watch(new_watch, watch_id, args))
    try:
        _print_hits(store, args.stream, watch_id, after, args.json, stop_at_end=False)
    finally:
        if not args.keep:
            store.remove_watch(args.stream, watch_id)
    return 0


def _watch_source(args: argparse.Namespace, watch_id: str) -> int:
    import sys

    from scenekv.cli.service_args import service_from_args, warn_if_random

    # captions on: a checkpoint that reads no frames matches its watches against them
    service = service_from_args(args, captions=True)
    try:
        warn_if_random(service)
        sid = service.start_stream(args.source, fps=args.fps, carriers=args.carriers).stream_id
        after = _last_event(service.store, sid)
        service.add_watch(
            sid, watch_id, args.text, webhook=args.webhook, cooldown_s=args.cooldown, webhook_allow=ANYWHERE
        )
        print(f"stream: {sid}; watching for {args.text!r}", file=sys.stderr)
        _print_hits(
            service.store,
            sid,
            watch_id,
            after,
            args.json,
            stop_at_end=True,
            failed=lambda: _failed(service, sid),
        )
    finally:
        service.shutdown()
    return 0


def _cli_watch(new_watch, watch_id: str, args: argparse.Namespace):
    return new_watch(
        watch_id, args.text, webhook=args.webhook, cooldown_s=args.cooldown, webhook_allow=ANYWHERE
    )


def _last_event(store, sid: str) -> str:
    newest = store.client.xrevrange(store.keys(sid).events, count=1)
    return newest[0][0].decode() if newest else "0-0"


def _failed(service, sid: str) -> str | None:
    """The source's error, once its decoder gave up (it never ends the stream then)."""
    try:
        progress = service.progress(sid)
    except Exception:  # the encoder restarting: asked again a second later
        return None
    if progress.status != "error":
        return None
    return (progress.error or {}).get("message", "the source failed")


def _print_hits(
    store, sid: str, watch_id: str, after: str, as_json: bool, *, stop_at_end: bool, failed=None
) -> None:
    """Tail the stream's event log: this watch's hits as they are stored; until the stream ends
    (``stop_at_end``), its source fails (``failed()`` says why) or Ctrl-C."""
    import json

    from scenekv.errors import UserError
    from scenekv.units import clock

    try:
        while True:
            if failed is not None and (why := failed()) is not None:
                raise UserError(f"the source failed: {why}", code="source_error")
            for eid, kind, data in store.wait_events(sid, after=after, block_ms=1000):
                after = eid
                if kind == "watch.hit" and data.get("id") == watch_id:
                    if as_json:
                        print(json.dumps({"stream_id": sid, **data}), flush=True)
                    elif data.get("end") is None:
                        print(f"{clock(data['start'], tenths=True)}  {data['text']}: appeared", flush=True)
                    else:
                        span = f"{clock(data['start'], tenths=True)}-{clock(data['end'], tenths=True)}"
                        print(f"{span}  {data['text']}: gone", flush=True)
                elif kind == "stream.ended" and stop_at_end:
                    return
    except KeyboardInterrupt:
        return

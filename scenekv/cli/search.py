"""`scenekv search`: find the scenes, across every stream kept in Redis, that show what a text says."""

from __future__ import annotations

import argparse

from scenekv.defaults import DEFAULT_PREFIX

HELP = "search every stream kept in Redis (or --stream ones) for scenes matching a text; no model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", help='what to look for, e.g. "black circle"')
    p.add_argument(
        "--stream", action="append", default=None, metavar="SID", help="search this stream only (repeatable)"
    )
    p.add_argument("--limit", type=int, default=10, help="at most this many hits (1-100, default 10)")
    p.add_argument(
        "--redis-url", default=None, help="Redis URL (default: REDIS_URL or redis://127.0.0.1:6379/0)"
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"key prefix (default {DEFAULT_PREFIX})")
    p.add_argument("--json", action="store_true", help="one JSON object per hit")


def run(args: argparse.Namespace) -> int:
    import json

    from scenekv.errors import UserError
    from scenekv.memory import MemoryStore
    from scenekv.qa.search import MAX_HITS, search
    from scenekv.units import clock

    if not args.text.strip():
        raise UserError("search needs a non-empty text")
    if not 1 <= args.limit <= MAX_HITS:
        raise UserError(f"--limit must be in [1, {MAX_HITS}]")
    store = MemoryStore(args.redis_url, args.prefix)
    store.ping()
    hits = search(store, args.text, args.stream, args.limit)
    for h in hits:
        if args.json:
            print(json.dumps(h.as_dict()))
            continue
        end = "…" if h.end is None else clock(h.end, tenths=True)
        print(f"{h.stream_id:<24} {clock(h.start, tenths=True)}-{end}  {h.caption}".rstrip())
    if not hits and not args.json:
        print("no match")
    return 0

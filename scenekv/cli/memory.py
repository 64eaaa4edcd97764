"""`scenekv memory`: list streams kept in Redis, show what one costs, delete one, give one a new key.

``key`` is the operator's way back in: a stream made before streams had owners has no key (read-only
over the WebSocket), and a key its client lost cannot be recovered (only its hash is stored). Anyone
who can run this can reach Redis, so the command is the operator's, not a client's."""

from __future__ import annotations

import argparse

from scenekv.defaults import DEFAULT_PREFIX

HELP = "list, inspect, delete or re-key the streams kept in Redis (bytes, chunks, scenes per stream)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        choices=("list", "info", "scenes", "delete", "key"),
        help="what to do (key: a new owner key for the stream, printed once; the old one stops working)",
    )
    p.add_argument("sid", nargs="?", help="stream id (info, scenes, delete, key)")
    p.add_argument(
        "--redis-url", default=None, help="Redis URL (default: REDIS_URL or redis://127.0.0.1:6379/0)"
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"key prefix (default {DEFAULT_PREFIX})")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")


def run(args: argparse.Namespace) -> int:
    import json

    from scenekv.errors import UserError
    from scenekv.memory import MemoryStore
    from scenekv.memory.usage import content, kv_dtypes, tiers

    store = MemoryStore(args.redis_url, args.prefix)
    store.ping()
    if args.action != "list" and not args.sid:
        raise UserError(f"'memory {args.action}' needs a stream id")
    if args.action == "delete":
        n = store.delete_stream(args.sid)
        if not n:
            raise UserError(f"no stream {args.sid!r} under prefix {args.prefix!r}", code="stream_not_found")
        print(
            json.dumps({"sid": args.sid, "deleted_keys": n})
            if args.json
            else f"deleted {args.sid} ({n} keys)"
        )
        return 0
    if args.action == "key":
        if not store.exists(args.sid):
            raise UserError(f"no stream {args.sid!r} under prefix {args.prefix!r}", code="stream_not_found")
        key = store.replace_key(args.sid)
        print(json.dumps({"sid": args.sid, "stream_key": key}) if args.json else key)
        return 0
    if args.action == "scenes":
        for s in store.scenes(args.sid):
            row = {
                "scene": s.index,
                "start": s.start,
                "end": s.end,
                "frames": s.frames,
                "chunks": len(s.chunks),
                "closed": s.closed,
                "compacted": s.compacted,
                "caption": s.caption,
            }
            print(json.dumps(row) if args.json else "  ".join(f"{k}={v}" for k, v in row.items()))
        return 0
    sids = store.list_streams() if args.action == "list" else [args.sid]
    if not args.json:
        print(f"{'stream':<24} {'status':<9} {'last_pts':>10} {'chunks':>7} {'scenes':>7} {'MB':>10}  model")
    for sid in sids:
        info = store.info(sid)
        row = info.as_dict()
        if args.action == "info":  # one stream: its tiers, and how their KV is stored
            metas = store.chunk_index(sid)
            row["kv_dtypes"] = kv_dtypes(metas)
            row["tiers"] = tiers(metas, store.scenes(sid), info.extra)
            row["content_index"] = content(store, sid)
        if args.json:
            print(json.dumps(row))
            continue
        last = "-" if info.last_pts is None else f"{info.last_pts:.1f}"
        print(
            f"{sid:<24} {info.status:<9} {last:>10} {info.chunks:>7} {info.scenes:>7} "
            f"{info.bytes / 1e6:>10.2f}  {info.model} {info.carriers}"
        )
        if args.action == "info":
            t = row["tiers"]
            full, compact = t["full"], t["compacted"]
            since = "-" if full["from_pts"] is None else f"{full['from_pts']:.1f}"
            print(f"  full KV: {full['chunks']} chunks, {full['bytes'] / 1e6:.2f} MB, from pts {since} s")
            print(
                f"  compacted: {compact['scenes']} scenes, {compact['chunks']} chunks, "
                f"{compact['bytes'] / 1e6:.2f} MB"
            )
            if t["retention"]:
                print(f"  retention: {t['retention']}")
            if t["cap_compacted_through"] is not None:
                print(
                    f"  the byte cap compacted full scenes up to {t['cap_compacted_through']:.1f} s "
                    "(full KV is shorter than keep_full)"
                )
            for codec, c in row["kv_dtypes"].items():
                print(f"  KV stored as {codec}: {c['chunks']} chunks, {c['bytes'] / 1e6:.2f} MB")
            ci = row["content_index"]
            print(
                f"  content index: {ci['readings']} frames read, {ci['caption_entries']} captions indexed, "
                f"{ci['labels']} labels, {ci['bytes'] / 1e6:.3f} MB"
            )
    return 0

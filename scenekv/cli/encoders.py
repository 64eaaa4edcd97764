"""`scenekv encoders up | down | status`: the encoder pool a deployment's gateways share on a Ray cluster.

``up`` starts the pool (each encoder loads the model) and leaves it running, so gateways start
without a model load of their own; ``status`` shows each encoder's node, pid and open streams;
``down`` detaches every stream (written to Redis; each resumes on its next attach) and stops them.
"""

from __future__ import annotations

import argparse

from scenekv.cli.service_args import add_cluster_arguments, add_encoder_arguments

HELP = "start, show or stop the encoder pool a deployment's gateways share (needs a Ray cluster)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action", choices=("up", "down", "status"), help="up: start (or find) them; down: stop them"
    )
    add_encoder_arguments(p)
    add_cluster_arguments(p)
    p.add_argument("--json", action="store_true", help="print the pool's status as one JSON object")


def run(args: argparse.Namespace) -> int:
    import json

    from scenekv.cli.service_args import quiet_dependencies, scheduling
    from scenekv.workers import pool_admin

    quiet_dependencies()
    where = {"redis_url": args.redis_url, "ray_address": args.ray_address, "prefix": args.prefix}
    if args.action == "up":
        out = pool_admin.up(
            **where,
            model=args.model,
            device=args.device,
            dtype=args.dtype,
            rolling={"kv_dtype": args.kv_dtype},
            captions=True,
            encoders=args.encoders,
            load_timeout=args.load_timeout,
            scheduling=scheduling(args),
        )
    elif args.action == "status":
        out = pool_admin.status(**where)
    else:
        out = pool_admin.down(**where, timeout=args.load_timeout)
    if args.json:
        print(json.dumps(out))
    elif out is None:
        print(f"no encoder pool is recorded under prefix {args.prefix!r}")
    else:
        _print(out, args.action)
    return 0 if out is not None or args.action == "down" else 1


def _print(out: dict, action: str) -> None:
    verb = {"up": "running", "status": "running", "down": "stopped"}[action]
    model = out["model"]["model"] if isinstance(out["model"], dict) else out["model"]
    print(f"encoder pool {out['pool_id']} ({out['namespace']}): {model}, {len(out['encoders'])} {verb}")
    for e in out["encoders"]:
        if "error" in e:
            print(f"  {e['name']}: not answering ({e['error']})")
        else:
            print(
                f"  {e['name']}: pid {e['pid']} on {e['node']} ({e['device']}), {e['streams']} streams open"
            )
    for name in out["missing"]:
        print(f"  {name}: missing (Ray no longer has it; the next gateway to start makes it again)")

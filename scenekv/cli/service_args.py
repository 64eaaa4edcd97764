"""The flags `scenekv serve`, `ask` and `caption` share, and the service they describe."""

from __future__ import annotations

import argparse

from scenekv.cli.inspect import add_model_arguments
from scenekv.defaults import DEFAULT_CARRIERS, DEFAULT_KV_DTYPE, DEFAULT_PREFIX, KV_DTYPES
from scenekv.errors import UserError
from scenekv.workers.scheduler_policy import SchedulerPolicy


def add_storage_arguments(p: argparse.ArgumentParser) -> None:
    """How stream memory is kept in Redis (ask, caption and serve share these)."""
    p.add_argument(
        "--kv-dtype",
        default=DEFAULT_KV_DTYPE,
        choices=KV_DTYPES,
        help="how chunks' KV is stored in Redis: int8 (default; keys per channel, values per token), "
        "int4, bf16, fp16, fp32, or exact (the model's own tensors, bit for bit)",
    )


def _positive_seconds(text: str) -> float:
    """A duration as ``parse_duration`` reads it (``900``, ``15m``), more than zero."""
    from scenekv.errors import UserError
    from scenekv.units import parse_duration

    try:
        value = parse_duration(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 s, got {text}")
    return value


def add_load_timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--load-timeout",
        type=_positive_seconds,
        default=900.0,
        help="how long the encoders get to load the model before startup fails (seconds or 15m; default 900)",
    )


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """Where the deployment lives: its Redis, its Ray cluster and its key prefix (serve, ask, caption
    and encoders share these; on a cluster the prefix names the encoder pool too)."""
    p.add_argument(
        "--redis-url", default=None, help="Redis URL (default: REDIS_URL, 127.0.0.1:6379, or a child)"
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="join this Ray cluster and use its SceneKV encoders, starting them if there are none "
        "(default: a local Ray with encoders of this process's own)",
    )
    p.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"Redis key prefix of this deployment; on a cluster also its encoders' namespace "
        f"(default {DEFAULT_PREFIX})",
    )


def add_encoder_arguments(p: argparse.ArgumentParser) -> None:
    """What the encoders are built with: model, KV at rest, load time, how many, scheduling."""
    add_model_arguments(p)
    add_storage_arguments(p)
    add_load_timeout(p)
    p.add_argument(
        "--encoders",
        type=int,
        default=None,
        help="model replicas (EncoderActors), spread over the cluster's nodes; new streams go to the "
        "least-loaded (default: one per GPU, one on a CPU-only cluster; on a cluster whose encoders "
        "run already: theirs)",
    )
    encoder = SchedulerPolicy()  # the scheduler's defaults: theirs
    p.add_argument(
        "--decode-share",
        type=float,
        default=encoder.decode_share,
        help="the part of an encoder's time answers get while frames also wait, 0 to 0.9 (default "
        f"{encoder.decode_share:g}; lower: ingest keeps up better, answers start later)",
    )
    p.add_argument(
        "--busy-vision-s",
        type=float,
        default=encoder.busy_vision_s,
        help="longest vision batch while answers run, in seconds (default "
        f"{encoder.busy_vision_s:g}; at least one frame runs)",
    )
    p.add_argument(
        "--prefill-tokens",
        type=int,
        default=encoder.prefill_tokens,
        help=f"prompt tokens prefilled a step, so a long prompt never stalls running answers (default "
        f"{encoder.prefill_tokens})",
    )


def add_service_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_storage_arguments(p)
    add_load_timeout(p)
    p.add_argument("--fps", type=float, default=1.0, help="frames sampled per second (default 1)")
    p.add_argument(
        "--carriers", default=DEFAULT_CARRIERS, help=f"carrier strategy (default {DEFAULT_CARRIERS})"
    )
    add_cluster_arguments(p)
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also show transformers' and Ray's warnings and the actors' output (default: in Ray's logs)",
    )


def service_from_args(
    args: argparse.Namespace, *, captions: bool = True, blocking: bool = True, start_pool: bool = False
):
    """A SceneKVService from the common flags (local Ray, Redis found or started, model loaded):
    wrapped in a BlockingService for the commands that run no event loop (``blocking``), as it is
    for the gateway's loop (serve). ``start_pool``: on a cluster, start the deployment's encoder
    pool if it does not run (serve); a one-off command uses it only if it runs."""
    from scenekv.workers.blocking_service import BlockingService
    from scenekv.workers.service import SceneKVService

    quiet = getattr(args, "verbose", None) is False  # ask / caption; serve keeps every log line
    if quiet:
        quiet_dependencies()
    return (BlockingService if blocking else SceneKVService)(
        worker_logs=not quiet,
        model=args.model,
        redis_url=args.redis_url,
        ray_address=args.ray_address,
        prefix=args.prefix,
        device=args.device,
        dtype=args.dtype,
        captions=captions,
        rolling={"kv_dtype": args.kv_dtype},
        live_retention=live_retention(args),
        encoders=getattr(args, "encoders", None),
        load_timeout=args.load_timeout,
        stream_caps=stream_caps(args),
        scheduling=scheduling(args),
        start_pool=start_pool,
    )


def scheduling(args: argparse.Namespace):
    """serve's --decode-share / --busy-vision-s / --prefill-tokens as a SchedulerPolicy (None
    elsewhere); a value out of range is a UserError naming the flag."""
    from scenekv.workers.scheduler_policy import SchedulerPolicy

    if not hasattr(args, "decode_share"):
        return None
    try:
        return SchedulerPolicy(
            decode_share=args.decode_share,
            busy_vision_s=args.busy_vision_s,
            prefill_tokens=args.prefill_tokens,
        )
    except UserError as exc:
        raise UserError(f"--{str(exc).replace('_', '-')}") from None


def stream_caps(args: argparse.Namespace):
    """serve's --max-push-streams / --max-file-streams / --max-live-streams (None elsewhere)."""
    from scenekv.workers.stream_caps import StreamCaps

    if not hasattr(args, "max_push_streams"):
        return None
    caps = StreamCaps(push=args.max_push_streams, file=args.max_file_streams, live=args.max_live_streams)
    for kind, cap in vars(caps).items():
        if cap < 1:
            raise UserError(f"--max-{kind}-streams must be at least 1, got {cap}")
    return caps


def live_retention(args: argparse.Namespace) -> dict | None:
    """serve's --keep-full / --keep-compact / --max-stream-bytes as Retention fields (None elsewhere)."""
    from scenekv.units import parse_duration, parse_size

    if not hasattr(args, "keep_full"):
        return None
    cap = getattr(args, "max_stream_bytes", None)
    return {
        "keep_s": parse_duration(args.keep_full),
        "max_s": parse_duration(args.keep_compact),
        "max_bytes": parse_size(cap) if cap is not None else None,
    }


def quiet_dependencies() -> None:
    """The terminal shows SceneKV's lines: dependencies' warnings (transformers' deprecations, torch,
    Ray) are silenced in this process; SceneKV's own warnings (e.g. damaged media) still show."""
    import logging
    import warnings

    for module in ("transformers", "torch", "ray", "huggingface_hub", "accelerate"):
        warnings.filterwarnings("ignore", module=rf"{module}(\.|$)")
    for name in ("transformers", "ray", "torch", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)


def warn_if_random(service) -> None:
    """Say once, on stderr, when the model's answers are placeholders or world-only."""
    from scenekv.cli.inspect import print_model_banner

    m = service.model
    print_model_banner(m["model"], random=m["random_weights"], world_only=m.get("world_only", False))

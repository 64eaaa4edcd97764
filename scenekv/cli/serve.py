"""`scenekv serve`: the service behind a WebSocket gateway, with the demo page, /healthz and /metrics."""

from __future__ import annotations

import argparse

from scenekv.cli.service_args import add_cluster_arguments, add_encoder_arguments
from scenekv.defaults import DEFAULT_CARRIERS
from scenekv.web.config import GatewayConfig
from scenekv.workers.stream_caps import StreamCaps

HELP = "serve the WebSocket API and the demo page (http://127.0.0.1:8765/)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port for HTTP and WebSocket (default 8765)")
    add_encoder_arguments(p)
    add_cluster_arguments(p)
    p.add_argument(
        "--token",
        default=None,
        help="require this bearer token (Authorization header or ?token=); default: a new one each "
        "start, printed with the page's URL",
    )
    p.add_argument(
        "--no-token",
        action="store_true",
        help="serve without a token: anyone who can reach the port can use the model, read every "
        "stream's answers, captions and media, and /metrics",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name clients may reach this server by besides its own (repeatable; a proxy's or "
        "load balancer's name); other Host headers get 421",
    )
    p.add_argument("--media-root", default=None, help="directory that file:NAME sources may read from")
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="extra browser Origin allowed to open /ws (repeatable; the server's own origin always is)",
    )
    p.add_argument(
        "--allow-source-host",
        action="append",
        default=[],
        metavar="HOST",
        help="let clients' URL sources reach this internal host, address or network (repeatable; "
        "loopback, private and link-local addresses are refused otherwise)",
    )
    p.add_argument(
        "--fps", type=float, default=1.0, help="default frames per second of a session (default 1)"
    )
    p.add_argument(
        "--carriers",
        default=DEFAULT_CARRIERS,
        help=f"default carrier strategy of a session (default {DEFAULT_CARRIERS})",
    )
    p.add_argument("--max-frame-mb", type=float, default=4.0, help="largest pushed image in MiB (default 4)")
    p.add_argument("--frames-per-s", type=float, default=32.0, help="per-connection frame rate limit")
    p.add_argument("--questions-per-min", type=float, default=30.0, help="per-connection question rate limit")
    p.add_argument("--drain-s", type=float, default=5.0, help="seconds clients get after go_away (default 5)")
    p.add_argument(
        "--idle-s",
        type=float,
        default=300.0,
        help="release a push stream after this long with no client and no frame, and a live URL "
        "stream without watches after this long with no client (default 300)",
    )
    p.add_argument(
        "--keep-full",
        default="1h",
        help="live and push streams keep full KV for this much of the newest stream time (default 1h)",
    )
    p.add_argument(
        "--keep-compact",
        default="24h",
        help="older scenes are compacted to one chunk + caption and kept until this old (default 24h)",
    )
    p.add_argument(
        "--max-stream-bytes",
        default=None,
        help="hard cap per live or push stream in Redis, e.g. 2GB or 512MiB (default: none); oldest "
        "compacted scenes go first, then full scenes are compacted",
    )
    limits, caps = GatewayConfig(), StreamCaps()  # one copy of each default: theirs
    for flag, default, what in [
        ("--max-connections", limits.max_connections, "open WebSockets"),
        (
            "--max-connections-per-client",
            limits.max_connections_per_client,
            "open WebSockets from one address",
        ),
        ("--max-push-streams", caps.push, "push streams open at once"),
        ("--max-file-streams", caps.file, "files decoded at once"),
        ("--max-live-streams", caps.live, "live URL streams decoded at once"),
    ]:
        p.add_argument(flag, type=int, default=default, help=f"{what} (default {default})")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import secrets
    from pathlib import Path

    from scenekv.errors import UserError

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("scenekv.serve")
    if logging.getLogger().level > logging.DEBUG:  # one line per HTTP request and handshake is noise
        logging.getLogger("websockets").setLevel(logging.WARNING)
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be in 1..65535, got {args.port}")
    if not args.idle_s > 0:
        raise UserError(f"--idle-s must be positive, got {args.idle_s:g}")
    if not 0 < args.fps <= 30:
        raise UserError(f"--fps must be in (0, 30], got {args.fps:g}")
    media_root = None
    if args.media_root:
        media_root = Path(args.media_root).expanduser()
        if not media_root.is_dir():
            raise UserError(f"--media-root {args.media_root!r} is not a directory")
    token = args.token
    if args.no_token and token:
        raise UserError("--no-token and --token (or SCENEKV_TOKEN) contradict each other")
    if args.no_token:
        log.warning(
            "serving without a token (--no-token): anyone who can reach %s:%d can use the model and "
            "read every stream, its captions and media, and /metrics", args.host, args.port,
        )  # fmt: skip
    elif not token:  # as Jupyter does: a fresh token, shown once with the page's URL
        token = secrets.token_urlsafe(24)

    from scenekv.cli.hardstop import HardStop
    from scenekv.cli.service_args import service_from_args
    from scenekv.web.auth import redact_url
    from scenekv.web.config import GatewayConfig, MiB
    from scenekv.web.server import Gateway

    log.info("starting the service (Ray, Redis, model %s) ...", args.model)
    service = service_from_args(args, blocking=False, start_pool=True)  # the gateway's loop awaits it
    hard = HardStop(args.drain_s + 5.0)  # armed by SIGTERM / Ctrl-C: the stop takes no longer
    loop = None
    try:
        model = service.model
        log.info("redis: %s", redact_url(str(service.redis_how)))
        log.info("ray: %s", service.ray_address or "local (started by this process)")
        log.info("model: %s on %s (%s)", model.get("model"), model.get("device"), model.get("dtype"))
        banner = random_weights_banner(model)
        if banner:
            log.warning(banner)
        config = GatewayConfig(
            host=args.host,
            port=args.port,
            token=token,
            token_generated=token is not None and token != args.token,
            media_root=media_root,
            allowed_origins=tuple(args.allow_origin),
            allowed_hosts=tuple(args.allow_host),
            allowed_source_hosts=tuple(args.allow_source_host),
            fps=args.fps,
            carriers=args.carriers,
            max_frame_bytes=int(args.max_frame_mb * MiB),
            hard_max_message_bytes=max(int(args.max_frame_mb * MiB) * 2, 8 * MiB),
            frames_per_s=args.frames_per_s,
            questions_per_min=args.questions_per_min,
            drain_s=args.drain_s,
            idle_s=args.idle_s,
            max_connections=args.max_connections,
            max_connections_per_client=args.max_connections_per_client,
        )
        gateway = Gateway(service, config)
        loop = asyncio.new_event_loop()
        loop.run_until_complete(
            gateway.run_until_signal(shutdown_service=False, on_signal=hard.arm, on_second_signal=hard.now)
        )
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    finally:
        log.info("shutting the service down")
        stop = service.shutdown(timeout=hard.left())  # on the loop its locks and refs belong to
        if loop is not None:
            loop.run_until_complete(stop)
            _close_loop(loop, hard.left())
        else:
            asyncio.run(stop)
        hard.disarm()
    return 0


def _close_loop(loop, timeout: float) -> None:
    """asyncio.run's cleanup with a bound: cancel what is left, wait for the thread pool a while."""
    import asyncio
    import contextlib

    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), timeout))
    loop.close()


def random_weights_banner(model: dict) -> str | None:
    """The model banner of `scenekv inspect`, framed for the server log (None for a real checkpoint)."""
    from scenekv.cli.inspect import model_banner

    text = model_banner(
        model.get("model", "?"),
        random=bool(model.get("random_weights")),
        world_only=bool(model.get("world_only")),
    )
    if text is None:
        return None
    line = "*" * 100
    return f"\n{line}\n{text}\n{line}"

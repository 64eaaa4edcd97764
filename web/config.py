"""Gateway settings: what `scenekv serve` flags set, with defaults a laptop demo can live with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scenekv.defaults import DEFAULT_CARRIERS

MiB = 2**20


@dataclass
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None  # bearer token for /ws and /metrics; None: open (loopback demo)
    token_generated: bool = False  # made at start (serve without --token): printed with the page URL
    media_root: Path | None = None  # where "file:NAME" sources may come from; None: file sources off
    allowed_origins: tuple[str, ...] = ()  # extra browser origins besides the server's own
    # names a request's Host may carry besides the server's own (web/auth.py host_ok); "*": any
    allowed_hosts: tuple[str, ...] = ()
    # hosts (names, addresses or networks) a client's URL source may reach although they are
    # internal (loopback, private, link-local): none by default
    allowed_source_hosts: tuple[str, ...] = ()
    fps: float = 1.0  # default sampling rate for sessions that give none
    carriers: str = DEFAULT_CARRIERS
    max_frame_bytes: int = 4 * MiB  # one pushed image (binary or base64-decoded)
    max_text_bytes: int = 64 * 1024  # any JSON message other than frame.append
    hard_max_message_bytes: int = 8 * MiB  # beyond this websockets closes the connection (1009)
    frames_per_s: float = 32.0  # sustained per-connection push rate (burst: 2 s worth)
    questions_per_min: float = 30.0  # per connection (burst: 10)
    max_questions_in_flight: int = 4  # per connection
    frame_queue: int = 4  # frames buffered per connection before reading stops (backpressure)
    # every text message a connection sends, text frames too (burst: 3 s worth); above the frame
    # rate, so --frames-per-s is what bounds a base64 pusher
    messages_per_s: float = 50.0
    starts_per_min: float = 30.0  # session.start per connection (burst: 10)
    max_streams_per_connection: int = 8  # new streams one connection may start
    max_connections: int = 256  # open WebSockets on this gateway
    max_connections_per_client: int = 32  # open WebSockets from one address
    encoder_wait_s: float = 60.0  # how long queued frames wait for a restarting encoder
    retry_after_ms: int = 1000  # what an encoder_unavailable refusal tells the client to wait
    progress_interval_s: float = 1.0
    idle_s: float = 300.0  # a push stream with no client and no frame this long is released
    drain_s: float = 5.0  # how long clients get after go_away before the service shuts down
    static_dir: Path = field(default_factory=lambda: Path(__file__).parent / "static")

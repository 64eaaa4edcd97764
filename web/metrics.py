"""What /metrics shows, through prometheus_client: the gateway's own figures and the encoders'.

Each gateway has its own registry (several gateways in one process, as in tests, never share a
series). The encoders' figures live in their actors; /metrics reads a snapshot of them
(``Service.encoder_stats``) just before rendering, and ``EncoderCollector`` turns it into series
labelled by encoder, so a scrape shows what every encoder is doing without the gateway keeping any
state of its own about them.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# No `_created` twin per counter and histogram: one series per figure (process-wide setting).
disable_created_metrics()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
GATEWAY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes

# encoder figure -> (kind, help); what EncoderActor.stats() reports beside node / pid / device
ENCODER_FIGURES = {
    "streams": ("gauge", "Streams open on the encoder"),
    "frames_encoded": ("counter", "Frames encoded (vision tower + prefill)"),
    "append_calls": ("counter", "Append calls served (each one batch of one stream's frames)"),
    "busy_seconds": ("counter", "Time the encoder's scheduler spent running steps"),
    "steps": ("counter", "Scheduler steps run (each: a call, a vision batch, a decode step, background)"),
    "call_wait_seconds": ("counter", "Time planning and other model calls waited for their step, summed"),
    "running_generations": ("gauge", "Answers decoding or waiting to start on the encoder"),
    "background_generations": ("gauge", "Captions' and frame readings' generations decoding"),
    "decode_tokens": ("counter", "Answer tokens decoded"),
    "questions": ("counter", "Questions started"),
    "queue_depth": ("gauge", "Append calls waiting for the next vision batch"),
    "queue_wait_seconds": ("counter", "Time append calls waited for their batch, summed"),
    "captions_due": ("gauge", "Closed scenes waiting for their caption"),
    "caption_steps": ("counter", "Caption work steps (plan, token, store write) run between batches"),
    "captions_made": ("counter", "Scene captions made and stored"),
    "caption_retries": ("counter", "Caption tries that failed and were scheduled again"),
    "captions_given_up": ("counter", "Scene captions left out after their last try"),
    "readings_due_streams": ("gauge", "Streams with frames waiting to be read for the content index"),
    "frames_read": ("counter", "Frames read for the content index (object and background)"),
    "frame_reads_given_up": ("counter", "Frames left unread after their last try"),
    "watch_hits": ("counter", "Watch hits stored (an appearance's start, and its end)"),
    "webhooks_delivered": ("counter", "Watch hits POSTed to a webhook and accepted"),
    "webhook_retries": ("counter", "Webhook tries that failed and were scheduled again"),
    "webhooks_failed": ("counter", "Webhook deliveries given up, refused (host rule, 4xx) or dropped"),
}
ENCODER_HISTOGRAMS = {
    "batch_streams": "Distinct streams in each vision batch",
    "batch_frames": "Frames in each vision batch",
    "decode_batch": "Generations decoded together in each decode step",
}


class EncoderCollector(Collector):
    """The encoders' last snapshot as series ``scenekv_encoder_<figure>{encoder, node}``."""

    def __init__(self) -> None:
        self.snapshot: list[dict] = []

    def collect(self) -> Iterator:
        up = GaugeMetricFamily(
            "scenekv_encoder_up", "Whether the encoder answered the last scrape", labels=["encoder"]
        )
        families = {}
        for name, (kind, help_) in ENCODER_FIGURES.items():
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            families[name] = family(f"scenekv_encoder_{name}", help_, labels=["encoder", "node"])
        histograms = {
            name: HistogramMetricFamily(f"scenekv_encoder_{name}", help_, labels=["encoder", "node"])
            for name, help_ in ENCODER_HISTOGRAMS.items()
        }
        for i, enc in enumerate(self.snapshot):
            up.add_metric([str(i)], 0.0 if enc.get("error") else 1.0)
            labels = [str(i), str(enc.get("node", ""))]
            for name, family in families.items():
                if enc.get(name) is not None:
                    family.add_metric(labels, float(enc[name]))
            for name, family in histograms.items():
                h = enc.get(name)
                if h:  # per-bucket counts -> cumulative, as the exposition format has them
                    cumulative, total = [], 0
                    for bound, n in zip([*h["buckets"], float("inf")], h["counts"], strict=True):
                        total += n
                        cumulative.append((floatToGoString(bound), total))
                    family.add_metric(labels, cumulative, sum_value=h["sum"])
        yield up
        yield from families.values()
        yield from histograms.values()


class GatewayMetrics:
    """Everything /metrics shows; attribute names say what each one counts."""

    def __init__(self) -> None:
        self.registry = reg = CollectorRegistry(auto_describe=True)
        self.connections = Gauge("scenekv_ws_connections", "Open WebSocket connections", registry=reg)
        self.streams = Gauge(
            "scenekv_streams_watched", "Streams with at least one connected client", registry=reg
        )
        self.frames = Counter("scenekv_frames_ingested", "Frames pushed by clients and encoded", registry=reg)
        self.frames_dropped = Counter(
            "scenekv_frames_rejected",
            "Pushed frames refused (rate limit, bad image, bad pts)",
            ["reason"],
            registry=reg,
        )
        self.encode_seconds = Histogram(
            "scenekv_encode_seconds",
            "Time to encode one pushed frame (service.push_frame)",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.gateway_frame = Histogram(
            "scenekv_gateway_frame_seconds",
            "The gateway's own share of a pushed frame: reading the message, then from the front of "
            "its queue to the encoder call (not the wait behind earlier frames)",
            buckets=GATEWAY_BUCKETS,
            registry=reg,
        )
        self.gateway_send = Histogram(
            "scenekv_gateway_send_seconds",
            "A server message (an answer token, ...) from being queued for its client to written",
            buckets=GATEWAY_BUCKETS,
            registry=reg,
        )
        self.frame_queue = Gauge(
            "scenekv_frame_queue_depth", "Pushed frames waiting for the encoder", registry=reg
        )
        self.questions_in_flight = Gauge(
            "scenekv_questions_in_flight", "Questions being answered", registry=reg
        )
        self.outbox = Gauge("scenekv_outbox_depth", "Server messages queued for slow clients", registry=reg)
        # Stream figures are over the streams this gateway serves, never labelled by stream: a
        # stream id must not leak through a scrape, and a label per stream grows without end.
        # StreamRegistry sets what they read (set_function).
        self.lag = Gauge(
            "scenekv_ingest_lag_seconds", "The largest ingest lag of the streams served here", registry=reg
        )
        self.memory = Gauge(
            "scenekv_stream_memory_bytes", "KV bytes stored in Redis by the streams served here", registry=reg
        )
        self.stream_frames = Gauge(
            "scenekv_stream_frames", "Frames ingested by the streams served here", registry=reg
        )
        self.answers = Counter(
            "scenekv_answers", "Answers finished, by finish reason", ["finish_reason"], registry=reg
        )
        self.ttft = Histogram(
            "scenekv_answer_ttft_seconds",
            "Time to first answer token (model side)",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.errors = Counter(
            "scenekv_errors", "Error messages sent to clients, by code", ["code"], registry=reg
        )
        self.http = Counter(
            "scenekv_http_requests", "HTTP requests, by path and status", ["path", "status"], registry=reg
        )
        self.encoders = EncoderCollector()
        reg.register(self.encoders)
        # the standard process and Python series every dashboard expects (resident memory, open
        # files, CPU seconds, GC): the process-wide collectors, also shown by this registry
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            reg.register(collector)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value, 0 before its first event (``value("scenekv_errors_total", code=c)``)."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)

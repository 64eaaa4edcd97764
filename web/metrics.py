"""Prometheus text exposition (format 0.0.4), hand-written: counters, gauges and histograms.

A few dozen lines instead of a dependency: the gateway only needs labelled counters/gauges and
fixed-bucket histograms, all updated from the event loop thread (no locking needed).
"""

from __future__ import annotations

import math

LabelKey = tuple[tuple[str, str], ...]


def _labels(key: LabelKey, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = key + extra
    if not pairs:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str) -> None:
        super().__init__(name, help)
        self.values: dict[LabelKey, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        values = self.values or {(): 0.0}
        return self.header() + [f"{self.name}{_labels(k)} {_num(v)}" for k, v in sorted(values.items())]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = float(value)

    def remove(self, **labels: str) -> None:
        self.values.pop(tuple(sorted(labels.items())), None)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: tuple[float, ...]) -> None:
        super().__init__(name, help)
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def render(self) -> list[str]:
        lines = self.header()
        for bound, n in zip(self.buckets, self.counts, strict=True):
            lines.append(f'{self.name}_bucket{{le="{_num(bound)}"}} {n}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{self.name}_sum {_num(self.sum)}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """Everything /metrics shows; attribute names say what each one counts."""

    def __init__(self) -> None:
        self.connections = Gauge("scenekv_ws_connections", "Open WebSocket connections")
        self.streams = Gauge("scenekv_streams_watched", "Streams with at least one connected client")
        self.frames = Counter("scenekv_frames_ingested_total", "Frames pushed by clients and encoded")
        self.frames_dropped = Counter(
            "scenekv_frames_rejected_total", "Pushed frames refused (rate limit, bad image, bad pts)"
        )
        self.encode_seconds = Histogram(
            "scenekv_encode_seconds", "Time to encode one pushed frame (service.push_frame)", LATENCY_BUCKETS
        )
        self.frame_queue = Gauge("scenekv_frame_queue_depth", "Pushed frames waiting for the encoder")
        self.questions_in_flight = Gauge("scenekv_questions_in_flight", "Questions being answered")
        self.outbox = Gauge("scenekv_outbox_depth", "Server messages queued for slow clients")
        self.lag = Gauge("scenekv_ingest_lag_seconds", "Ingest lag per stream")
        self.memory = Gauge("scenekv_stream_memory_bytes", "KV bytes stored in Redis per stream")
        self.stream_frames = Gauge("scenekv_stream_frames", "Frames ingested per stream (this gateway)")
        self.answers = Counter("scenekv_answers_total", "Answers finished, by finish reason")
        self.ttft = Histogram(
            "scenekv_answer_ttft_seconds", "Time to first answer token (model side)", LATENCY_BUCKETS
        )
        self.errors = Counter("scenekv_errors_total", "Error messages sent to clients, by code")
        self.http = Counter("scenekv_http_requests_total", "HTTP requests, by path and status")

    def all(self) -> list[_Metric]:
        return [v for v in vars(self).values() if isinstance(v, _Metric)]

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.all():
            lines += metric.render()
        return "\n".join(lines) + "\n"

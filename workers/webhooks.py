"""Webhook delivery: each watch hit POSTed as JSON to the watch's URL, retried with back-off.

The encoder that finds a hit hands it here and goes on: ``WORKERS`` threads per encoder do the
network, so a slow or dead receiver never holds a frame, a reading or a question. A delivery is
retried on a connection error, a timeout, 429 or 5xx, after ``delays`` (0.5, 1, 2, 4, 8 s: six
tries in about 16 s), then given up and logged; any other answer ends it (a 3xx too: redirects are
not followed).

Receivers are other people's servers, so each is bounded: one try at a time per receiver (host and port: one
that answers slowly holds one worker, never all of them), at most ``PENDING_PER_HOST`` deliveries
waiting for it (more are dropped and counted), and each try ends after ``DEADLINE_S`` whatever the
receiver does (a reply dripped a byte at a time would pass every per-read timeout: the socket is
shut down under it).

Before every try the URL's host is resolved and each address checked with the rule URL sources
follow (ingest/hosts.py), against the operator's rules stored with the watch when it was added;
the POST then goes to that checked address (the name is not resolved again: no DNS rebinding in
between), with the URL's host name in ``Host`` and, for https, in the TLS handshake.

Deliveries live in this process's memory: a hit whose delivery is still being retried when the
encoder dies is not posted again by its successor (the hit itself is stored and told to clients).
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import json
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from scenekv.ingest.hosts import HostRefused, allowed_addresses

log = logging.getLogger(__name__)

DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
TIMEOUT_S = 5.0  # per connect / read
DEADLINE_S = 10.0  # per try, all of it
WORKERS = 4
PENDING_PER_HOST = 100
USER_AGENT = "SceneKV-webhook/1"


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    allow: tuple[str, ...] = field(compare=False)
    host: str = field(compare=False)
    tries: int = field(default=0, compare=False)


@dataclass
class WebhookCounts:
    delivered: int = 0
    retried: int = 0
    failed: int = 0  # given up, refused (host rule, an answer not retried) or dropped


class _Pinned(http.client.HTTPConnection):
    """HTTP(S) to an address already checked, under the URL's host name (Host header, TLS SNI and
    certificate check); ``abort`` ends a try from another thread."""

    def __init__(self, address: str, port: int, hostname: str, tls: bool, timeout: float) -> None:
        super().__init__(f"[{address}]" if ":" in address else address, port, timeout=timeout)
        self.hostname, self.tls = hostname, tls

    def connect(self) -> None:
        super().connect()
        if self.tls:
            self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=self.hostname)

    def abort(self) -> None:
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class WebhookSender:
    def __init__(
        self,
        *,
        delays: Iterable[float] = DELAYS,
        timeout_s: float = TIMEOUT_S,
        deadline_s: float = DEADLINE_S,
        workers: int = WORKERS,
    ) -> None:
        self.delays = tuple(delays)
        self.timeout_s, self.deadline_s, self.workers = timeout_s, deadline_s, workers
        self.counts = WebhookCounts()
        self._queue: list[_Delivery] = []
        self._waiting: Counter[str] = Counter()  # host -> deliveries queued or in flight
        self._busy: set[str] = set()  # hosts with a try in flight
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def send(self, url: str, payload: dict, *, allow: Iterable[str] = ()) -> None:
        """Queue one POST of ``payload`` to ``url``; returns at once. ``allow``: the operator's host
        rules the watch was added under."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        parts = urlsplit(url)
        host = f"{(parts.hostname or '').lower()}:{parts.port or ''}"  # one receiver: host and port
        with self._cond:
            if self._closed:
                return
            if self._waiting[host] >= PENDING_PER_HOST:
                self.counts.failed += 1
                log.warning(
                    "webhook %s: %d deliveries waiting; this one is dropped", _host(url), PENDING_PER_HOST
                )
                return
            self._waiting[host] += 1
            heapq.heappush(
                self._queue, _Delivery(time.monotonic(), next(self._seq), url, body, tuple(allow), host)
            )
            if not self._threads:
                for i in range(self.workers):
                    thread = threading.Thread(target=self._run, name=f"webhooks-{i}", daemon=True)
                    thread.start()
                    self._threads.append(thread)
            self._cond.notify()

    def pending(self) -> int:
        """Deliveries queued or in flight."""
        with self._cond:
            return sum(self._waiting.values())

    def close(self, drain_s: float = 0.0) -> None:
        """Stop, after up to ``drain_s`` for what is pending; what is left is dropped."""
        deadline = time.monotonic() + drain_s
        with self._cond:
            while self._waiting and time.monotonic() < deadline:
                self._cond.wait(max(0.0, min(0.2, deadline - time.monotonic())))
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(1.0)

    def _next(self) -> _Delivery | None:
        """The first due delivery to a host with no try in flight (None: closed)."""
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                ready = [d for d in self._queue if d.host not in self._busy]
                due = min(ready, default=None)
                if due is not None and due.due <= now:
                    self._queue.remove(due)
                    heapq.heapify(self._queue)
                    self._busy.add(due.host)
                    return due
                self._cond.wait(None if due is None else due.due - now)
            return None

    def _run(self) -> None:
        while (delivery := self._next()) is not None:
            retry = self._try(delivery)
            with self._cond:
                self._busy.discard(delivery.host)
                if retry and delivery.tries <= len(self.delays) and not self._closed:
                    self.counts.retried += 1
                    delivery.due = time.monotonic() + self.delays[delivery.tries - 1]
                    heapq.heappush(self._queue, delivery)
                else:
                    if retry:
                        self.counts.failed += 1
                        log.warning(
                            "webhook %s: given up after %d tries", _host(delivery.url), delivery.tries
                        )
                    self._waiting[delivery.host] -= 1
                    if self._waiting[delivery.host] <= 0:
                        del self._waiting[delivery.host]
                self._cond.notify_all()

    def _try(self, delivery: _Delivery) -> bool:
        """One POST; True when it is worth trying again."""
        delivery.tries += 1
        try:
            status = self._post(delivery)
        except HostRefused as exc:
            self._count_failed()
            log.warning("webhook %s refused: %s", _host(delivery.url), exc)
            return False
        except (OSError, http.client.HTTPException) as exc:  # refused, unreachable, timed out, cut off
            log.info("webhook %s: %s", _host(delivery.url), exc)
            return True
        if 200 <= status < 300:
            with self._cond:
                self.counts.delivered += 1
            return False
        if status == 429 or status >= 500:
            return True
        self._count_failed()
        log.warning("webhook %s answered %d; not retried", _host(delivery.url), status)
        return False

    def _post(self, delivery: _Delivery) -> int:
        parts = urlsplit(delivery.url)
        tls = parts.scheme.lower() == "https"
        address = allowed_addresses(parts.hostname or "", delivery.allow)[0]
        conn = _Pinned(
            str(address), parts.port or (443 if tls else 80), parts.hostname or "", tls, self.timeout_s
        )
        timer = threading.Timer(self.deadline_s, conn.abort)
        timer.start()
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            headers = {
                "Host": parts.netloc.rpartition("@")[2],
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            }
            conn.request("POST", path, body=delivery.body, headers=headers)
            response = conn.getresponse()
            response.read(1024)
            return response.status
        finally:
            timer.cancel()
            conn.close()

    def _count_failed(self) -> None:
        with self._cond:
            self.counts.failed += 1


def _host(url: str) -> str:
    """The part of a URL that may go to the log (no path: it may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

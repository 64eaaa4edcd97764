"""Webhook delivery: each watch hit POSTed as JSON to the watch's URL, retried with back-off.

The encoder that finds a hit hands it here and goes on: one thread per encoder does the network,
so a slow or dead receiver never holds a frame, a reading or a question. A delivery is retried on
a connection error, a timeout, 429 or 5xx, after ``delays`` (0.5, 1, 2, 4, 8 s: six tries in
about 16 s), then given up and logged; any other answer ends it. Redirects are not followed.

Before every try the URL's host is checked again with the rule URL sources follow
(ingest/hosts.py): a name that resolved to a public address when the watch was added and resolves
to an internal one now is refused, unless the operator allowed that host (``trusted``). Known gap,
as for URL sources: the HTTP client resolves the name once more when it connects.

Deliveries live in this process's memory: a hit whose delivery is still being retried when the
encoder dies is not posted again by its successor (the hit itself is stored and told to clients).
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from scenekv.ingest.hosts import HostRefused, check_host

log = logging.getLogger(__name__)

DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
TIMEOUT_S = 5.0
MAX_PENDING = 1000  # deliveries waiting; more are dropped (logged): a receiver far behind is down
USER_AGENT = "SceneKV-webhook/1"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a 3xx is the receiver's answer, not a hop
        return None


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    trusted: bool = field(compare=False)
    tries: int = field(default=0, compare=False)


@dataclass
class WebhookCounts:
    delivered: int = 0
    retried: int = 0
    failed: int = 0  # given up, refused or dropped


class WebhookSender:
    def __init__(
        self,
        *,
        delays: Iterable[float] = DELAYS,
        timeout_s: float = TIMEOUT_S,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.delays = tuple(delays)
        self.timeout_s = timeout_s
        self.allowed_hosts = tuple(allowed_hosts)
        self.counts = WebhookCounts()
        self._queue: list[_Delivery] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._opener = urllib.request.build_opener(_NoRedirect)

    def send(self, url: str, payload: dict, *, trusted: bool = False) -> None:
        """Queue one POST of ``payload`` to ``url``; returns at once."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= MAX_PENDING:
                self.counts.failed += 1
                log.warning("webhook %s: %d deliveries pending; this one is dropped", _host(url), MAX_PENDING)
                return
            heapq.heappush(self._queue, _Delivery(time.monotonic(), next(self._seq), url, body, trusted))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
                self._thread.start()
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def close(self, timeout: float = 2.0) -> None:
        """Stop; deliveries still waiting are dropped."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._queue or self._queue[0].due > time.monotonic()):
                    wait = self._queue[0].due - time.monotonic() if self._queue else None
                    self._cond.wait(wait)
                if self._closed:
                    return
                delivery = heapq.heappop(self._queue)
            retry = self._try(delivery)
            with self._cond:
                if retry and delivery.tries <= len(self.delays):
                    self.counts.retried += 1
                    delivery.due = time.monotonic() + self.delays[delivery.tries - 1]
                    heapq.heappush(self._queue, delivery)
                elif retry:
                    self.counts.failed += 1
                    log.warning("webhook %s: given up after %d tries", _host(delivery.url), delivery.tries)

    def _try(self, delivery: _Delivery) -> bool:
        """One POST; True when it is worth trying again."""
        delivery.tries += 1
        if not delivery.trusted:
            try:
                check_host(urlsplit(delivery.url).hostname or "", self.allowed_hosts)
            except HostRefused as exc:
                with self._cond:
                    self.counts.failed += 1
                log.warning("webhook %s refused: %s", _host(delivery.url), exc)
                return False
        request = urllib.request.Request(
            delivery.url,
            data=delivery.body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
            method="POST",
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                response.read(1024)
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                return True
            with self._cond:
                self.counts.failed += 1
            log.warning("webhook %s answered %d; not retried", _host(delivery.url), exc.code)
            return False
        except (OSError, ValueError) as exc:  # refused, unreachable, timed out, a bad URL
            log.info("webhook %s: %s", _host(delivery.url), exc)
            return True
        with self._cond:
            self.counts.delivered += 1
        return False


def _host(url: str) -> str:
    """The part of a URL that may go to the log (no path: it may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

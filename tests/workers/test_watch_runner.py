"""Watches on stored readings (workers/watch_runner.py, memory/watches.py): hits stored and logged
once per appearance, a restored runner (a restarted encoder) tells nothing twice, watches go with
the stream, and a webhook reaches a real HTTP server, retried after a 500."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scenekv.errors import UserError
from scenekv.memory import MemoryStore, Reading
from scenekv.memory.watches import Watch, WatchRefused, new_watch
from scenekv.workers.watch_runner import WatchRunner
from scenekv.workers.webhooks import WebhookSender

from support.redis_fixtures import keys_under


@pytest.fixture
def sid(store: MemoryStore) -> str:
    return store.create_stream(source="test", model="m", fps=1.0)


def _feed(runner: WatchRunner, store: MemoryStore, sid: str, objects: str, start: float = 0.0) -> None:
    """Store and hand over one reading a second: ``R`` a red square, ``G`` a green circle."""
    names = {"R": "red square", "G": "green circle", ".": "nothing"}
    for i, c in enumerate(objects):
        reading = Reading(start + i, names[c], "blue")
        store.put_reading(sid, reading)
        runner.on_readings(sid, [reading])


def _logged(store: MemoryStore, sid: str, kind: str) -> list[dict]:
    return [data for _, t, data in store.events(sid) if t == kind]


def test_a_watch_hits_once_per_appearance_and_its_end_follows(store, sid):
    runner = WatchRunner(store)
    store.add_watch(sid, new_watch("w1", "red square"))
    _feed(runner, store, sid, "..RRRR.R....GGG..RR.....")
    hits = store.watch_hits(sid)
    assert [(h.start, h.end) for h in hits] == [(2.0, 8.0), (17.0, 19.0)]
    logged = _logged(store, sid, "watch.hit")
    assert [(h["start"], h.get("end")) for h in logged] == [
        (2.0, None),
        (2.0, 8.0),
        (17.0, None),
        (17.0, 19.0),
    ]
    assert logged[0] == {
        "id": "w1",
        "text": "red square",
        "start": 2.0,
        "evidence": [{"start": 2.0, "end": 3.0}],
    }
    assert [w["id"] for w in _logged(store, sid, "watch.added")] == ["w1"]


def test_a_restarted_runner_tells_nothing_twice_and_finds_what_came_meanwhile(store, sid):
    store.add_watch(sid, new_watch("w1", "red square"))
    first = WatchRunner(store)
    _feed(first, store, sid, "..RRR")  # open when the encoder dies
    second = WatchRunner(store)  # a new encoder: its detector restored from Redis
    _feed(second, store, sid, "RR....RR...", start=5.0)
    assert [(h.start, h.end) for h in store.watch_hits(sid)] == [(2.0, 7.0), (11.0, 13.0)]
    assert len(_logged(store, sid, "watch.hit")) == 4
    third = WatchRunner(store)  # readings replayed again change nothing
    for r in store.readings(sid):
        third.on_readings(sid, [r])
    assert len(_logged(store, sid, "watch.hit")) == 4


def test_watches_are_bounded_removed_with_their_hits_and_dropped_with_the_stream(
    store, sid, redis_client, prefix
):
    w = new_watch("w1", "red square")
    assert store.add_watch(sid, w) is True
    assert store.add_watch(sid, w) is False  # the same again: nothing changes
    with pytest.raises(WatchRefused) as exc:
        store.add_watch(sid, new_watch("w1", "green circle"))
    assert exc.value.code == "duplicate_id"
    for i in range(2, 5):
        store.add_watch(sid, new_watch(f"w{i}", "circle"), max_watches=4)
    with pytest.raises(WatchRefused) as exc:
        store.add_watch(sid, new_watch("w5", "circle"), max_watches=4)
    assert exc.value.code == "rate_limited"
    runner = WatchRunner(store)
    _feed(runner, store, sid, "RRR...GGG...")
    assert {h.watch_id for h in store.watch_hits(sid)} == {"w1", "w2", "w3", "w4"}
    assert store.remove_watch(sid, "w1") is True
    assert store.remove_watch(sid, "w1") is False
    assert [w.id for w in store.watches(sid)] == ["w2", "w3", "w4"]
    assert {h.watch_id for h in store.watch_hits(sid)} == {"w2", "w3", "w4"}
    assert _logged(store, sid, "watch.removed") == [{"id": "w1"}]
    store.delete_stream(sid)
    assert keys_under(redis_client, prefix) == set()


class _Receiver(BaseHTTPRequestHandler):
    answers: list[int] = []
    got: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        code = self.answers.pop(0) if self.answers else 200
        self.got.append({"code": code, "body": body, "type": self.headers["Content-Type"]})
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_webhook_receives_the_hit_and_is_retried_after_a_500(store, sid):
    _Receiver.answers, _Receiver.got = [500], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sender = WebhookSender(delays=(0.2, 0.4))
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        store.add_watch(sid, Watch("w1", "red square", url, 0.0, time.time(), webhook_allow=("127.0.0.1",)))
        _feed(WatchRunner(store, sender), store, sid, "..RRR")
        deadline = time.monotonic() + 10
        while len(_Receiver.got) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [g["code"] for g in _Receiver.got] == [500, 200]
        assert _Receiver.got[1]["body"] == {
            "type": "watch.hit",
            "stream_id": sid,
            "id": "w1",
            "text": "red square",
            "start": 2.0,
            "evidence": [{"start": 2.0, "end": 3.0}],
        }
        assert _Receiver.got[1]["type"] == "application/json"
        assert (sender.counts.delivered, sender.counts.retried) == (1, 1)
    finally:
        sender.close()
        server.shutdown()


def test_a_webhook_to_an_internal_address_not_allowed_by_the_operator_is_never_posted(store, sid):
    _Receiver.answers, _Receiver.got = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sender = WebhookSender(delays=(0.1,))
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        store.add_watch(sid, Watch("w1", "red square", url, 0.0, time.time()))
        _feed(WatchRunner(store, sender), store, sid, "..RRR")
        deadline = time.monotonic() + 5
        while sender.counts.failed < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sender.counts.failed == 1 and _Receiver.got == []
    finally:
        sender.close()
        server.shutdown()


def test_adding_the_same_watch_again_is_harmless_and_ids_with_a_bar_are_refused(store, sid):
    assert store.add_watch(sid, new_watch("w1", "red square", cooldown_s=5)) is True
    assert store.add_watch(sid, new_watch("w1", "red square", cooldown_s=5)) is False  # a client's retry
    with pytest.raises(WatchRefused):
        store.add_watch(sid, new_watch("w1", "red square", cooldown_s=6))
    with pytest.raises(UserError):
        new_watch("x|5", "red square")


def test_a_restart_inside_a_quiet_appearance_tells_nothing_new(store, sid):
    """The cooldown keeps the second appearance from being told; an encoder that restarts in the
    middle of it must not take its frames for a new one."""
    store.add_watch(sid, new_watch("w1", "red square", cooldown_s=10.0))
    _feed(WatchRunner(store), store, sid, "RRRRR...RRRRRRRRRRRRRRRRRRRRRRR")  # 0-4, then 8-30
    _feed(WatchRunner(store), store, sid, "RRRRRRRRRR....", start=31.0)  # restarted at 31
    assert [(h.start, h.end) for h in store.watch_hits(sid)] == [(0.0, 5.0)]
    assert [(h.start, h.end) for h in store.watch_hits(sid, quiet=True)] == [(0.0, 5.0), (8.0, 41.0)]
    assert len(_logged(store, sid, "watch.hit")) == 2  # the first one's start and end only


def test_the_stream_end_closes_an_appearance_a_new_runner_never_saw_begin(store, sid):
    store.add_watch(sid, new_watch("w1", "red square"))
    _feed(WatchRunner(store), store, sid, "..RRRR")
    WatchRunner(store).finish(sid, 1.0)  # the stream ended on an encoder that restarted meanwhile
    assert [(h.start, h.end) for h in store.watch_hits(sid)] == [(2.0, 6.0)]


class _Drip(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        for b in b"HTTP/1.1 200 OK\r\n":  # a byte at a time: every read is quick, the answer never ends
            try:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.3)

    def log_message(self, *args):
        pass


def test_a_receiver_that_drips_its_answer_holds_up_no_one_else():
    _Receiver.answers, _Receiver.got = [], []
    slow = ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    good = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    for server in (slow, good):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    sender = WebhookSender(delays=(), timeout_s=1.0, deadline_s=1.5)
    try:
        allow = ("127.0.0.1",)
        for i in range(3):
            sender.send(f"http://127.0.0.1:{slow.server_address[1]}/", {"n": i}, allow=allow)
        sender.send(f"http://127.0.0.1:{good.server_address[1]}/", {"n": "good"}, allow=allow)
        deadline = time.monotonic() + 3
        while not _Receiver.got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [g["body"] for g in _Receiver.got] == [{"n": "good"}]
        deadline = time.monotonic() + 10
        while sender.pending() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sender.pending() == 0 and sender.counts.delivered == 1
        assert sender.counts.failed == 3  # each try cut at its deadline, no retry left
    finally:
        sender.close()
        slow.shutdown()
        good.shutdown()

"""Search across streams end to end: two streams in a real Redis, a real gateway and the CLI process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from websockets.sync.client import connect

from scenekv.memory.content_index import Reading
from scenekv.web.config import GatewayConfig
from scenekv.web.server import GatewayThread

from support.redis_fixtures import REDIS_URL
from support.ws_helpers import local_service, of_type, recv_until, send

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service():
    with local_service("search") as svc:
        yield svc


@pytest.fixture(scope="module")
def two_streams(service):
    """``plain`` shows a red square on green throughout; ``circle`` a black circle from 12 s on."""
    store = service.store
    for sid, thing in (("plain", lambda t: "red square"), ("circle", lambda t: "black circle" * (t >= 12))):
        store.create_stream(sid, model="test")
        store.put_scene(sid, 0, 0.0, {"end": 10.0, "closed": "1", "caption": "a coloured field"})
        store.put_scene(sid, 1, 10.0, {"end": 20.0, "closed": "1", "caption": "a coloured field"})
        for t in range(20):
            store.put_reading(sid, Reading(float(t), thing(t) or "nothing", "green"))
    return store


@pytest.fixture(scope="module")
def gateway(service, two_streams):
    with GatewayThread(service, GatewayConfig(port=0)) as gw:
        yield gw


def test_search_over_the_websocket_finds_the_right_stream(gateway):
    with connect(gateway.ws_url, open_timeout=10) as ws:
        send(ws, type="search", id="s1", text="black circle")
        got = recv_until(ws, of_type("search.result", id="s1"), timeout=20)
        assert got["hits"][0] == {
            "stream_id": "circle",
            "start": 12.0,
            "end": 20.0,
            "caption": "a coloured field",
        }
        assert all(h["stream_id"] == "circle" for h in got["hits"])
        send(ws, type="search", id="s2", text="black circle", streams=["plain"])
        assert recv_until(ws, of_type("search.result", id="s2"), timeout=20)["hits"] == []


@pytest.mark.parametrize(
    "msg",
    [
        {"text": ""},
        {"text": "x" * 501},
        {"text": "circle", "streams": "circle"},
        {"text": "circle", "streams": [1]},
        {"text": "circle", "streams": [f"s{i}" for i in range(65)]},
        {"text": "circle", "limit": 0},
    ],
)
def test_a_bad_search_gets_bad_request(gateway, msg):
    with connect(gateway.ws_url, open_timeout=10) as ws:
        send(ws, type="search", id="bad", **msg)
        err = recv_until(ws, of_type("error", id="bad"), timeout=20)
        assert err["code"] == "bad_request"


def test_an_unknown_stream_is_named(gateway):
    with connect(gateway.ws_url, open_timeout=10) as ws:
        send(ws, type="search", id="u", text="circle", streams=["nope"])
        assert recv_until(ws, of_type("error", id="u"), timeout=20)["code"] == "unknown_stream"


def test_the_cli_finds_the_right_stream(service, two_streams):
    run = subprocess.run(
        [sys.executable, "-m", "scenekv.cli", "search", "black circle", "--json"]
        + ["--redis-url", REDIS_URL, "--prefix", service.store.prefix],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    hits = [json.loads(line) for line in run.stdout.splitlines()]
    assert hits and hits[0]["stream_id"] == "circle" and hits[0]["start"] == 12.0
    assert {h["stream_id"] for h in hits} == {"circle"}
    only = subprocess.run(
        [sys.executable, "-m", "scenekv.cli", "search", "black circle", "--stream", "plain"]
        + ["--redis-url", REDIS_URL, "--prefix", service.store.prefix],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert only.returncode == 0 and only.stdout.strip() == "no match", only.stderr


def test_the_page_lists_hits_and_a_hit_opens_its_stream(gateway):
    from playwright.sync_api import expect, sync_playwright

    from support.browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        sent: list[str] = []
        page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(str(payload))))
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(gateway.http_url)
        page.fill("#search-text", "black circle")
        page.click("#search-form button")
        first = page.locator("#search-hits li").first
        expect(first).to_contain_text("circle 0:12", timeout=15_000)
        first.locator("button").click()
        expect(page.locator(".tab[data-tab='attach']")).to_have_attribute("aria-selected", "true")
        page.wait_for_function(
            "() => document.querySelector('#attach-input').value === 'circle'", timeout=5_000
        )
        starts = [json.loads(m) for m in sent if '"session.start"' in m]
        for _ in range(50):
            if starts:
                break
            page.wait_for_timeout(100)
            starts = [json.loads(m) for m in sent if '"session.start"' in m]
        assert starts == [{"type": "session.start", "stream_id": "circle"}], sent
        assert not errors, errors
        browser.close()

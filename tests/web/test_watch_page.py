"""The demo page's "Watch for" box, on the world model and the sample video run.sh serves.

`file:sample.mp4` (a world video, seed 32) is played from the URL tab; right after `session.started`
the page adds a watch for something the truth shows after the first ~15 s (a red square when the
sample has one, else a background colour). Its hit must land on the timeline near the truth's start,
widen to its end without a second notice, seek the player when clicked, survive a dropped socket
(the page re-attaches and is told the watch and its hits again) without duplicates, and go away with
the watch's × button. A watch text that names nothing shows its error next to the box.
"""

from __future__ import annotations

import json
import re

import pytest

from support.browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.slow

SEED, SECONDS = 32, 60.0
SLACK_S = 2.0  # a hit starts at its first read frame (1 fps), near the truth's scene start


def _appearances(truth, matches) -> list[tuple[float, float]]:
    """The truth's spans where ``matches(scene)`` holds, back-to-back scenes merged."""
    spans: list[tuple[float, float]] = []
    for scene in truth.scenes:
        if not matches(scene):
            continue
        if spans and abs(spans[-1][1] - scene.start) < 1e-6:
            spans[-1] = (spans[-1][0], scene.end)
        else:
            spans.append((scene.start, scene.end))
    return spans


def _pick_watch(truth) -> tuple[str, list[tuple[float, float]]]:
    """A red square that first shows after ~15 s, else a background first shown after 20 s."""
    spans = _appearances(truth, lambda s: s.object_name == "red square")
    if spans and spans[0][0] >= 15.0:
        return "red square", spans
    for colour in dict.fromkeys(s.background for s in truth.scenes):
        spans = _appearances(truth, lambda s, c=colour: s.background == c)
        if spans[0][0] >= 20.0:
            return f"{colour} background", spans
    raise AssertionError("the sample shows nothing new after 20 s: pick another seed")


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory):
    from scenekv.world.render import make_world_video

    root = tmp_path_factory.mktemp("media")
    # the truth depends on the seed and duration only; 10 fps renders faster than run.sh's 25
    truth = make_world_video(root / "sample.mp4", seed=SEED, duration=SECONDS, size=(640, 360), fps=10.0)
    return root, truth


@pytest.fixture(scope="module")
def world_gateway(sample_root):
    from scenekv.web.config import GatewayConfig
    from scenekv.web.server import GatewayThread

    from support.ws_helpers import local_service

    config = GatewayConfig(port=0, media_root=sample_root[0])
    with (
        local_service("watchpage", model="scenekv-world", rolling=None) as svc,
        GatewayThread(svc, config) as gw,
    ):
        yield gw


def test_a_watch_marks_its_hit_on_the_timeline_once(world_gateway, sample_root):
    from playwright.sync_api import expect, sync_playwright

    text, spans = _pick_watch(sample_root[1])
    first_start, first_end = spans[0]
    sockets: list[dict] = []  # each page socket: its route and what the server sent on it

    def route(ws) -> None:
        server = ws.connect_to_server()
        seen: list[dict] = []
        sockets.append({"route": ws, "seen": seen})
        ws.on_message(lambda m: server.send(m))

        def from_server(m) -> None:
            if isinstance(m, str):
                seen.append(json.loads(m))
            ws.send(m)

        server.on_message(from_server)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1366, "height": 820})
        page.route_web_socket(re.compile(r"/ws(\?|$)"), route)
        page.goto(world_gateway.http_url)
        page.locator("#random-banner").wait_for(state="visible", timeout=10_000)
        box, watch_list = page.locator("#watch-text"), page.locator("#watch-list li")
        marks, notices = page.locator("#timeline .watch-mark"), page.locator("#watch-hits li")
        expect(box).to_be_disabled()  # no session yet: the page starts one when it plays

        page.click(".tab[data-tab=url]")
        page.fill("#url-input", "file:sample.mp4")
        page.click("#start-btn")
        expect(box).to_be_enabled(timeout=30_000)  # session.started
        box.fill(text)
        page.click("#watch-btn")
        expect(watch_list).to_have_count(1, timeout=10_000)
        expect(watch_list.first.locator(".text")).to_have_text(text)

        # the appearance: one mark near the truth's start, then widened to its end, one notice all along
        marks.first.wait_for(timeout=90_000)
        start = float(marks.first.get_attribute("data-start"))
        assert abs(start - first_start) <= SLACK_S, (start, spans)
        expect(notices).to_have_count(1)
        expect(notices.first).to_contain_text(f"{text} at ")
        page.wait_for_function(
            "() => document.querySelector('#timeline .watch-mark')?.dataset.end !== undefined", timeout=90_000
        )
        end = float(marks.first.get_attribute("data-end"))
        assert abs(end - first_end) <= SLACK_S, (end, spans)
        expect(notices).to_have_count(1)
        expect(marks).to_have_count(1)

        # a hit seeks the player to its start (the page plays the same file from /media/)
        at_start = "(t) => Math.abs(document.querySelector('#video').currentTime - t) < 0.3"
        page.evaluate("() => document.querySelector('#video').pause()")
        marks.first.click()
        page.wait_for_function(at_start, arg=start)
        page.evaluate("() => { document.querySelector('#video').currentTime = 0; }")
        notices.first.locator(".chip").click()
        page.wait_for_function(at_start, arg=start)

        # a dropped socket: the page re-attaches and is told the watch and its hit again, shown once
        sockets[-1]["route"].close(code=1011, reason="test: dropped")
        page.wait_for_function("() => document.querySelector('#conn-pill').dataset.state !== 'open'")
        expect(page.locator("#conn-pill")).to_have_attribute("data-state", "open", timeout=20_000)
        assert len(sockets) == 2
        replay = sockets[1]["seen"]
        expect(box).to_be_enabled(timeout=20_000)
        page.wait_for_timeout(1000)  # the replay follows session.started at once
        assert [m["type"] for m in replay if m["type"] in ("watch.added", "watch.hit")] == [
            "watch.added",
            "watch.hit",
        ], replay
        expect(watch_list).to_have_count(1)
        expect(marks).to_have_count(1)
        expect(notices).to_have_count(1)

        # a watch the server refuses: the error shows next to the box, and nothing is added
        box.fill("the")
        page.click("#watch-btn")
        expect(page.locator("#watch-error")).to_contain_text("bad_request", timeout=10_000)
        expect(watch_list).to_have_count(1)

        # × removes the watch, its mark and its notice
        watch_list.first.locator(".remove").click()
        expect(watch_list).to_have_count(0, timeout=10_000)
        expect(marks).to_have_count(0)
        expect(notices).to_have_count(0)
        browser.close()

"""A newcomer's first question, on the page: the world model answers it right.

What `bash scripts/run.sh` offers: the demo page on the offline default (the world model), with
`file:sample.mp4` (a world video, seed 32, as run.sh renders it) in the media root. Played from the
URL tab, "What colour is the background at 0:25?" must come back `green` (the ground truth), with
the banner saying the model knows only the synthetic world. One service for the module.
"""

from __future__ import annotations

import pytest

from support.browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory):
    from scenekv.world.render import make_world_video
    from scenekv.world.truth import load_truth

    root = tmp_path_factory.mktemp("media")
    make_world_video(root / "sample.mp4", seed=32, duration=60.0, size=(640, 360), fps=25.0)
    return root, load_truth(root / "sample.mp4")


@pytest.fixture(scope="module")
def world_gateway(sample_root):
    from scenekv.web.config import GatewayConfig
    from scenekv.web.server import GatewayThread

    from support.ws_helpers import local_service

    config = GatewayConfig(port=0, media_root=sample_root[0])
    with (
        local_service("worldpage", model="scenekv-world", rolling=None) as svc,
        GatewayThread(svc, config) as gw,
    ):
        yield gw


def test_the_sample_on_the_page_gets_the_right_background(world_gateway, sample_root):
    from playwright.sync_api import sync_playwright

    truth = sample_root[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1366, "height": 820})
        page.goto(world_gateway.http_url)
        banner = page.locator("#random-banner")
        banner.wait_for(state="visible", timeout=10_000)
        assert "world" in banner.inner_text().lower()
        page.click(".tab[data-tab=url]")
        page.fill("#url-input", "file:sample.mp4")
        page.click("#start-btn")
        page.wait_for_function(
            "() => /done|ended/.test(document.querySelector('#st-status').textContent)", timeout=120_000
        )
        page.fill("#question", "What colour is the background at 0:25?")
        page.click("#ask-btn")
        answer = page.locator(".answer").first
        answer.locator(".chip").first.wait_for(timeout=30_000)  # evidence arrives with answer.done
        assert "streaming" not in (answer.get_attribute("class") or "")
        assert answer.locator(".text").inner_text().strip() == truth.scene_at(25.0).background == "green"
        browser.close()

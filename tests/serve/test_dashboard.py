"""The dashboard end to end: a real `m6rec serve` process on 127.0.0.1, driven by Playwright in
Debian's headless Chromium (never a downloaded browser). Skipped, with the reason, when Chromium
or Playwright is missing. Saves a screenshot to ``$M6REC_SCREENSHOT_DIR`` (default: tmp_path)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow  # starts a real server process (10-50 s on 2 shared cores)

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def server(m6_dir, tmp_path, live_server):
    with live_server(m6_dir, f"sqlite:///{tmp_path}/live.db") as s:
        yield s


def test_cli_serve_answers(server):
    h = httpx.get(server.url + "/health").json()
    assert h["model"] == "m6" and h["reads_need_key"] and "model_dir" not in h
    assert httpx.get(server.url + "/users/u0/history").status_code == 401
    r = httpx.post(server.url + "/events", json={"user_id": "u0", "item_id": "s1"},
                   headers={"X-API-Key": "wrong"})
    assert r.status_code == 401
    server.stop()  # the start-up lines name the address and the model
    err = server.proc.stderr.read().decode()
    assert f"m6rec serve: {server.url} (dashboard" in err and "model m6 from" in err, err


def test_dashboard_in_headless_chromium(server, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    shots = Path(os.environ.get("M6REC_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(server.url + "/dashboard")
            page.wait_for_selector("#info:has-text('model m6')")
            page.wait_for_selector("#keyform:not([hidden])")  # asked once, for reads too
            page.fill("#keyinput", server.api_key)
            page.click("#keysave")
            page.wait_for_selector("#recs li")  # the first user, shown without "Show"
            assert page.input_value("#user") == "u0"
            first = page.locator("#recs li").first
            first_id = first.get_attribute("data-item-id")
            why = first.locator(".why").inner_text()
            history = page.locator("#history li").all_inner_texts()
            assert why.startswith("Because you ")
            assert any(h.rsplit(" (", 1)[0] in why for h in history if h.strip())  # "title (id)"
            n_hist = page.locator("#history li").count()
            assert n_hist == 6
            # post an event by clicking: the list changes and the item moves to the history
            first.locator("button.watch").click()
            page.wait_for_function(
                "id => ![...document.querySelectorAll('#recs li')].some(li => li.dataset.itemId === id)",
                arg=first_id)
            assert page.locator("#history li").count() == n_hist + 1
            assert first_id in page.locator("#history li").first.inner_text()
            # a free-text request steers the list
            page.fill("#query", "baking bread cake recipes")
            page.click("#show")
            page.wait_for_selector("#strategy:has-text('history+query')")
            page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
            assert page.locator("#status").inner_text() == ""
        finally:
            browser.close()
    assert (shots / "dashboard.png").stat().st_size > 1000

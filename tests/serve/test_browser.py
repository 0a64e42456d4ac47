"""The API docs and the dashboard in Debian's headless Chromium (Playwright, never a downloaded
browser), with every request that leaves 127.0.0.1 refused and recorded: the pages must work
offline. The server runs in a thread of this process (uvicorn on 127.0.0.1). Skipped, with the
reason, when Chromium or Playwright is missing (`.ci/run` installs Chromium)."""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
KEY, READ_KEY = "s3cret", "r3ad"


@pytest.fixture(scope="module")
def site(m6_dir, tmp_path_factory):
    import uvicorn

    from m6rec.serve.app import create_app
    from m6rec.serve.settings import ServeSettings
    from m6rec.text.generate import tiny_model

    folder = tmp_path_factory.mktemp("browser")
    app = create_app(ServeSettings(model_dir=m6_dir, db=f"sqlite:///{folder}/events.db",
                                   api_key=KEY, read_key=READ_KEY, data=None,
                                   generator=str(tiny_model(folder / "tiny")),
                                   generation_cache=str(folder / "texts")))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    assert server.started, "server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def offline_page(browser, site):
    """A page in a fresh context whose requests outside ``site`` are aborted and listed."""
    context = browser.new_context()
    outside: list[str] = []

    def guard(route):
        if route.request.url.startswith(site):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    return context, context.new_page(), outside


@pytest.mark.parametrize("path,operation", [
    ("/docs", ".opblock-summary-path[data-path='/users/{user_id}/recommendations']"),
    ("/redoc", 'text="/users/{user_id}/recommendations"'),
])
def test_api_docs_render_offline(browser, site, path, operation):
    context, page, outside = offline_page(browser, site)
    try:
        page.goto(site + path)
        page.wait_for_selector(operation, timeout=30_000)
        body = page.inner_text("body")
        for op in ("/events", "/items", "/users/{user_id}/history", "/health"):
            assert op in body, op
        assert outside == []
    finally:
        context.close()


def test_dashboard_asks_for_the_key_once_and_shows_a_default_user(browser, site):
    context, page, outside = offline_page(browser, site)
    try:
        page.goto(site + "/dashboard")
        page.wait_for_selector("#keyform:not([hidden])")  # reads need a key here
        assert page.locator("#recs li").count() == 0
        page.fill("#keyinput", "wrong")
        page.click("#keysave")
        page.wait_for_selector("#keystate:has-text('wrong key')")
        page.fill("#keyinput", READ_KEY)
        page.click("#keysave")
        # the first user of the data is shown without pressing "Show"
        page.wait_for_selector("#recs li")
        assert page.input_value("#user") == "u0"
        assert page.locator("#history li").count() == 6
        assert page.locator("#recs li .why").first.inner_text().startswith("Because you ")
        scores = [float(s) for s in page.locator("#recs li .score").all_inner_texts()]
        assert scores == sorted(scores, reverse=True)  # the ranking score, in order
        # the loading state is shown while a request is in flight
        page.route("**/recommendations*", lambda route: (time.sleep(0.5), route.continue_()))
        page.click("#show")
        page.wait_for_selector("#loading:has-text('Loading recommendations for u0')")
        page.wait_for_selector("#loading:empty")
        page.unroute("**/recommendations*")
        # a reload in the same tab does not ask again (the key is kept for the tab)
        page.reload()
        page.wait_for_selector("#recs li")
        assert page.locator("#keyform").is_hidden()
        # the read-only key cannot post events: the error is shown, nothing is written
        page.locator("#recs li button.watch").first.click()
        page.wait_for_selector("#status:has-text('403')")
        assert outside == []
    finally:
        context.close()


def test_dashboard_chat_shows_the_reply_and_the_returned_items(browser, site):
    import httpx

    context, page, outside = offline_page(browser, site)
    try:
        page.goto(site + "/dashboard")
        page.fill("#keyinput", READ_KEY)
        page.click("#keysave")
        page.wait_for_selector("#recs li")
        page.fill("#k", "4")
        page.fill("#chatinput", "baking bread recipes")
        page.click("#chatsend")
        page.wait_for_selector("#chatitems li")
        shown = page.locator("#chatitems li").evaluate_all("els => els.map(e => e.dataset.itemId)")
        log = page.locator("#chatlog li").all_inner_texts()
        # what the page shows is what the endpoint answers for the same conversation
        api = httpx.post(f"{site}/users/u0/conversation", headers={"X-API-Key": READ_KEY},
                         json={"messages": ["baking bread recipes"], "k": 4}).json()
        assert shown == [it["item_id"] for it in api["items"]] and len(shown) == 4
        assert log[:2] == ["you: baking bread recipes", api["reply"]]
        assert page.input_value("#chatinput") == ""
        # a follow-up sends both messages; the list follows the combined request
        page.fill("#chatinput", "with cake")
        page.click("#chatsend")
        page.wait_for_selector("#chatlog li:has-text('you: with cake')")
        two = httpx.post(f"{site}/users/u0/conversation", headers={"X-API-Key": READ_KEY},
                         json={"messages": ["baking bread recipes", "with cake"], "k": 4}).json()
        page.wait_for_function(
            "ids => JSON.stringify([...document.querySelectorAll('#chatitems li')]"
            ".map(e => e.dataset.itemId)) === JSON.stringify(ids)",
            arg=[it["item_id"] for it in two["items"]])
        # LM explanations when asked: each phrased item says what the check did
        page.check("#lmphrase")
        page.click("#show")
        page.wait_for_selector("#recs li .lmnote")
        assert "sentences replaced by the template" in page.inner_text("#strategy")
        assert page.locator("#recs li .lmnote").count() == page.locator("#recs li").count()
        page.click("#chatreset")
        assert page.locator("#chatitems li").count() == 0
        assert outside == []
    finally:
        context.close()

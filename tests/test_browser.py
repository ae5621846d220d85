"""The chat page in a real headless Chromium, against a real uvicorn, offline."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.chat.app import app as chat_app
from examples.chat.app import events as chat_events

from .conftest import serve

CHROMIUM = os.environ.get("WSEVENTS_CHROMIUM") or shutil.which("chromium")
# WSEVENTS_SCREENSHOTS=docs keeps the screenshots the docs show.
SCREENSHOTS = os.environ.get("WSEVENTS_SCREENSHOTS")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: `make test` installs Debian's chromium; or set WSEVENTS_CHROMIUM",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def open_page(browser: Any, base: str, blocked: list[str]) -> Any:
    page = browser.new_page()

    def only_loopback(route: Any) -> None:
        if route.request.url.startswith(("http://127.0.0.1:", "ws://127.0.0.1:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto(base)
    return page


def join(page: Any, user: str, room: str) -> None:
    page.fill("#user", user)
    page.fill("#room", room)
    page.click("#join button")
    page.wait_for_selector("#text:not([disabled])")


def say(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def test_two_pages_in_one_room_see_each_other_and_another_room_sees_neither(
    browser: Any, tmp_path: Path
) -> None:
    blocked: list[str] = []
    with serve(chat_app) as address:
        base = f"http://{address}/"
        ann, bob, cy = (open_page(browser, base, blocked) for _ in range(3))
        join(ann, "ann", "lobby")
        join(bob, "bob", "lobby")
        join(cy, "cy", "garden")
        say(ann, "hello bob")
        bob.wait_for_selector("text=ann: hello bob", timeout=5000)
        say(bob, "hi ann")
        ann.wait_for_selector("text=bob: hi ann", timeout=5000)
        say(cy, "anyone?")
        cy.wait_for_selector("text=cy: anyone?", timeout=5000)
        ann_log = ann.inner_text("#log").split("\n")
        cy_log = cy.inner_text("#log").split("\n")
        ann.screenshot(path=str(Path(SCREENSHOTS or tmp_path) / "chat.png"))
    assert [line for line in ann_log if line] == [
        "ann joined",
        "bob joined",
        "ann: hello bob",
        "bob: hi ann",
    ]
    assert [line for line in cy_log if line] == ["cy joined", "cy: anyone?"]
    assert blocked == []  # the page asked for nothing beyond the server


def test_a_refused_handshake_shows_as_disconnected(browser: Any) -> None:
    with serve(chat_app) as address:
        page = open_page(browser, f"http://{address}/", [])
        page.fill("#user", " ")
        page.fill("#room", "lobby")
        page.click("#join button")
        page.wait_for_selector("text=disconnected (1006)", timeout=5000)
        assert page.is_disabled("#text")


def test_docs_page_renders_every_channel_and_event_and_its_console_talks(
    browser: Any, tmp_path: Path
) -> None:
    blocked: list[str] = []
    document = chat_events.asyncapi(root_path="/ws")
    with serve(chat_app) as address:
        page = open_page(browser, f"http://{address}/ws/docs", blocked)
        page.set_viewport_size({"width": 1280, "height": 900})
        text = page.inner_text("main")
        for channel in document["channels"].values():
            assert channel["address"] in text
        for message in document["components"]["messages"].values():
            assert message["name"] in text
        assert "data.text" in text  # the schema table of `say`
        assert "maxLength: 500" in text
        assert "validation_error" in text
        page.screenshot(path=str(Path(SCREENSHOTS or tmp_path) / "docs-page.png"))
        page.fill("#param-room", "lobby")
        page.fill("#console-query", "user=ann")
        page.click("#console-connect")
        page.wait_for_selector("#console-send:not([disabled])")
        page.select_option("#console-event", "ping")
        assert json.loads(page.input_value("#console-data")) == {"n": 1}
        page.fill("#console-data", '{"n": 42}')
        page.click("#console-send")
        page.wait_for_function("document.querySelectorAll('#log div.in').length >= 2")
        log = page.inner_text("#log")
        page.locator("#try").screenshot(
            path=str(Path(SCREENSHOTS or tmp_path) / "docs-console.png")
        )
    assert '← {"event":"joined","data":{"user":"ann"}}' in log
    assert '→ {"event":"ping","data":{"n":42},"id":1}' in log
    assert '← {"event":"ping","data":{"n":42},"id":1}' in log
    assert blocked == []

"""The chat page in a real headless Chromium, against a real uvicorn, offline."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.chat.app import app as chat_app

from .conftest import serve

CHROMIUM = os.environ.get("WSEVENTS_CHROMIUM") or shutil.which("chromium")
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
        ann.screenshot(path=str(tmp_path / "chat.png"))
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

"""The chat page in a real headless Chromium, against a real uvicorn, offline."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from examples.chat.app import app as chat_app
from examples.chat.app import events as chat_events
from wsevents import EventError

from .conftest import RedisServer, serve, uvicorn_process
from .relay import ThreadedRelay

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


@contextmanager
def two_chat_servers(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """The chat example in two uvicorn processes on one Redis: their ports."""
    env = {"WSEVENTS_BACKPLANE": redis_server.url}
    with (
        uvicorn_process("examples.chat.app:app", tmp_path / "1.log", env=env) as (one, _),
        uvicorn_process("examples.chat.app:app", tmp_path / "2.log", env=env) as (two, _),
    ):
        yield one, two


def test_two_pages_on_two_servers_in_one_room_see_each_other_and_another_room_sees_neither(
    browser: Any, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The chat on the browser client, two uvicorn processes, one Redis between them."""
    blocked: list[str] = []
    with two_chat_servers(redis_server, tmp_path) as (one, two):
        ann = open_page(browser, f"http://127.0.0.1:{one}/", blocked)
        bob = open_page(browser, f"http://127.0.0.1:{two}/", blocked)
        cy = open_page(browser, f"http://127.0.0.1:{one}/", blocked)
        join(ann, "ann", "lobby")
        join(bob, "bob", "lobby")
        ann.wait_for_selector("text=bob joined", timeout=5000)
        join(cy, "cy", "garden")
        say(ann, "hello bob")
        bob.wait_for_selector("text=ann: hello bob", timeout=5000)
        say(bob, "hi ann")
        ann.wait_for_selector("text=bob: hi ann", timeout=5000)
        say(cy, "anyone?")
        cy.wait_for_selector("text=cy: anyone?", timeout=5000)
        # A message too long for the model (set past the input's maxlength): the
        # request is refused with validation_error, and the page says so.
        ann.evaluate("document.getElementById('text').value = 'x'.repeat(501)")
        ann.press("#text", "Enter")
        ann.wait_for_selector("text=not sent: validation_error", timeout=5000)
        ann_log = ann.inner_text("#log").split("\n")
        bob_log = bob.inner_text("#log").split("\n")
        cy_log = cy.inner_text("#log").split("\n")
        # Who is in each room: from presence, across the two servers.
        members = [page.inner_text("#members") for page in (ann, bob, cy)]
        ann.screenshot(path=str(Path(SCREENSHOTS or tmp_path) / "chat.png"))
    assert [line for line in ann_log if line] == [
        "bob joined",
        "ann: hello bob",
        "bob: hi ann",
        "not sent: validation_error: invalid data for event 'say'",
    ]
    assert [line for line in bob_log if line] == ["ann: hello bob", "bob: hi ann"]
    assert [line for line in cy_log if line] == ["cy: anyone?"]
    assert members == ["in the room: ann, bob", "in the room: ann, bob", "in the room: cy"]
    assert blocked == []  # the pages asked for nothing beyond their servers


def test_a_reloaded_tab_shows_what_was_said_while_it_was_away(
    browser: Any, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The browser client keeps its room's position in sessionStorage across a reload."""
    blocked: list[str] = []
    with two_chat_servers(redis_server, tmp_path) as (one, two):
        ann = open_page(browser, f"http://127.0.0.1:{one}/", blocked)
        bob = open_page(browser, f"http://127.0.0.1:{two}/", blocked)
        join(ann, "ann", "reload")
        join(bob, "bob", "reload")
        ann.wait_for_selector("text=bob joined", timeout=5000)
        say(bob, "before the reload")
        ann.wait_for_selector("text=bob: before the reload", timeout=5000)
        ann.goto("about:blank")  # the tab leaves; its sessionStorage stays
        bob.wait_for_selector("text=ann left", timeout=5000)
        say(bob, "while ann was away")
        bob.wait_for_selector("text=bob: while ann was away", timeout=5000)
        ann.goto(f"http://127.0.0.1:{one}/")
        join(ann, "ann", "reload")
        ann.wait_for_selector("text=bob: while ann was away", timeout=5000)
        ann.wait_for_selector("#members:has-text('in the room: ann, bob')", timeout=5000)
        bob.wait_for_selector("text=ann joined", timeout=5000)
        ann_log = [line for line in ann.inner_text("#log").split("\n") if line]
        bob_log = [line for line in bob.inner_text("#log").split("\n") if line]
    # What was said before ann left is not shown again; what came after is, once.
    assert ann_log == ["bob: while ann was away"]
    assert bob_log == [
        "bob: before the reload",
        "ann left",
        "bob: while ann was away",
        "ann joined",
    ]
    assert blocked == []


def test_the_page_reconnects_when_its_server_restarts(browser: Any) -> None:
    page_app = chat_app
    with serve(page_app) as address:
        port = int(address.rsplit(":", 1)[1])
        page = open_page(browser, f"http://{address}/", [])
        join(page, "ann", "lobby")
    page.wait_for_selector("text=reconnecting", timeout=5000)
    with serve(page_app, port=port):
        page.wait_for_selector("#text:not([disabled])", timeout=10000)
        say(page, "back")
        page.wait_for_selector("text=ann: back", timeout=5000)


def test_a_refused_handshake_shows_as_disconnected(browser: Any) -> None:
    with serve(chat_app) as address:
        page = open_page(browser, f"http://{address}/", [])
        page.fill("#user", " ")
        page.fill("#room", "lobby")
        page.click("#join button")
        page.wait_for_selector("text=cannot join lobby", timeout=5000)
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
        page.wait_for_function(
            "[...document.querySelectorAll('#log div.in')]"
            '.some((line) => line.textContent.includes(\'"event":"ping"\'))'
        )
        log = page.inner_text("#log")
        page.locator("#try").screenshot(
            path=str(Path(SCREENSHOTS or tmp_path) / "docs-console.png")
        )
    assert '← {"event":"wsevents.subscribed","data":{"topic":"rooms/lobby"' in log
    assert '← {"event":"wsevents.presence","data":{"topic":"rooms/lobby","joined":{"' in log
    assert '→ {"event":"ping","data":{"n":42},"id":1}' in log
    assert '← {"event":"ping","data":{"n":42},"id":1}' in log
    assert blocked == []


CLIENT_CHECKS = """
async () => {
  const { connect, encodeMsgpack, decodeMsgpack, WSEventsError } = await import("/ws/wsevents.js");
  const out = {};
  for (const codec of ["json", "msgpack"]) {
    const client = await connect("/ws/chat/lobby?user=js-" + codec, { codec });
    const heard = new Promise((resolve) => client.on("said", (data) => resolve(data)));
    out[codec] = { pong: await client.request("ping", { n: 5 }) };
    try {
      await client.request("ping", { n: "five" });
    } catch (error) {
      out[codec].error = [error instanceof WSEventsError, error.code, error.details[0].loc];
    }
    client.send("say", { text: "hi from " + codec });
    out[codec].heard = await heard;
    client.close();
  }
  const lonely = await connect("/ws/chat/lobby?user=lonely", { reconnect: false });
  lonely.socket.close();
  await new Promise((resolve) => setTimeout(resolve, 100));
  try {
    await lonely.request("ping", { n: 1 }, { timeout: 50 });
  } catch (error) {
    out.timeout = error.code;
  }
  try {
    await connect("/ws/chat/lobby");
  } catch (error) {
    out.refused = error.code;
  }
  const values = [null, true, false, 0, 127, 128, 255, 256, 65535, 65536, 4294967296,
    -1, -32, -33, -129, -32769, -2147483649, 1.5, "", "é", "x".repeat(40), "y".repeat(300),
    [1, [2]], { a: { b: 1 } }];
  out.packed = values.map((value) => Array.from(encodeMsgpack(value)));
  out.unpacked = out.packed.map((bytes) => decodeMsgpack(new Uint8Array(bytes)));
  return out;
}
"""
MSGPACK_VALUES: list[Any] = [
    None, True, False, 0, 127, 128, 255, 256, 65535, 65536, 4294967296, -1, -32, -33,
    -129, -32769, -2147483649, 1.5, "", "é", "x" * 40, "y" * 300, [1, [2]], {"a": {"b": 1}},
]  # fmt: skip


def test_the_browser_client_requests_listens_times_out_and_speaks_msgpack(browser: Any) -> None:
    import msgpack

    with serve(chat_app) as address:
        page = open_page(browser, f"http://{address}/", [])
        out = page.evaluate(CLIENT_CHECKS)
    for codec in ("json", "msgpack"):
        assert out[codec]["pong"] == {"n": 5}
        assert out[codec]["error"] == [True, "validation_error", ["n"]]
        assert out[codec]["heard"] == {"user": f"js-{codec}", "text": f"hi from {codec}"}
    assert out["timeout"] == "timeout"
    assert out["refused"] == "connection_failed"
    # The module's MessagePack is the canonical one: the same bytes as msgpack's.
    assert out["packed"] == [list(msgpack.packb(value)) for value in MSGPACK_VALUES]
    assert out["unpacked"] == MSGPACK_VALUES


def test_the_clients_page_browser_example_runs_in_chromium(browser: Any) -> None:
    """docs/clients.md's JavaScript, as it is, against the chat: no error, what it logs."""
    from .test_docs import ROOT, blocks

    example = blocks(ROOT / "docs" / "clients.md", "js")[0]
    imported = 'import { connect } from "/ws/wsevents.js";'
    assert imported in example
    body = example.replace(imported, 'const { connect } = await import("/ws/wsevents.js");')
    with serve(chat_app) as address:
        page = open_page(browser, f"http://{address}/", [])
        logged: list[str] = []
        page.on("console", lambda message: logged.append(message.text))
        page.evaluate(f"async () => {{ {body}\n await new Promise((r) => setTimeout(r, 300)); }}")
    assert "in" in logged
    assert "ann: hello" in logged  # its own "said", heard through on()


def test_the_requests_page_browser_example_answers_the_servers_question(browser: Any) -> None:
    """docs/requests.md's JavaScript, as it is, against the orders example."""
    from examples.orders.app import app as orders_app

    from .test_docs import ROOT, blocks

    example = blocks(ROOT / "docs" / "requests.md", "js")[0]
    imported = 'import { connect } from "/ws/wsevents.js";'
    assert imported in example
    body = example.replace(imported, 'const { connect } = await import("/ws/wsevents.js");')
    with serve(orders_app) as address:
        page = open_page(browser, f"http://{address}/ws/docs", [])
        asked: list[str] = []
        page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
        logged: list[str] = []
        page.on("console", lambda message: logged.append(message.text))
        page.evaluate(f"async () => {{ {body} }}")
    assert asked == ["Buy 2 x teapot?"]
    assert len(logged) == 1
    assert logged[0].startswith("order ")


def test_docs_page_lists_a_handlers_own_error_codes(browser: Any) -> None:
    from .test_asyncapi import shop_app

    blocked: list[str] = []
    with serve(shop_app()) as address:
        page = open_page(browser, f"http://{address}/docs", blocked)
        rows = page.eval_on_selector_all(
            "#event-shop-receive-order .own-errors tr",
            "rows => rows.map((row) => [...row.cells].map((cell) => cell.textContent))",
        )
        other = page.query_selector("#event-shop-receive-free .own-errors")
    assert rows == [["code", "meaning"], ["unknown_item", "the item is not on the menu"]]
    assert other is None  # a handler that declares none lists none
    assert blocked == []


def test_the_chat_page_keeps_long_words_in_its_box_and_asks_for_nothing_missing(
    browser: Any,
) -> None:
    problems: list[str] = []
    with serve(chat_app) as address:
        page = browser.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: problems.append(r.url) if r.status >= 400 else None)
        page.goto(f"http://{address}/")
        page.fill("#user", "ann")
        page.fill("#room", "a/b")
        page.click("#join button")
        page.wait_for_selector("text=a room name cannot contain /", timeout=5000)
        join(page, "ann", "lobby")
        say(page, "x" * 400)
        page.wait_for_selector("text=ann: xxxx", timeout=5000)
        overflow = page.eval_on_selector("#log", "box => box.scrollWidth - box.clientWidth")
    assert overflow == 0
    assert problems == []  # no favicon.ico 404, no console error


EXAMPLE_DOCS = {
    # name: (the app's module, its docs page, path parameters, query parameters)
    "chat": ("examples.chat.app", "/ws/docs", {"room": "lobby"}, {"user": "ann"}),
    "fastapi": ("examples.fastapi_app", "/ws/docs", {}, {}),
    "notifications": ("examples.notifications.app", "/ws/docs", {}, {"user": "ann"}),
    "orders": ("examples.orders.app", "/ws/docs", {}, {}),
}


@pytest.mark.parametrize("name", list(EXAMPLE_DOCS))
def test_docs_page_reads_at_1280_and_390_and_every_try_it_is_answered(
    browser: Any, name: str, tmp_path: Path
) -> None:
    import importlib

    module, docs, params, query = EXAMPLE_DOCS[name]
    app = importlib.import_module(module).app
    problems: list[str] = []
    blocked: list[str] = []
    with serve(app) as address:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith(("http://127.0.0.1:", "ws://127.0.0.1:"))
                else (blocked.append(route.request.url), route.abort())
            ),
        )
        page.goto(f"http://{address}{docs}")
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 390, f"{wide} px wide at 390"
        # Every table wraps inside its box: no column (constraints, description) cut off.
        cut = page.eval_on_selector_all(
            ".scroll",
            "boxes => boxes.filter((b) => b.scrollWidth > b.clientWidth + 1).map((b) => "
            "b.querySelector('td') ? b.querySelector('td').textContent : b.outerHTML.slice(0, 80))",
        )
        assert page.eval_on_selector_all(".scroll table", "tables => tables.length") > 0
        assert cut == [], f"tables wider than their box at 390 px: {cut}"
        if name == "chat":
            page.screenshot(path=str(Path(SCREENSHOTS or tmp_path) / "docs-page-phone.png"))
        page.set_viewport_size({"width": 1280, "height": 900})
        # Every type name leads to its schema; the navigation stays and searches.
        targets = page.eval_on_selector_all(
            "td.type a",
            "links => links.map((a) => !!document.getElementById(a.hash.slice(1)))",
        )
        assert targets
        assert all(targets)
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        assert page.eval_on_selector("nav", "nav => nav.getBoundingClientRect().top") == 0
        first = page.eval_on_selector("button.try", "b => b.dataset.event")
        page.fill("#nav-search", first)
        shown = page.eval_on_selector_all(
            "#nav a",
            "links => links.filter((a) => a.style.display !== 'none').map((a) => a.textContent)",
        )
        assert shown
        assert all(first in text.lower() for text in shown), shown
        page.fill("#nav-search", "")
        # Each event's "Try it" fills the console with an example the server answers.
        events = page.eval_on_selector_all(
            "button.try", "buttons => buttons.map((b) => b.dataset.event)"
        )
        page.click("button.try")
        for param, value in params.items():
            page.fill(f"#param-{param}", value)
        for key, value in query.items():
            page.fill(f"#query-{key}", value)
        page.click("#console-connect")
        page.wait_for_selector("#console-send:not([disabled])")
        for n, event in enumerate(events, 1):
            page.click(f"button.try[data-event='{event}']")
            page.fill("#console-id", str(n))
            page.click("#console-send")
            answer = f'"event":"{event}"'
            replied = (
                "([answer, id]) => [...document.querySelectorAll('#log div.in')]"
                ".some((line) => line.textContent.includes(answer)"
                " && line.textContent.includes(id))"
            )
            # A handler that asks the client first: answer it from the console.
            asked = "document.querySelector('#asks button.answer')"
            page.wait_for_function(
                f"(arg) => ({replied})(arg) || {asked}", arg=[answer, f'"id":{n}']
            )
            if page.query_selector("#asks button.answer"):
                page.click("#asks button.answer")
            page.wait_for_function(replied, arg=[answer, f'"id":{n}'])
        errors = page.eval_on_selector_all(
            "#log div.err", "lines => lines.map((l) => l.textContent)"
        )
        assert errors == []
        page.click("#console-disconnect")
        page.wait_for_selector("#console-send[disabled]")
        page.click("#console-clear")
        assert page.eval_on_selector_all("#log div", "lines => lines.length") == 0
    assert problems == []
    assert blocked == []


def test_docs_page_marks_once_handlers_and_its_console_answers_server_requests(
    browser: Any,
) -> None:
    from examples.orders.app import app as orders_app

    blocked: list[str] = []
    with serve(orders_app) as address:
        page = open_page(browser, f"http://{address}/ws/docs", blocked)
        assert "Server → client requests" in page.inner_text("#channel-orders")
        assert page.inner_text("#event-orders-ask-confirm h4") == "server asksconfirm"
        once = page.query_selector_all("#event-orders-receive-place .badge.once")
        assert len(once) == 1
        assert "at most once" in once[0].get_attribute("title")
        assert page.query_selector("#query-wsevents-session") is None  # the page's own

        def send(id_: int) -> None:
            page.click("button.try[data-event='place']")
            page.fill("#console-id", str(id_))
            page.click("#console-send")

        def replies(id_: int) -> list[dict[str, Any]]:
            lines = page.eval_on_selector_all(  # what the server sent: "hh:mm:ss ← {...}"
                "#log div.in, #log div.err",
                "lines => lines.map((l) => l.textContent.split(' ').slice(2).join(' '))",
            )
            frames = [json.loads(text) for text in lines if text.startswith("{")]
            return [f for f in frames if f.get("id") == id_ and "ask" not in f]

        page.click("#console-connect")
        page.wait_for_selector("#console-send:not([disabled])")
        send(1)
        page.wait_for_selector("#asks .ask")
        assert json.loads(page.input_value("#asks textarea")) == {"yes": True}
        page.click("#asks button.answer")
        page.wait_for_function("document.querySelectorAll('#log div.in').length >= 2")
        first = replies(1)
        send(1)  # the same request again: the first run's answer, and no question
        page.wait_for_function("document.querySelectorAll('#log div.in').length >= 3")
        again = replies(1)
        send(2)
        page.wait_for_selector("#asks .ask")
        page.fill("#asks input", "changed_my_mind")
        page.click("#asks button.refuse")
        page.wait_for_selector("#log div.err")
        refused = replies(2)
        log = page.inner_text("#log")
    assert first == [{"event": "place", "data": first[0]["data"], "id": 1}]
    assert first[0]["data"]["item"] == "teapot"
    assert again == first * 2
    assert log.count('"ask":"q') == 4  # two questions, two answers
    assert '"event":"confirm","data":{"yes":true},"ask":"q1"' in log
    assert refused[0]["data"]["code"] == "changed_my_mind"
    assert blocked == []


def test_docs_console_shows_the_status_and_reason_of_a_refused_handshake(browser: Any) -> None:
    with serve(chat_app) as address:
        page = open_page(browser, f"http://{address}/ws/docs", [])
        page.fill("#param-room", "lobby")
        page.click("#console-connect")  # no user: the chat refuses with 403
        page.wait_for_selector("#status.refused")
        status = page.inner_text("#status")
        # And the declared query parameter is offered, with what to give.
        hint = page.get_attribute("#query-user", "title")
    assert status == "refused: HTTP 403 a user name is required: add ?user=NAME"
    assert hint == "your name in the room, 1 to 32 characters (required)"


def requests_app() -> tuple[Any, list[int]]:
    """A page and a channel with a once handler and a server request, mounted at /ws."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Mount, Route

    from wsevents import Channel, Connection, EventApp

    room = Channel("/room")
    room.asks("confirm", reply=dict)
    runs: list[int] = []

    @room.on("charge", reply=dict, once=True)
    async def charge(data: dict[str, Any]) -> dict[str, Any]:
        runs.append(data["amount"])
        await asyncio.sleep(data["seconds"])
        return {"amount": data["amount"], "run": len(runs)}

    @room.on("ask", reply=dict)
    async def ask(conn: Connection) -> dict[str, Any]:
        try:
            return {"answer": await conn.request("confirm", {"question": "ok?"}, timeout=5)}
        except EventError as exc:
            return {"error": exc.code}

    events = EventApp([room], title="t", version="1")

    async def home(request: Any) -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>requests</title>")

    app = Starlette(routes=[Route("/", home), Mount("/ws", app=events)], lifespan=events.lifespan)
    return app, runs


BROWSER_REQUESTS = """async (relayPort) => {
  const { connect } = await import("/ws/wsevents.js");
  const client = await connect(`ws://127.0.0.1:${relayPort}/ws/room`, { backoff: [50, 100] });
  const asked = client.request("charge", { amount: 4, seconds: 0.5 }, { timeout: 10000 });
  await new Promise((r) => setTimeout(r, 200));
  await window.cut();
  const reply = await asked;
  const unanswered = await client.request("ask");
  client.answer("confirm", (data) => ({ yes: data.question === "ok?" }));
  const answered = await client.request("ask");
  client.answer("confirm", () => { const e = new Error("no"); e.code = "declined"; throw e; });
  const refused = await client.request("ask");
  const session = client.session;
  client.close();
  const again = await connect(`ws://127.0.0.1:${relayPort}/ws/room`);
  const id = await again.request("charge", { amount: 5, seconds: 0 });
  again.close();
  return {
    reply, unanswered, answered, refused, session, reconnects: client.reconnects,
    sameSession: again.session === session, stored: sessionStorage.getItem("wsevents:session"),
    nextId: Number(sessionStorage.getItem("wsevents:next-id")), id,
  };
}"""


def test_the_browser_client_s_request_is_answered_once_though_the_connection_was_cut(
    browser: Any,
) -> None:
    app, runs = requests_app()
    with serve(app) as address:
        port = int(address.rsplit(":", 1)[1])
        with ThreadedRelay(port) as relay:
            page = open_page(browser, f"http://{address}/", [])
            page.expose_function("cut", relay.cut)
            out = page.evaluate(BROWSER_REQUESTS, relay.port)
            connections = relay.connections
    assert out["reply"] == {"amount": 4, "run": 1}  # the resend waited for the first run
    assert out["reconnects"] == 1
    assert connections == 3  # the first, the reconnect, the second client
    assert out["unanswered"] == {"error": "unknown_event"}
    assert out["answered"] == {"answer": {"yes": True}}
    assert out["refused"] == {"error": "declined"}
    assert out["sameSession"] is True
    assert out["stored"] == out["session"]
    assert len(out["session"]) >= 16
    assert out["nextId"] == 6  # five requests so far, the counter kept beside the session
    assert out["id"] == {"amount": 5, "run": 2}
    assert runs == [4, 5]


BROWSER_CREDENTIALS = """async () => {
  const { connect } = await import("/wsevents.js");
  const base = `ws://${location.host}`;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const grant = (user, seconds, secret) =>
    `${user}|${(Date.now() / 1000 + seconds).toFixed(3)}|${secret}`;
  // A token function (a promise): kept connected across two refreshes.
  const issued = [];
  const closes = [];
  const ann = await connect(`${base}/me`, {
    token: async () => {
      issued.push(grant("ann", 2.5, `b${issued.length}`));
      return issued.at(-1);
    },
    onDisconnect: (code, reason) => closes.push([code, reason]),
  });
  const first = await ann.request("whoami");
  await sleep((first.expires_at - Date.now() / 1000 + 1.7) * 1000); // past two expiries
  const now = await ann.request("whoami");
  // 4403: ended by the app; the client stops and says why.
  const ended = [];
  const cat = await connect(`${base}/hooked?user=cat`, {
    backoff: [50, 100],
    onDisconnect: (c, r) => ended.push([c, r]),
  });
  await ann.request("end", { user: "cat", reason: "signed out" });
  await sleep(600);
  const afterEnd = await cat.request("whoami").catch((e) => [e.code, e.details]);
  // 4401 with a string token: stops; with a function refused at the refresh: a fresh token, again.
  const fixed = await connect(`${base}/me`, { token: grant("dan", 0.6, "s1"), backoff: [50, 100] });
  const calls = [];
  const eve = await connect(`${base}/me`, {
    backoff: [50, 100],
    tokenIn: "query",
    token: () => {
      calls.push(calls.length === 1 ? "bob" : "eve");
      return grant(calls.at(-1), calls.length === 1 ? 0.6 : 60, "q");
    },
  });
  const eveFirst = await eve.request("whoami");
  await sleep(1500);
  const eveAgain = await eve.request("whoami");
  const afterExpiry = await fixed.request("whoami").catch((e) => [e.code, e.details]);
  ann.close();
  eve.close();
  return {
    first, now, issued: issued.length, closes, ended, afterEnd,
    catReconnects: cat.reconnects, catClose: cat.closeCode, afterExpiry,
    fixedReconnects: fixed.reconnects, fixedClose: fixed.closeCode, calls,
    eveReconnects: eve.reconnects, sameEve: eveFirst.id === eveAgain.id, eveUser: eveAgain.user,
  };
}"""


def test_the_browser_client_refreshes_its_token_and_stops_after_4403(browser: Any) -> None:
    from tests.apps.credentials import app as credentials_app

    with serve(credentials_app) as address:
        page = open_page(browser, f"http://{address}/docs", [])
        out = page.evaluate(BROWSER_CREDENTIALS)
    # Two refreshes with the promise-returning function: the same connection, moved on.
    assert out["closes"] == []
    assert out["issued"] >= 3
    assert out["now"]["id"] == out["first"]["id"]
    assert out["now"]["expires_at"] > out["first"]["expires_at"] + 1.0
    assert int(out["now"]["identity"]["secret"][1:]) >= 2  # replaced by the second refresh
    # 4403: no reconnect, and the app is told.
    assert out["ended"] == [[4403, "signed out"]]
    assert out["catReconnects"] == 0
    assert out["catClose"] == 4403
    assert out["afterEnd"] == ["connection_lost", {"code": 4403, "reason": "signed out"}]
    # 4401 with a string token: stopped; with a function: a fresh token and a new connection.
    assert out["afterExpiry"] == [
        "connection_lost",
        {"code": 4401, "reason": "credentials expired"},
    ]
    assert (out["fixedReconnects"], out["fixedClose"]) == (0, 4401)
    assert out["calls"] == ["eve", "bob", "eve"]
    assert out["eveReconnects"] == 1
    assert (out["sameEve"], out["eveUser"]) == (False, "eve")


def test_docs_console_answers_a_refresh_with_the_token_it_was_given(browser: Any) -> None:
    import time

    from tests.apps.credentials import app as credentials_app

    before = credentials_app.stats()["refreshes"].get("refreshed", 0)
    blocked: list[str] = []
    with serve(credentials_app) as address:
        page = open_page(browser, f"http://{address}/docs", blocked)
        assert page.query_selector("#event-me-ask-wsevents\\.refresh") is not None
        close_codes = page.inner_text("#close-codes")
        page.select_option("#console-channel", "me")
        page.fill("#offer-bearer_", f"ann|{time.time() + 1.5:.3f}|docs")
        page.click("#console-connect")
        page.wait_for_selector("#console-send:not([disabled])")
        page.wait_for_function("document.getElementById('log').textContent.includes('4401')")
        log = page.inner_text("#log")
    assert "4401" in close_codes
    assert "do not reconnect" in close_codes
    assert "→ answered wsevents.refresh with the token given" in log
    assert '"event":"wsevents.refresh","data":{"expires_at"' in log
    assert "closed with code 4401: credentials expired (the credentials expired" in log
    assert credentials_app.stats()["refreshes"].get("refreshed", 0) == before + 1
    assert blocked == []


def test_the_browser_client_puts_the_trace_context_it_is_given_in_the_frame(
    browser: Any,
) -> None:
    import threading

    from websockets.sync.server import ServerConnection
    from websockets.sync.server import serve as websockets_serve

    frames: list[dict[str, Any]] = []

    def echo(ws: ServerConnection) -> None:
        for payload in ws:
            frame = json.loads(payload)
            frames.append(frame)
            if "id" in frame:
                ws.send(json.dumps({"event": frame["event"], "data": None, "id": frame["id"]}))

    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with (
        websockets_serve(echo, "127.0.0.1", 0, subprotocols=["wsevents.json"]) as raw,  # type: ignore[list-item]
        serve(chat_app) as address,
    ):
        threading.Thread(target=raw.serve_forever, daemon=True).start()
        port = raw.socket.getsockname()[1]
        page = open_page(browser, f"http://{address}/", [])
        page.evaluate(
            """async ([port, parent]) => {
              const { connect } = await import("/ws/wsevents.js");
              const client = await connect(`ws://127.0.0.1:${port}/c`);
              await client.request("plain");
              await client.request("traced", null, { traceparent: parent, tracestate: "a=1" });
              client.send("sent", 1, { traceparent: parent });
              await client.request("last");
              client.close();
            }""",
            [port, parent],
        )
    plain, traced, sent, _ = frames
    assert "traceparent" not in plain
    assert (traced["traceparent"], traced["tracestate"]) == (parent, "a=1")
    assert (sent["traceparent"], "tracestate" in sent) == (parent, False)


TRACE_PAGE = """<!doctype html><meta charset="utf-8"><button id="say">say hello</button>
<script type="module">
  import { connect } from "/ws/wsevents.js";
  const client = await connect(`ws://${location.host}/ws/chat/lobby`);
  window.said = [];
  client.on("said", (text) => window.said.push(text));
  // A click's trace context, as OpenTelemetry JS's propagation.inject writes it.
  const hex = (n) => Array.from(crypto.getRandomValues(new Uint8Array(n)),
    (b) => b.toString(16).padStart(2, "0")).join("");
  document.getElementById("say").addEventListener("click", async () => {
    const traceparent = `00-${hex(16)}-${hex(8)}-01`;
    const start = performance.timeOrigin + performance.now();
    await client.request("say", "hello", { traceparent });
    window.clicked = { traceparent, start, end: performance.timeOrigin + performance.now() };
  });
  window.ready = true;
</script>"""


def traced_chat(redis_url: str, exporter: Any) -> Any:
    """A room on Redis with telemetry on, its spans in ``exporter``; a page with a button."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Mount, Route

    from wsevents import Channel, Connection, EventApp
    from wsevents.backplane.redis import RedisBackplane

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    room = Channel("/chat/{room}")

    @room.on_connect
    async def join(conn: Connection, room: str) -> None:
        await conn.subscribe(f"rooms/{room}")

    @room.on("say", model=str)
    async def say(conn: Connection, data: str) -> None:
        await conn.publish("rooms/lobby", "said", data)

    events = EventApp(
        [room],
        backplane=RedisBackplane(redis_url),
        telemetry={"tracer_provider": provider, "meter_provider": MeterProvider()},
    )

    async def index(request: Any) -> HTMLResponse:
        return HTMLResponse(TRACE_PAGE)

    return Starlette(routes=[Route("/", index), Mount("/ws", app=events)], lifespan=events.lifespan)


def test_a_click_in_the_browser_is_one_trace_through_a_handler_a_publish_and_two_processes(
    browser: Any, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The trace docs/telemetry.md shows (docs/trace.png), drawn from the spans collected."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from .trace_picture import Row, waterfall

    here, there = InMemorySpanExporter(), InMemorySpanExporter()
    blocked: list[str] = []
    with (
        serve(traced_chat(redis_server.url, here)) as one,
        serve(traced_chat(redis_server.url, there)) as two,
    ):
        listeners = [open_page(browser, f"http://{two}/", blocked) for _ in range(3)]
        for page in listeners:
            page.wait_for_function("window.ready === true")
        ann = open_page(browser, f"http://{one}/", blocked)
        ann.wait_for_function("window.ready === true")
        ann.click("#say")  # the first request warms the page's and the servers' paths
        ann.wait_for_function("window.clicked")
        ann.evaluate("window.clicked = undefined")
        ann.click("#say")
        clicked = ann.wait_for_function("window.clicked").json_value()
        for page in listeners:
            page.wait_for_function("window.said.length === 2")
    assert blocked == []
    trace_id = int(clicked["traceparent"][3:35], 16)
    spans_here = [s for s in here.get_finished_spans() if s.context.trace_id == trace_id]
    spans_there = [s for s in there.get_finished_spans() if s.context.trace_id == trace_id]
    assert [s.name for s in spans_here] == ["wsevents deliver", "wsevents publish", "wsevents say"]
    (delivered,) = spans_there
    assert delivered.name == "wsevents deliver"
    assert (delivered.attributes or {})["wsevents.recipients"] == 3  # one span, three pages
    local, publish, handler = spans_here
    assert handler.parent is not None
    assert handler.parent.span_id == int(clicked["traceparent"][36:52], 16)
    assert delivered.links[0].context.span_id == publish.context.span_id

    def row(where: str, span: Any, detail: str) -> Row:
        kind = span.kind.name.lower()
        return Row(where, span.name, f"{kind}, {detail}", span.start_time, span.end_time)

    start_ns, end_ns = int(clicked["start"] * 1e6), int(clicked["end"] * 1e6)
    recipients = (delivered.attributes or {})["wsevents.recipients"]
    rows = [
        Row("browser", "click: request say", "traceparent in the frame", start_ns, end_ns),
        row("process 1", handler, "the handler, child of the click"),
        row("process 1", publish, "topic rooms/lobby"),
        row("process 1", local, f"{local.attributes['wsevents.recipients']} recipient here"),
        row("process 2", delivered, f"{recipients} recipients, linked"),
    ]
    page = browser.new_page()
    page.set_content(
        waterfall(
            "One click, one trace: two uvicorn processes on one Redis",
            rows,
            f"trace {clicked['traceparent'][3:35]}; spans from the SDK's in-memory exporter "
            "of each process, the browser's bar from performance.now() around the request.",
        )
    )
    page.locator("#trace").screenshot(path=str(Path(SCREENSHOTS or tmp_path) / "trace.png"))
    assert (Path(SCREENSHOTS or tmp_path) / "trace.png").read_bytes()[:4] == b"\x89PNG"

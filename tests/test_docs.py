"""The docs' code runs: the README example, the quickstart, the protocol's exchanges."""

from __future__ import annotations

import json
import re
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.chat.app import app as chat_app
from wsevents import EventError, Reject
from wsevents.testing import EventTestClient, Message

from .conftest import serve

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(path: Path, language: str) -> list[str]:
    return [code for lang, code in FENCE.findall(path.read_text()) if lang == language]


@pytest.fixture
def module(request: pytest.FixtureRequest) -> Iterator[types.ModuleType]:
    """An importable module to run documentation code in (pydantic resolves names there)."""
    name = f"wsevents_docs_{request.node.name}"
    module = types.ModuleType(name)
    sys.modules[name] = module
    yield module
    del sys.modules[name]


def test_readme_example_runs_as_described(module: types.ModuleType) -> None:
    exec(blocks(ROOT / "README.md", "python")[0], module.__dict__)
    with (
        EventTestClient(module.app) as client,
        client.connect("/ws/chat/lobby") as ann,
        client.connect("/ws/chat/lobby") as bob,
    ):
        ann.send("say", {"text": "hi"})
        assert bob.receive() == Message("said", {"text": "hi"})
        ann.send("say", {}, id=1)
        assert ann.receive() == Message("said", {"text": "hi"})
        error = ann.receive()
        assert (error.event, error.data["code"], error.id) == ("error", "validation_error", 1)
        assert error.data["details"][0]["loc"] == ["text"]


def test_quickstart_runs_and_its_tests_pass(module: types.ModuleType) -> None:
    code = "\n".join(blocks(ROOT / "docs" / "quickstart.md", "python"))
    exec(code, module.__dict__)
    tests = [value for name, value in vars(module).items() if name.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        test()


def test_quickstart_fastapi_mount_serves_the_same_channel(module: types.ModuleType) -> None:
    exec("\n".join(blocks(ROOT / "docs" / "quickstart.md", "python")), module.__dict__)
    with EventTestClient(module.api) as client:
        with client.connect("/ws/shops/south", headers={"x-token": "member"}) as ws:
            assert ws.request("order", {"item": "cake"})["total_cents"] == 425
        with pytest.raises(Reject), client.connect("/ws/shops/south"):
            pass


def exchanges() -> list[str]:
    return [code for code in blocks(ROOT / "docs" / "protocol.md", "text") if code.startswith("→")]


def test_protocol_page_has_exchanges() -> None:
    assert len(exchanges()) >= 8


@pytest.mark.parametrize("exchange", exchanges())
def test_protocol_exchange_replays_against_the_chat_example(exchange: str) -> None:
    with EventTestClient(chat_app) as client:
        # A room of its own, as the page's room "docs" is: offsets start there.
        room = f"docs-{uuid.uuid4().hex[:8]}"
        with client.connect(f"/ws/chat/{room}?user=ann") as ws:
            position = ws.receive()
            assert position.event == "wsevents.subscribed"
            members = ws.receive()
            assert members.event == "wsevents.presence"
            assert list(members.data["joined"].values()) == [{"user": "ann"}]
            for line in exchange.strip().splitlines():
                arrow, frame = line.split(" ", 1)
                if arrow == "→":
                    ws.send_raw(frame)
                else:
                    assert arrow == "←"
                    expected = json.loads(frame)
                    if "topic" in expected:  # the page's room and epoch stand for this run's
                        expected["topic"] = f"rooms/{room}"
                        expected["epoch"] = position.data["epoch"]
                    assert json.loads(ws.receive_raw()) == expected


def test_asyncapi_page_code_runs(module: types.ModuleType) -> None:
    python = blocks(ROOT / "docs" / "asyncapi.md", "python")
    code = "\n".join(block for block in python if "chat_client" not in block)
    exec(code, module.__dict__)
    module.test_the_chat_keeps_its_contract()
    assert module.document["info"]["title"] == "Chat"


def test_asyncapi_page_names_the_types_a_generator_makes() -> None:
    document = json.loads((ROOT / "schemas" / "chat.asyncapi.json").read_text())
    titles = {m["payload"]["title"] for m in document["components"]["messages"].values()}
    text = (ROOT / "docs" / "asyncapi.md").read_text()
    for title in titles:
        assert f"`{title}`" in text


def test_deployment_page_code_builds_the_app_from_the_environment(
    module: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = blocks(ROOT / "docs" / "deployment.md", "python")[0]
    monkeypatch.setenv("WSEVENTS_BACKPLANE", "redis://127.0.0.1:6379/0?prefix=docs:")
    exec(code, module.__dict__)
    assert repr(module.events.backplane) == "RedisBackplane('redis://127.0.0.1:6379/0')"
    assert module.events.backplane.prefix == "docs:"
    chat_source = (ROOT / "examples" / "chat" / "app.py").read_text()
    assert 'backplane=os.environ.get("WSEVENTS_BACKPLANE", "memory://")' in chat_source


def test_security_page_code_builds_an_app_that_refuses_strangers(
    module: types.ModuleType,
) -> None:
    exec(blocks(ROOT / "docs" / "security.md", "python")[0], module.__dict__)
    with EventTestClient(module.events) as client:
        with pytest.raises(Reject) as missing, client.connect("/chat/x"):
            pass
        with (
            pytest.raises(Reject) as foreign,
            client.connect("/chat/x?token=s3cret", headers={"origin": "https://evil.example"}),
        ):
            pass
        with client.connect("/chat/x?token=s3cret"):
            pass
    assert (missing.value.status, foreign.value.status) == (401, 403)


def test_reliability_page_reports_the_committed_soak_results() -> None:
    report = json.loads((ROOT / "bench" / "results" / "soak.json").read_text())
    page = (ROOT / "docs" / "reliability.md").read_text()
    assert report["messages_lost_by_healthy_clients"] == 0
    assert report["server_tracebacks"] == 0
    assert f"| malformed frames sent | {report['frames_sent']['malformed']:,} |" in page
    assert f"{report['probe_p99_ms']['baseline']:.1f} ms" in page
    assert f"{report['probe_p99_ms']['with abuse']:.1f} ms" in page
    for code, count in report["answers_by_kind"].items():
        assert f"`{code}`" in page
        assert f"{count:,}" in page


def test_performance_page_shows_the_committed_benchmark_table() -> None:
    results = json.loads((ROOT / "bench" / "results" / "bench.json").read_text())
    page = (ROOT / "docs" / "performance.md").read_text()
    assert results["table"] in page
    assert results["targets"] in page
    assert results["results"]["echo JSON, C=50 W=10"][0]["wsevents"]["bad_replies"] == 0


def test_performance_page_shows_the_scale_set_and_its_curves() -> None:
    stored = json.loads((ROOT / "bench" / "results" / "bench-scale.json").read_text())
    page = (ROOT / "docs" / "performance.md").read_text()
    assert stored["table"] in page
    assert stored["targets"] in page
    for picture in ("scale-fanout.png", "scale-memory.png", "scale-processes.png"):
        assert f"]({picture})" in page
        assert (ROOT / "docs" / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for label, row in stored["results"].items():
        for result in row.values():
            assert result.get("delivered", 0) >= result.get("expected", 0), label


def test_performance_page_shows_the_cluster_set_and_its_picture() -> None:
    stored = json.loads((ROOT / "bench" / "results" / "bench-cluster.json").read_text())
    page = (ROOT / "docs" / "performance.md").read_text()
    assert stored["table"] in page
    assert "](cluster-shards.png)" in page
    assert (ROOT / "docs" / "cluster-shards.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for label, result in stored["results"].items():
        assert result["delivered"] >= result["expected"], label


def test_concepts_example_runs(module: types.ModuleType) -> None:
    exec(blocks(ROOT / "docs" / "concepts.md", "python")[0], module.__dict__)
    with (
        EventTestClient(module.events, check_frames=True) as client,
        client.connect("/items/south") as ws,
    ):
        assert ws.request("lookup", {"sku": "tea"}) == {"sku": "tea", "price_cents": 250}
        with pytest.raises(EventError) as caught:
            ws.request("lookup", {"sku": "pie"})
        assert (caught.value.code, caught.value.details) == ("not_found", {"sku": "pie"})
    document = module.events.asyncapi()
    assert "restocked" in json.dumps(document)
    error = document["components"]["messages"]["items_shop_lookup_error"]["payload"]
    assert error["properties"]["data"]["properties"]["code"]["enum"][-1] == "not_found"


def test_fastapi_page_runs_top_to_bottom_with_its_lifespan_dependencies_and_sign_in(
    module: types.ModuleType,
) -> None:
    for block in blocks(ROOT / "docs" / "fastapi.md", "python"):
        exec(block, module.__dict__)
    module.test_a_notice_is_pushed_marked_read_and_read_over_http()


def test_testing_page_example_passes(module: types.ModuleType) -> None:
    exec(blocks(ROOT / "docs" / "testing.md", "python")[0], module.__dict__)
    module.test_divide()


def test_testing_page_reads_history_and_presence_frames_and_sends_a_bad_one(
    module: types.ModuleType,
) -> None:
    exec(blocks(ROOT / "docs" / "testing.md", "python")[1], module.__dict__)
    module.test_a_notice_reaches_its_user_after_the_protocols_own_frames()
    module.test_a_bad_frame_gets_an_error_frame_and_the_socket_stays_open()


def test_testing_page_answers_a_server_request(module: types.ModuleType) -> None:
    exec(blocks(ROOT / "docs" / "testing.md", "python")[2], module.__dict__)
    module.test_an_order_is_confirmed_and_charged_once_though_sent_twice()


@pytest.mark.anyio
async def test_clients_page_python_example_talks_to_the_chat(module: types.ModuleType) -> None:
    exec(blocks(ROOT / "docs" / "clients.md", "python")[0], module.__dict__)
    with serve(chat_app) as address:
        heard = await module.chat(f"ws://{address}/ws/chat/docs?user=ann")
    assert heard == ["fire and forget", "hello"]


def test_clients_page_proxy_example_builds(module: types.ModuleType) -> None:
    exec(blocks(ROOT / "docs" / "clients.md", "python")[1], module.__dict__)
    with EventTestClient(module.gateway) as client:
        assert client.http.get("/ws/chat/lobby").status_code == 404


def test_the_browser_clients_documented_api_is_the_modules() -> None:
    script = (ROOT / "wsevents" / "static" / "wsevents.js").read_text()
    types_ = (ROOT / "wsevents" / "static" / "wsevents.d.ts").read_text()
    example = blocks(ROOT / "docs" / "clients.md", "js")[0]
    for name in ("connect(", ".on(", ".send(", ".request(", "onConnect", "onDisconnect"):
        assert name in example
        assert name.strip(".(") in script
        assert name.strip(".(") in types_


def test_resumable_topics_page_code_resumes_as_the_page_says(module: types.ModuleType) -> None:
    from urllib.parse import parse_qs, urlsplit

    page = ROOT / "docs" / "resumable-topics.md"
    code = blocks(page, "python")[0].replace("redis://127.0.0.1:6379/0", "memory://")
    exec(code, module.__dict__)
    example = blocks(page, "text")[0].strip()
    held = json.loads(parse_qs(urlsplit(example).query)["wsevents-resume"][0])
    assert held == {"rooms/lobby": ["k3x9Qa1z", 40]}
    frames = [json.loads(line) for line in blocks(page, "json")]
    assert set(frames[0]) == {"event", "data", "topic", "epoch", "offset"}
    events = module.events
    with EventTestClient(events) as client:
        with client.connect("/chat/lobby") as ws:
            subscribed = json.loads(ws.receive_raw())
            assert set(subscribed) == set(frames[1])
            assert set(subscribed["data"]) == set(frames[1]["data"])
            epoch = subscribed["data"]["epoch"]
        for n in range(3):
            client.http.portal.call(events.publish, "rooms/lobby", "said", {"n": n})
        query = json.dumps({"rooms/lobby": [epoch, 1]})
        with client.connect(f"/chat/lobby?wsevents-resume={query}") as ws:
            got = [json.loads(ws.receive_raw()) for _ in range(3)]
            assert [frame.get("offset") for frame in got[:2]] == [2, 3]
            assert got[2]["data"]["recovered"] is True


def test_presence_page_code_lists_the_members_as_the_page_says(module: types.ModuleType) -> None:
    page = ROOT / "docs" / "presence.md"
    code = blocks(page, "python")[0].replace("redis://127.0.0.1:6379/0", "memory://")
    exec(code, module.__dict__)
    (example,) = [json.loads(line) for line in blocks(page, "json")]
    with (
        EventTestClient(module.events) as client,
        client.connect("/chat/lobby?user=ann") as ann,
        client.connect("/chat/lobby?user=bob") as bob,
    ):
        assert bob.request("who") == {"users": ["ann", "bob"]}
        frames = [json.loads(ann.receive_raw()) for _ in range(2)]  # its position, then members
        members = next(frame for frame in frames if frame["event"] == "wsevents.presence")
        assert set(members) == set(example)
        assert set(members["data"]) == set(example["data"])
        assert {info["user"] for info in members["data"]["joined"].values()} <= {"ann", "bob"}


def test_asyncapi_page_python_typed_client_talks_to_the_chat(
    module: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from .test_codegen import write_python_client

    write_python_client(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("chat_client", None)
    (code,) = [b for b in blocks(ROOT / "docs" / "asyncapi.md", "python") if "chat_client" in b]
    exec(code, module.__dict__)
    with serve(chat_app) as address:
        heard = asyncio.run(module.talk(f"ws://{address}"))
    assert heard == ["pong 1", "string_too_short"]


def test_asyncapi_page_typescript_recipes_are_the_ones_the_tests_run(tmp_path: Path) -> None:
    from .test_codegen import compile_ts, write_typescript_client

    (recipe,) = blocks(ROOT / "docs" / "asyncapi.md", "js")
    options = re.search(r"new TypeScriptGenerator\(\{(.*?)\}\)", recipe, re.DOTALL)
    script = (ROOT / "tests" / "asyncapi" / "modelina.mjs").read_text()
    tested = re.search(r"new TypeScriptGenerator\(\{(.*?)\}\)", script, re.DOTALL)
    assert options is not None
    assert tested is not None
    assert options[1].split() == tested[1].split()
    (typed,) = blocks(ROOT / "docs" / "asyncapi.md", "ts")
    write_typescript_client(tmp_path)
    (tmp_path / "usage.ts").write_text(typed + "export {};\n")
    result = compile_ts(tmp_path)
    assert result.returncode == 0, result.stdout


REQUESTS = ROOT / "docs" / "requests.md"


def test_requests_page_shows_the_orders_example_as_it_is() -> None:
    shown = blocks(REQUESTS, "python")[0]
    assert "once=True" in shown
    assert shown in (ROOT / "examples" / "orders" / "app.py").read_text()


@pytest.mark.parametrize("exchange", [b for b in blocks(REQUESTS, "text") if '"ask"' in b])
def test_requests_page_exchange_replays_against_the_orders_example(exchange: str) -> None:
    from examples.orders.app import events as orders_events

    with EventTestClient(orders_events) as client, client.connect("/orders") as ws:
        for line in exchange.strip().splitlines():
            arrow, frame = line.split(" ", 1)
            if arrow == "→":
                ws.send_raw(frame)
                continue
            expected, got = json.loads(frame), json.loads(ws.receive_raw())
            if "order" in expected["data"]:  # the example's order numbers go on across tests
                expected["data"]["order"] = got["data"]["order"]
            assert got == expected


@pytest.mark.anyio
async def test_requests_page_asks_every_agent_in_request_all(module: types.ModuleType) -> None:
    from wsevents.client import connect

    exec(blocks(REQUESTS, "python")[1], module.__dict__)
    with serve(module.events) as address:
        url = f"ws://{address}/desk"
        async with connect(url) as ann, connect(url) as bob, connect(url) as cid:
            ann.answer("available", lambda data: "ann")
            bob.answer("available", lambda data: None)  # busy
            cid.answer("available", lambda data: "cid")
            free = await bob.request("free")  # bob asks, and is asked too
            ann.answer("available", lambda data: None)
            later = await cid.request("free")
    assert free == ["ann", "cid"]
    assert later == ["cid"]


@pytest.mark.anyio
async def test_requests_page_python_client_answers_and_refuses(module: types.ModuleType) -> None:
    from examples.orders.app import app as orders_app

    exec(blocks(REQUESTS, "python")[2], module.__dict__)
    with serve(orders_app) as address:
        placed = await module.buy(f"ws://{address}/ws/orders", "teapot")
        with pytest.raises(EventError) as refused:
            await module.buy(f"ws://{address}/ws/orders", "kettle")
    assert placed["item"] == "teapot"
    assert placed["quantity"] == 2
    assert (refused.value.code, refused.value.message) == ("declined", "not now")


SECURITY = ROOT / "docs" / "security.md"


def test_security_page_shows_the_accounts_example_as_it_is() -> None:
    shown = blocks(SECURITY, "python")[1:]  # the first is the BearerAuth introduction
    assert len(shown) == 2
    assert "Grant(identity=claims" in shown[0]
    assert "events.disconnect(user=user" in shown[1]
    source = (ROOT / "examples" / "accounts" / "app.py").read_text()
    for block in shown:
        assert block in source


def test_protocol_page_refresh_exchange_replays_against_an_expiring_connection() -> None:
    import time

    from tests.apps.credentials import app as credentials_app

    (exchange,) = [b for b in blocks(ROOT / "docs" / "protocol.md", "text") if "refresh" in b]
    asked_line, answer_line = exchange.strip().splitlines()
    assert asked_line.startswith("← ")
    assert answer_line.startswith("→ ")
    shown_ask, shown_answer = json.loads(asked_line[2:]), json.loads(answer_line[2:])
    expires_at = time.time() + 1.5
    first = f"ann|{expires_at:.3f}|docs1"
    with (
        EventTestClient(credentials_app) as client,
        client.connect("/me", headers={"Authorization": f"Bearer {first}"}) as ws,
    ):
        asked = json.loads(ws.receive_raw(timeout=5))
        assert asked == {**shown_ask, "data": {"expires_at": float(f"{expires_at:.3f}")}}
        fresh = f"ann|{time.time() + 60:.3f}|docs2"
        ws.send_raw(json.dumps({**shown_answer, "data": {"token": fresh}}))
        time.sleep(2.0)  # past the first expiry
        me = ws.request("whoami")
    assert me["identity"]["secret"] == "docs2"
    assert me["expires_at"] > expires_at + 50


def test_the_telemetry_page_s_set_up_prints_the_spans_of_a_handled_event() -> None:
    """Run in a process of its own: the page sets the global providers, once per process."""
    import subprocess

    (setup,) = blocks(ROOT / "docs" / "telemetry.md", "python")
    driver = (
        "\nfrom wsevents.testing import EventTestClient\n"
        "with EventTestClient(events) as client, client.connect('/chat/lobby') as ws:\n"
        "    assert ws.request('ping', 7) == 7\n"
        "tracer_provider.force_flush()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", setup + driver],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    spans = re.findall(r'"name": "([^"]+)"', result.stdout)
    assert "wsevents ping" in spans
    assert "wsevents connect /chat/{room}" in spans
    assert '"service.name": "chat"' in result.stdout


def test_the_telemetry_page_shows_the_trace_a_browser_test_drew() -> None:
    page = (ROOT / "docs" / "telemetry.md").read_text()
    assert "](trace.png)" in page
    assert (ROOT / "docs" / "trace.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test_a_click_in_the_browser_is_one_trace_through" in page
    stored = json.loads((ROOT / "bench" / "results" / "bench-telemetry.json").read_text())
    assert stored["table"] in page
    assert stored["targets"] in page

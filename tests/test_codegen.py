"""Code from the contract: Modelina on our documents, and the typed clients, with the real tools.

Modelina (pinned in tests/asyncapi/package.json) generates TypeScript from
each example's document and from the stress registry; `tsc --strict` compiles
it, and frames captured from a live server type-check against it. The typed
clients (`wsevents client`) compile under `tsc --strict` and `mypy --strict`
and drive a live chat through every event, reply, push and error.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
from mypy import api as mypy_api
from pydantic import BaseModel, Field, ValidationError
from websockets.asyncio.client import connect as ws_connect

from examples.chat.app import app as chat_app
from examples.chat.app import events as chat_events
from examples.fastapi_app import events as fastapi_events
from examples.notifications.app import events as notification_events
from examples.orders.app import events as orders_events
from wsevents import Channel, EventApp
from wsevents.asyncapi import generate_client
from wsevents.cli import main as cli

from .conftest import serve
from .stress.app import build as build_stress
from .stress.corners import build as build_corners
from .test_types import TOOLS, TSC

ROOT = Path(__file__).resolve().parent.parent
TYPES = ROOT / "tests" / "types"
STATIC = ROOT / "wsevents" / "static"
TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "target": "es2022",
        "module": "es2022",
        "moduleResolution": "bundler",
        "lib": ["es2022", "dom"],
        "types": [],
        "skipLibCheck": False,
    }
}


def node() -> str:
    found = shutil.which("node")
    assert found, "node is needed: `make test` installs Node.js"
    return found


def node_with_websocket() -> list[str]:
    """Node and the flag that gives it a WebSocket: built in from 22, a flag in 20 and 21."""
    for flags in ([], ["--experimental-websocket"]):
        probe = [node(), *flags, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"]
        if subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0:
            return [node(), *flags, "--no-warnings"]
    raise AssertionError("this Node.js has no WebSocket: the browser client needs Node 20 or later")


def compile_ts(folder: Path, *, emit: bool = False) -> subprocess.CompletedProcess[str]:
    """Run tsc --strict on every .ts file in ``folder``."""
    assert TSC.is_file(), "TypeScript is not installed: `make test` runs `npm ci` in tests/asyncapi"
    config = json.loads(json.dumps(TSCONFIG))
    config["compilerOptions"]["noEmit"] = not emit
    config["include"] = ["*.ts"]
    (folder / "tsconfig.json").write_text(json.dumps(config))
    return subprocess.run(
        [node(), str(TSC), "-p", str(folder)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def modelina(document: dict[str, Any], folder: Path, name: str) -> list[str]:
    """Generate TypeScript with Modelina into ``folder/name.ts``; return the model names."""
    source = folder / f"{name}.json"
    source.write_text(json.dumps(document))
    result = subprocess.run(
        [node(), str(TOOLS / "modelina.mjs"), str(source), str(folder / f"{name}.ts")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()


DOCUMENTS = {
    "chat": lambda: chat_events.asyncapi(root_path="/ws"),
    "fastapi": lambda: fastapi_events.asyncapi(root_path="/ws"),
    "notifications": lambda: notification_events.asyncapi(),
    "orders": lambda: orders_events.asyncapi(root_path="/ws"),
    "stress": lambda: build_stress().asyncapi(),
    "corners": lambda: build_corners().asyncapi(),
}
REGISTRIES = {
    "chat": lambda: chat_events,
    "notifications": lambda: notification_events,
    "stress": build_stress,
    "corners": build_corners,
}


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_modelina_typescript_from_each_document_compiles_strict(name: str, tmp_path: Path) -> None:
    document = DOCUMENTS[name]()
    models = modelina(document, tmp_path, name)
    result = compile_ts(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every model and every frame is a type of its own, named by its title (Modelina
    # writes a list or a scalar where it is used).
    schemas = document["components"]["schemas"].values()
    titles = {schema["title"] for schema in schemas if schema.get("properties")}
    titles |= {m["payload"]["title"] for m in document["components"]["messages"].values()}
    assert titles <= set(models), sorted(titles - set(models))


def test_modelina_keeps_same_name_classes_apart(tmp_path: Path) -> None:
    modelina(build_stress().asyncapi(), tmp_path, "stress")
    source = (tmp_path / "stress.ts").read_text()
    assert "export interface ShopItem {" in source
    assert "export interface StoreItem {" in source
    shop = source.split("export interface ShopItem {")[1].split("}")[0]
    store = source.split("export interface StoreItem {")[1].split("}")[0]
    assert "'sku': string;" in shop
    assert "'name': string;" in store


def title_of(document: dict[str, Any], frame: dict[str, Any], sent: bool) -> str | None:
    """The payload title of the message a frame is: request, reply, push or error."""
    event = frame["event"]
    for key, message in document["components"]["messages"].items():
        payload = message["payload"]
        if payload["properties"]["event"]["const"] != event:
            continue
        if event == "error":
            return str(payload["title"])
        is_reply = key.endswith("_reply")
        is_push = "not" in payload
        if sent and not (is_reply or is_push):
            return str(payload["title"])
        if not sent and frame.get("id") is not None and is_reply:
            return str(payload["title"])
        if not sent and frame.get("id") is None and is_push:
            return str(payload["title"])
    assert sent, f"the server sent a frame the document does not describe: {frame}"
    return None  # an event the app does not have


async def capture(url: str, frames: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bool]]:
    """Send ``frames`` (each one with an id answered) and keep every frame both ways."""
    seen: list[tuple[dict[str, Any], bool]] = []
    async with ws_connect(url) as ws:
        for frame in frames:
            await ws.send(json.dumps(frame))
            seen.append((frame, True))
            while True:
                got = json.loads(await asyncio.wait_for(ws.recv(), 5))
                seen.append((got, False))
                if got.get("id") == frame.get("id") or (
                    frame.get("id") is None and got["event"] in ("said", "error")
                ):
                    break
    return seen


CHAT_FRAMES = [
    {"event": "ping", "data": {"n": 1}, "id": 1},
    {"event": "say", "data": {"text": "hello"}, "id": "a"},
    {"event": "say", "data": {"text": "no id"}},
    {"event": "ping", "data": {"n": "one"}, "id": 2},
    {"event": "nope", "id": 3},
]
# Frames the document does not allow: sent for the error frames they get, not typed.
INVALID = [CHAT_FRAMES[3], CHAT_FRAMES[4]]
STRESS_FRAMES = [
    {"event": "items.list", "data": {"items": [{"sku": "ABC-1234", "price_cents": 5}]}, "id": 1},
    {"event": "items/add", "data": {"sku": "ABC-1234", "price_cents": 5}, "id": 2},
    {"event": "numbers", "data": [1, 2, 3], "id": 3},
    {"event": "point", "data": {"x": 1, "y": 2}, "id": 4},
    {"event": "delete", "data": {"first-name": "Ann", "address": {"street": "Main"}}, "id": 5},
    {"event": "tags", "data": ["a", "b"], "id": 6},
    {"event": "nudge", "id": 7},
    {"event": "items_add", "data": 0, "id": 8},
]
INVALID.append(STRESS_FRAMES[-1])


@pytest.mark.parametrize("name", ["chat", "stress"])
def test_frames_from_a_live_server_type_check_against_modelinas_types(
    name: str, tmp_path: Path
) -> None:
    if name == "chat":
        document, app, path, frames = (
            DOCUMENTS["chat"](),
            chat_app,
            "/ws/chat/lobby?user=ann",
            CHAT_FRAMES,
        )
    else:
        app = build_stress()
        document, path, frames = app.asyncapi(), "/catalogue/books", STRESS_FRAMES
    modelina(document, tmp_path, "models")
    with serve(app) as address:
        seen = asyncio.run(capture(f"ws://{address}{path}", frames))
    kinds = {str(title_of(document, frame, sent)) for frame, sent in seen}
    assert any(kind.endswith("Reply") for kind in kinds)
    assert any("ErrorFrame" in k for k in kinds)
    lines = ["import type * as M from './models.js';"]
    for n, (frame, sent) in enumerate(seen):
        if sent and frame in INVALID:
            continue
        lines.append(
            f"export const frame{n}: M.{title_of(document, frame, sent)} = {json.dumps(frame)};"
        )
    (tmp_path / "frames.ts").write_text("\n".join(lines) + "\n")
    result = compile_ts(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(lines) > len(frames)  # each request and what answered it
    # And the check can fail: a reply frame is not a push (it carries an id), a
    # wrong field type is wrong.
    wrong = (
        "export const wrong: M.SaidPush = {event: 'said', data: {user: 'a', text: 'b'}, id: 1};"
        if name == "chat"
        else "export const wrong: M.ShopItem = {sku: 'A', price_cents: 'no'};"
    )
    (tmp_path / "frames.ts").write_text(lines[0] + "\n" + wrong + "\n")
    result = compile_ts(tmp_path)
    assert result.returncode != 0
    assert "frames.ts(2," in result.stdout, result.stdout


def write_typescript_client(
    folder: Path, target: str = "examples.chat.app:app", name: str = "chat_api"
) -> None:
    shutil.copy(STATIC / "wsevents.js", folder / "wsevents.js")
    shutil.copy(STATIC / "wsevents.d.ts", folder / "wsevents.d.ts")
    assert cli(["client", target, "--lang", "typescript", "-o", str(folder / f"{name}.ts")]) == 0


def failed_lines(result: subprocess.CompletedProcess[str], name: str) -> set[int]:
    """The lines of ``name`` that tsc reported an error on."""
    return {
        int(line.split(f"{name}(")[1].split(",")[0])
        for line in result.stdout.splitlines()
        if f"{name}(" in line and not line.startswith(" ")
    }


def test_the_typescript_client_drives_a_live_chat_through_every_event(tmp_path: Path) -> None:
    write_typescript_client(tmp_path)
    shutil.copy(TYPES / "typed_chat.ts", tmp_path / "typed_chat.ts")
    (tmp_path / "package.json").write_text('{"type": "module"}')
    result = compile_ts(tmp_path, emit=True)
    assert result.returncode == 0, result.stdout + result.stderr
    with serve(chat_app) as address:
        run = subprocess.run(
            [*node_with_websocket(), str(tmp_path / "typed_chat.js"), f"ws://{address}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["pong"] == 42
    assert out["answer"] is None
    assert out["said"] == {"user": "ts", "text": "hello from ts"}
    assert out["members"] == ["ts"]
    assert out["topic"] == "rooms/ts lobby"
    assert out["invalid"][0] == "validation_error"
    assert "model" in out["invalid"][1]
    assert out["unknown"] == "unknown_event"
    assert out["pushedError"] == "validation_error"


def test_the_typescript_client_types_reject_each_misuse(tmp_path: Path) -> None:
    write_typescript_client(tmp_path)
    wrong = (TYPES / "typed_chat_wrong.ts").read_text()
    (tmp_path / "typed_chat_wrong.ts").write_text(wrong)
    result = compile_ts(tmp_path)
    marked = [n for n, line in enumerate(wrong.splitlines(), 1) if "// WRONG" in line]
    assert failed_lines(result, "typed_chat_wrong.ts") == set(marked), result.stdout


def test_the_typescript_client_types_a_server_requests_data_and_its_answer(
    tmp_path: Path,
) -> None:
    write_typescript_client(tmp_path, "examples.orders.app:app", "orders_api")
    for name in ("orders_usage.ts", "orders_wrong.ts"):
        shutil.copy(TYPES / name, tmp_path / name)
    result = compile_ts(tmp_path)
    wrong = (TYPES / "orders_wrong.ts").read_text().splitlines()
    marked = {n for n, line in enumerate(wrong, 1) if "// WRONG" in line}
    assert len(marked) == 5
    assert failed_lines(result, "orders_wrong.ts") == marked, result.stdout
    assert failed_lines(result, "orders_usage.ts") == set(), result.stdout


def write_python_client(
    folder: Path, target: str = "examples.chat.app:app", name: str = "chat_client"
) -> Path:
    path = folder / f"{name}.py"
    assert cli(["client", target, "--lang", "python", "-o", str(path)]) == 0
    return path


def test_the_python_client_passes_mypy_strict_with_its_use(tmp_path: Path) -> None:
    write_python_client(tmp_path)
    shutil.copy(TYPES / "typed_chat_usage.py", tmp_path / "typed_chat_usage.py")
    for name in ("notifications", "stress", "corners"):
        registry = REGISTRIES[name]()
        (tmp_path / f"{name}_client.py").write_text(generate_client(registry, "python"))
    out, err, status = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / ".mypy"), str(tmp_path)]
    )
    assert status == 0, out + err
    # And mypy would notice: a wrong keyword to a generated method.
    (tmp_path / "wrong.py").write_text(
        "from chat_client import ChatRoomClient\n\n\n"
        "async def f(chat: ChatRoomClient) -> str:\n    return (await chat.ping(n='1')).n\n"
    )
    out, _, status = mypy_api.run(["--strict", "--no-incremental", str(tmp_path / "wrong.py")])
    assert status == 1
    assert out.count("error:") == 2, out


def test_the_python_client_types_an_answerer_that_mypy_strict_checks(tmp_path: Path) -> None:
    write_python_client(tmp_path, "examples.orders.app:app", "orders_client")
    shutil.copy(TYPES / "orders_usage.py", tmp_path / "orders_usage.py")
    cache = ["--cache-dir", str(tmp_path / ".mypy")]
    out, err, status = mypy_api.run(["--strict", "--no-incremental", *cache, str(tmp_path)])
    assert status == 0, out + err
    (tmp_path / "wrong.py").write_text(
        "from orders_client import Confirmed, OrdersClient, Question\n\n\n"
        "def f(orders: OrdersClient) -> None:\n"
        "    @orders.answer_confirm\n"
        "    async def wrong_answer(question: Question) -> str:\n"
        '        return "yes"\n\n'
        "    def wrong_data(question: int) -> Confirmed:\n"
        "        return Confirmed(yes=True)\n\n"
        "    orders.answer_confirm(wrong_data)\n"
    )
    out, _, status = mypy_api.run(
        ["--strict", "--no-incremental", *cache, str(tmp_path / "wrong.py")]
    )
    assert status == 1
    assert out.count('incompatible type "Callable[[') == 2, out


def test_the_python_client_answers_the_servers_request_with_its_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from examples.orders.app import app as orders_app

    write_python_client(tmp_path, "examples.orders.app:app", "orders_client")
    shutil.copy(TYPES / "orders_usage.py", tmp_path / "orders_usage.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("orders_client", "orders_usage"):
        sys.modules.pop(module, None)
    usage = importlib.import_module("orders_usage")
    with serve(orders_app) as address:
        out = asyncio.run(usage.main(f"ws://{address}"))
    assert out == {
        "placed": ["teapot", 2],
        "asked": ["Buy 2 x teapot?"],
        "refused": "not_confirmed",
    }


def test_the_python_client_drives_a_live_chat_through_every_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_python_client(tmp_path)
    shutil.copy(TYPES / "typed_chat_usage.py", tmp_path / "typed_chat_usage.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("chat_client", "typed_chat_usage"):
        sys.modules.pop(module, None)
    usage = importlib.import_module("typed_chat_usage")
    with serve(chat_app) as address:
        out = asyncio.run(usage.main(f"ws://{address}"))
    assert out["pong"] == 42
    assert out["answer"] is None
    assert out["said"] == ["py", "hello from python"]
    assert out["members"] == ["py"]
    assert out["topic"] == "rooms/py lobby"
    assert out["refused"] == "string_too_short"  # the client's model, as the server's
    assert out["invalid"][0] == "validation_error"
    assert out["unknown"] == "unknown_event"
    assert out["pushed_error"] == "validation_error"


def test_the_python_client_validates_what_the_server_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stress = tmp_path / "stress_client.py"
    stress.write_text(generate_client(build_stress(), "python"))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("stress_client", None)
    module = importlib.import_module("stress_client")

    async def go(address: str) -> dict[str, Any]:
        async with module.CatalogueSectionClient(
            f"ws://{address}", section="books", reconnect=False
        ) as shop:
            renamed = await shop.delete(first_name="Ann", address=module.Address(street="Main"))
            return {
                "renamed": renamed,
                "tags": await shop.tags(["a", "b"]),
                "numbers": await shop.numbers([1, 2, 3]),
                "point": await shop.point(x=1, y=2),
            }

    with serve(build_stress()) as address:
        out = asyncio.run(go(address))
    # Aliases both ways: sent as "first-name" and "class", read back into Python names.
    assert (out["renamed"].first_name, out["renamed"].class_, out["renamed"].kind) == (
        "Ann",
        "a",
        "renamed",
    )
    assert out["renamed"].address == module.Address(street="Main")
    assert out["tags"] == ["a", "b"]
    assert out["numbers"] == 6
    assert (out["point"].x, out["point"].y) == (1, 2)


def test_clients_carry_the_channels_parameters_and_error_codes() -> None:
    typescript = generate_client(build_stress(), "typescript")
    assert "params: { id: number; token: string };" in typescript
    rest = 'String(params["rest"]).split("/").map(encodeURIComponent).join("/")'
    assert f'path = path.replace("{{rest}}", {rest});' in typescript
    assert '"rate_limited": "too many events from this connection",' in typescript
    python = generate_client(build_stress(), "python")
    assert "        id: int,\n        token: _uuid.UUID | str,\n" in python
    assert "PetsIdTokenErrorCode = _typing.Literal['bad_frame'," in python


def test_an_unknown_language_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(["client", "examples.chat.app:app", "--lang", "rust"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'rust'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="lang must be"):
        generate_client(chat_events, "rust")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(REGISTRIES))
def test_the_typescript_client_of_each_registry_compiles_strict(name: str, tmp_path: Path) -> None:
    shutil.copy(STATIC / "wsevents.d.ts", tmp_path / "wsevents.d.ts")
    (tmp_path / "api.ts").write_text(generate_client(REGISTRIES[name](), "typescript"))
    result = compile_ts(tmp_path)
    assert result.returncode == 0, result.stdout


def test_names_that_meet_are_kept_apart_in_the_python_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "corners_client.py").write_text(generate_client(build_corners(), "python"))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("corners_client", None)
    module = importlib.import_module("corners_client")

    async def go(address: str) -> tuple[Any, Any]:
        async with module.MovesClient(
            f"ws://{address}", query_2="a b", base_url_2=7, reconnect=False
        ) as moves:
            # A field named `timeout` or `self` cannot be a keyword: the model is the argument.
            odd = await moves.field_1st_move(module.Odd.model_validate({"self": 1, "timeout": 2}))
            return odd, await moves.ping(n=3)

    with serve(build_corners()) as address:
        odd, reply = asyncio.run(go(address))
    assert (odd.self, odd.timeout, odd.model_name_) == (1, 2.0, "x")
    # The app's ErrorData is not the protocol's: each has a class of its own.
    assert type(reply).__name__ == "ErrorData2"
    assert reply.reason == "3"
    assert module.MovesClient.address == "/games/{query}/{base_url}"


def test_clients_carry_a_handlers_own_error_codes() -> None:
    from .test_asyncapi import shop_app

    typescript = generate_client(shop_app(), "typescript")
    assert '    order: { data: Order; reply: Order; errors: "unknown_item" };' in typescript
    assert "    free: { data: Order; reply: null; errors: never };" in typescript
    assert '| "unavailable" | "unknown_item";' in typescript  # in ShopErrorCode
    assert '  "unknown_item": "the item is not on the menu",' in typescript
    python = generate_client(shop_app(), "python")
    assert "        ``unknown_item``: the item is not on the menu" in python
    assert "'unavailable', 'unknown_item']" in python  # in ShopErrorCode


class MarkRead(BaseModel):
    notice_id: int = Field(ge=1, description="The notice that was read.")
    note: str | None = Field(default=None, max_length=5, pattern="^[a-z]*$")
    tags: list[Annotated[str, Field(min_length=1)]] = Field(default=[], max_length=2)


def constrained_app() -> EventApp:
    notices = Channel("/notices/{user}")
    seen: list[int] = []

    @notices.on("mark_read")
    async def mark_read(data: MarkRead) -> Annotated[int, Field(ge=0)]:
        seen.append(data.notice_id)
        return len(seen)

    @notices.on("seen")
    async def seen_ids() -> list[int]:
        return seen

    return EventApp([notices], title="Notices", version="1")


def test_the_python_client_refuses_what_the_servers_model_refuses_before_sending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = constrained_app()
    (tmp_path / "notices_client.py").write_text(generate_client(app, "python"))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("notices_client", None)
    module = importlib.import_module("notices_client")
    refused = (
        {"notice_id": 0},
        {"notice_id": 1, "note": "toolong"},
        {"notice_id": 1, "note": "Up"},
        {"notice_id": 1, "tags": [""]},
    )

    async def go(address: str) -> dict[str, Any]:
        async with module.NoticesUserClient(f"ws://{address}", user="ann", reconnect=False) as c:
            errors = []
            for fields in refused:
                with pytest.raises(ValidationError) as raised:
                    await c.mark_read(**fields)
                errors.append(raised.value.errors()[0]["type"])
            return {
                "errors": errors,
                "count": await c.mark_read(notice_id=3),
                "seen": await c.seen(),
            }

    with serve(app) as address:
        out = asyncio.run(go(address))
    assert out["errors"] == [
        "greater_than_equal",
        "string_too_long",
        "string_pattern_mismatch",
        "string_too_short",
    ]
    assert out["count"] == 1
    assert out["seen"] == [3]  # nothing refused reached the server
    with pytest.raises(ValidationError):
        module.MarkRead(notice_id=1, tags=["a", "b", "c"])


def test_the_typescript_types_state_the_constraints_in_their_doc_comments() -> None:
    typescript = generate_client(constrained_app(), "typescript")
    interface = typescript[typescript.index("export interface MarkRead") :]
    interface = interface[: interface.index("\n}\n")]
    assert (
        "   * The notice that was read.\n   * @minimum 1\n   */\n  notice_id: number;" in interface
    )
    assert "   * @maxLength 5\n   * @pattern ^[a-z]*$\n   */\n  note?: string | null;" in interface
    assert "  /** @maxItems 2 */\n  tags?: Array<string>;" in interface

"""The AsyncAPI document: its shape, its validity under the official parser, serving it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Mount

from examples.chat.app import app as chat_app
from examples.chat.app import events as chat_events
from examples.fastapi_app import app as fastapi_app
from wsevents import Channel, Connection, EventApp, EventError, RegistrationError
from wsevents.asyncapi import build_asyncapi
from wsevents.testing import EventTestClient, FrameContractError, Message

from .apps.history import app as history_app
from .apps.presence import app as presence_app
from .asyncapi_rules import problems, resolve
from .stress.app import build as build_stress

ROOT = Path(__file__).resolve().parent.parent
PARSER = ROOT / "tests" / "asyncapi"
SHARED_VALIDATOR = ROOT.parent / "shared" / "tools" / "asyncapi-validate" / "asyncapi-validate"


def documents() -> dict[str, dict[str, Any]]:
    """Every document the suite checks: the examples, the stress registry, an empty one."""
    return {
        "chat": chat_events.asyncapi(root_path="/ws"),
        "fastapi": EventTestClient(fastapi_app).http.get("/ws/asyncapi.json").json(),
        "stress": build_stress().asyncapi(root_path="/ws"),
        "history": history_app.asyncapi(),
        "presence": presence_app.asyncapi(),
        "empty": EventApp([], title="Empty", version="0").asyncapi(),
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("asyncapi")
    paths = []
    for name, document in documents().items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(document, indent=2))
        paths.append(path)
    return paths


def test_the_official_parser_finds_no_error_and_no_warning(written: list[Path]) -> None:
    node = shutil.which("node")
    assert node, "node is needed to run @asyncapi/parser"
    assert (PARSER / "node_modules" / "@asyncapi" / "parser").is_dir(), (
        "the parser is not installed: `make test` runs `npm ci` in tests/asyncapi"
    )
    result = subprocess.run(
        [node, str(PARSER / "validate.mjs"), *map(str, written)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout.strip().splitlines()[-1] == "errors=0 warnings=0", result.stdout
    assert result.returncode == 0


def test_the_parser_check_does_catch_a_broken_document(tmp_path: Path) -> None:
    broken = chat_events.asyncapi()
    broken["operations"]["chat_room.receive.say"]["channel"] = {"$ref": "#/channels/nowhere"}
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    result = subprocess.run(
        ["node", str(PARSER / "validate.mjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "invalid-ref" in result.stdout


@pytest.mark.skipif(
    not SHARED_VALIDATOR.exists(),
    reason="../shared/tools/asyncapi-validate is not beside the repository (CI has it)",
)
def test_the_shared_validator_finds_documents_clean(written: list[Path]) -> None:
    result = subprocess.run(
        [str(SHARED_VALIDATOR), *map(str, written)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert "asyncapi-validate: all clean" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["chat", "fastapi", "stress", "empty"])
def test_documents_keep_the_specs_must_rules(name: str) -> None:
    assert problems(documents()[name]) == []


def test_the_rules_check_catches_what_it_claims_to() -> None:
    document = chat_events.asyncapi()
    del document["channels"]["chat_room"]["parameters"]
    document["components"]["messages"]["chat_room.ping"]["examples"][0]["payload"]["data"] = {}
    found = problems(document)
    assert any("parameters declare" in line for line in found)
    assert any("example does not validate" in line for line in found)


def test_chat_document_describes_the_wire_protocol() -> None:
    document = chat_events.asyncapi(root_path="/ws")
    assert document["asyncapi"] == "3.0.0"
    assert document["info"] == {
        "title": "Chat",
        "version": "1.0.0",
        "description": "A chat with rooms.",
    }
    channel = document["channels"]["chat_room"]
    assert channel["address"] == "/ws/chat/{room}"
    assert set(channel["parameters"]) == {"room"}
    assert list(channel["messages"]) == [
        "error", "say", "say.reply", "ping", "ping.reply", "said", "wsevents.subscribed",
        "wsevents.presence",
    ]  # fmt: skip
    operations = document["operations"]
    assert {key: op["action"] for key, op in operations.items()} == {
        "chat_room.receive.say": "receive",
        "chat_room.receive.ping": "receive",
        "chat_room.send.said": "send",
        "chat_room.send.error": "send",
        "chat_room.send.wsevents.subscribed": "send",  # the rooms keep history
        "chat_room.send.wsevents.presence": "send",  # and have members
    }
    ping = operations["chat_room.receive.ping"]
    assert ping["summary"] == "Answer with the same number: a round-trip check."
    assert ping["reply"]["messages"] == [
        {"$ref": "#/channels/chat_room/messages/ping.reply"},
        {"$ref": "#/channels/chat_room/messages/error"},
    ]
    request = resolve(document, channel["messages"]["ping"]["$ref"])
    assert request["correlationId"] == {"$ref": "#/components/correlationIds/requestId"}
    assert document["components"]["correlationIds"]["requestId"]["location"] == (
        "$message.payload#/id"
    )
    assert request["contentType"] == "application/json"
    assert request["payload"]["properties"]["event"] == {"type": "string", "const": "ping"}
    assert request["payload"]["properties"]["data"] == {"$ref": "#/components/schemas/Ping"}
    assert request["payload"]["required"] == ["event", "data"]
    said = resolve(document, channel["messages"]["said"]["$ref"])
    assert "id" not in said["payload"]["properties"]
    assert "correlationId" not in said
    protocol = channel["bindings"]["ws"]["headers"]["properties"]["Sec-WebSocket-Protocol"]
    assert "`wsevents.json`, `wsevents.msgpack`" in protocol["description"]
    error = document["components"]["schemas"]["wsevents.ErrorData"]
    assert error["properties"]["code"]["examples"] == [
        "bad_frame", "bad_envelope", "unknown_event", "validation_error", "rate_limited",
        "internal_error",
    ]  # fmt: skip


def test_history_topics_are_described_where_a_client_meets_them() -> None:
    document = history_app.asyncapi()
    (channel,) = document["channels"].values()
    query = channel["bindings"]["ws"]["query"]["properties"]
    assert "wsevents-resume" in query
    messages = document["components"]["messages"]
    subscribed = resolve(document, channel["messages"]["wsevents.subscribed"]["$ref"])
    assert subscribed["name"] == "wsevents.subscribed"
    data = resolve(document, subscribed["payload"]["properties"]["data"]["$ref"])
    assert set(data["required"]) == {"topic", "epoch", "offset", "recovered"}
    said = next(m for m in messages.values() if m["name"] == "said")
    keys = said["payload"]["properties"]
    assert {"topic", "epoch", "offset"} <= set(keys)
    assert said["payload"]["required"] == ["event", "data"]  # positions only on history pushes
    # An app without History rules says none of it.
    plain = build_stress().asyncapi()
    assert "wsevents.subscribed" not in json.dumps(plain)
    assert "wsevents-resume" not in json.dumps(plain)


def test_presence_diffs_are_described_on_every_channel_when_a_rule_sends_them() -> None:
    from wsevents import Presence

    document = presence_app.asyncapi()
    (channel,) = document["channels"].values()
    diff = resolve(document, channel["messages"]["wsevents.presence"]["$ref"])
    assert diff["name"] == "wsevents.presence"
    assert diff["payload"]["required"] == ["event", "data"]
    data = resolve(document, diff["payload"]["properties"]["data"]["$ref"])
    assert set(data["required"]) == {"topic", "joined", "left"}
    assert data["properties"]["left"]["additionalProperties"] == {"type": "object"}
    sends = [op for op in document["operations"].values() if op["action"] == "send"]
    assert any(op["messages"][0]["$ref"].endswith("/wsevents.presence") for op in sends)
    # No Presence rule, or one without diffs: no such frame is ever sent.
    assert "wsevents.presence" not in json.dumps(build_stress().asyncapi())
    quiet = EventApp(
        [Channel("/c")], title="t", version="1", topics=[Presence("big/+", diffs=False)]
    )
    assert "wsevents.presence" not in json.dumps(quiet.asyncapi())


def test_the_document_is_a_pure_function_of_the_registry() -> None:
    assert chat_events.asyncapi() == chat_events.asyncapi()
    assert json.dumps(build_stress().asyncapi()) == json.dumps(build_stress().asyncapi())


def test_stress_schemas_are_collision_free_and_fit_the_schema_object() -> None:
    document = build_stress().asyncapi()
    schemas = document["components"]["schemas"]
    items = [key for key, schema in schemas.items() if schema.get("title") == "Item"]
    assert sorted(items) == ["tests__stress__shop__Item", "tests__stress__store__Item"]
    adopt = schemas["Adopt"]["properties"]["pet"]
    assert adopt["discriminator"] == "kind"
    assert adopt["oneOf"] == [
        {"$ref": "#/components/schemas/Cat"},
        {"$ref": "#/components/schemas/Dog"},
    ]
    shape = schemas["Receipt"]["properties"]["shape"]
    assert shape["items"] == [{"type": "integer"}, {"type": "string"}]
    assert shape["additionalItems"] is False
    assert "prefixItems" not in json.dumps(document)
    assert schemas["Tree-Input"]["properties"]["children"]["items"] == {
        "$ref": "#/components/schemas/Tree-Input"
    }
    messages = document["channels"]["pets_id_token"]["messages"]
    assert {"tree", "tree.reply", "tree.push"} <= set(messages)
    catalogue = document["channels"]["catalogue_section"]["messages"]
    assert {"items.list", "items_add", "items_add_2"} <= set(catalogue)


def test_parameters_describe_their_convertor() -> None:
    channel = build_stress().asyncapi()["channels"]["pets_id_token"]
    assert channel["address"] == "/pets/{id}/{token}"
    assert channel["parameters"] == {
        "id": {"description": "Path parameter `id`: a non-negative integer."},
        "token": {"description": "Path parameter `token`: a UUID."},
    }


def test_examples_are_generated_for_every_message_they_can_be() -> None:
    document = build_stress().asyncapi()
    without = [key for key, m in document["components"]["messages"].items() if "examples" not in m]
    assert without == []
    adopt = document["components"]["messages"]["pets_id_token.adopt"]["examples"][0]["payload"]
    assert adopt["data"]["pet"] == {"kind": "cat", "lives": 9}


def test_events_without_payload_and_optional_payloads_are_not_required() -> None:
    document = build_stress().asyncapi()
    messages = document["components"]["messages"]
    assert messages["catalogue_section.nudge"]["payload"]["required"] == ["event"]
    assert messages["pets_id_token.maybe"]["payload"]["required"] == ["event"]
    assert messages["catalogue_section.nudge.reply"]["payload"]["properties"]["data"] == {
        "type": "null"
    }


def test_field_descriptions_and_constraints_reach_the_schema() -> None:
    schemas = build_stress().asyncapi()["components"]["schemas"]
    adopt = schemas["Adopt"]["properties"]["nickname"]
    assert adopt["description"] == "Optional nickname."
    item = schemas["tests__stress__shop__Item"]["properties"]
    assert item["sku"]["pattern"] == "^[A-Z]{3}-[0-9]{4}$"
    assert item["price_cents"]["minimum"] == 0


def test_channel_names_must_be_valid_component_keys() -> None:
    with pytest.raises(RegistrationError, match="an AsyncAPI key"):
        Channel("/a", name="has space")


def test_builder_reads_servers_and_description() -> None:
    document = build_stress().asyncapi()
    assert document["servers"] == {"local": {"host": "127.0.0.1:8000", "protocol": "ws"}}
    assert build_asyncapi(chat_events)["info"]["description"] == "A chat with rooms."


def test_served_json_yaml_and_docs_carry_the_mount_prefix() -> None:
    with EventTestClient(chat_app) as client:
        as_json = client.http.get("/ws/asyncapi.json")
        as_yaml = client.http.get("/ws/asyncapi.yaml")
        page = client.http.get("/ws/docs")
        not_allowed = client.http.post("/ws/asyncapi.json")
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.json() == chat_events.asyncapi(root_path="/ws")
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text) == as_json.json()
    assert page.headers["content-type"].startswith("text/html")
    assert '"address": "/ws/chat/{room}"' in page.text
    assert (not_allowed.status_code, not_allowed.headers["allow"]) == (405, "GET, HEAD")


def test_docs_page_is_self_contained() -> None:
    with EventTestClient(chat_app) as client:
        page = client.http.get("/ws/docs").text
    assert "<script src" not in page
    assert '<link rel="stylesheet"' not in page
    assert "http://" not in page.replace('"http://', "")  # no absolute URL to fetch
    assert "https://json-schema" not in page


def test_docs_page_escapes_script_endings_in_descriptions() -> None:
    channel = Channel("/x", description="</script><script>alert(1)</script>")
    app = EventApp([channel], title="<b>T</b>", version="1")
    page = EventTestClient(app).http.get("/docs").text
    assert "</script><script>alert(1)" not in page
    assert "<title>&lt;b&gt;T&lt;/b&gt; - WebSocket API</title>" in page


def test_urls_can_be_moved_or_turned_off() -> None:
    app = EventApp([Channel("/c")], title="t", version="1", docs_url=None, asyncapi_url="/spec")
    client = EventTestClient(app)
    assert client.http.get("/docs").status_code == 404
    assert client.http.get("/spec").json()["asyncapi"] == "3.0.0"
    assert client.http.get("/spec.yaml").status_code == 200


class Note(BaseModel):
    text: str


def contract_app() -> Starlette:
    channel = Channel("/notes")
    channel.emits("noted", model=Note)

    @channel.on("note", model=Note, reply=Note)
    async def note(data: Note) -> Note:
        return data

    @channel.on("fail")
    async def fail() -> None:
        raise EventError("nope", "not today")

    @channel.on("leak")
    async def leak(conn: Connection) -> None:
        await conn.send("undeclared", {"x": 1})

    events = EventApp([channel], title="Notes", version="1")
    return Starlette(routes=[Mount("/api", app=events)], lifespan=events.lifespan)


def test_check_frames_passes_frames_the_document_describes() -> None:
    with (
        EventTestClient(contract_app(), check_frames=True) as client,
        client.connect("/api/notes") as ws,
    ):
        assert ws.request("note", {"text": "hi"}) == {"text": "hi"}
        ws.send("fail", id=1)
        assert ws.receive() == Message(  # error frames are described too
            "error", {"code": "nope", "message": "not today", "details": None}, 1
        )


def test_check_frames_fails_on_a_frame_the_document_does_not_describe() -> None:
    with (
        EventTestClient(contract_app(), check_frames=True) as client,
        client.connect("/api/notes") as ws,
    ):
        with pytest.raises(FrameContractError, match="does not describe"):
            ws.send("unknown", {"x": 1})
        with pytest.raises(FrameContractError, match=r"data/text: 1 is not of type 'string'"):
            ws.send("note", {"text": 1})
        ws.send("leak", id=5)
        with pytest.raises(FrameContractError, match="received a frame"):
            ws.receive()
        assert ws.receive() == Message("leak", None, 5)


def test_channel_and_event_names_that_join_alike_get_distinct_keys() -> None:
    class Ab(BaseModel):
        ab: int

    class Abc(BaseModel):
        abc: str

    dotted = Channel("/x", name="a.b")
    plain = Channel("/y", name="a")

    @dotted.on("c", model=Ab)
    async def c(data: Ab) -> None: ...

    @plain.on("b.c", model=Abc)
    async def bc(data: Abc) -> None: ...

    document = EventApp([dotted, plain], title="t", version="1").asyncapi()
    messages = document["components"]["messages"]
    events = sorted(
        message["payload"]["properties"]["event"].get("const", "") for message in messages.values()
    )
    # Each event and its reply, neither hiding the other's (channel "a.b" + "c" and
    # channel "a" + "b.c" both join as "a.b.c").
    assert events == ["b.c", "b.c", "c", "c", "error", "error"]
    data = {
        message["payload"]["properties"]["event"]["const"]: message["payload"]["properties"][
            "data"
        ]["$ref"]
        for message in messages.values()
        if "$ref" in message["payload"]["properties"].get("data", {})
        and message["payload"]["properties"]["event"].get("const") in ("c", "b.c")
    }
    assert data["c"].endswith("/Ab")
    assert data["b.c"].endswith("/Abc")
    assert problems(document) == []


def test_pushes_declared_with_emits_use_the_aliases_the_document_shows() -> None:
    from pydantic import Field

    class Said(BaseModel):
        user_name: str = Field(alias="userName")

    channel = Channel("/c")
    channel.emits("said", model=Said)

    @channel.on("say")
    async def say(conn: Connection) -> None:
        await conn.send("said", Said(userName="ann"))

    app = EventApp([channel], title="t", version="1")
    schema = app.asyncapi()["components"]["schemas"]
    assert any("userName" in s.get("properties", {}) for s in schema.values())
    with EventTestClient(app) as client, client.connect("/c") as ws:
        ws.send("say")
        assert ws.receive() == Message("said", {"userName": "ann"}, None)

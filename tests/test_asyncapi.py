"""The AsyncAPI document: its shape, its validity under the official parser, serving it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from examples.accounts.app import events as accounts_events
from examples.chat.app import app as chat_app
from examples.chat.app import events as chat_events
from examples.fastapi_app import app as fastapi_app
from examples.orders.app import events as orders_events
from wsevents import Channel, Connection, EventApp, EventError, RegistrationError
from wsevents.asyncapi import build_asyncapi
from wsevents.testing import EventTestClient, FrameContractError, Message

from .apps.credentials import app as credentials_app
from .apps.history import app as history_app
from .apps.presence import app as presence_app
from .asyncapi_rules import problems, resolve
from .stress.app import build as build_stress
from .stress.corners import build as build_corners

ROOT = Path(__file__).resolve().parent.parent
PARSER = ROOT / "tests" / "asyncapi"
SHARED_VALIDATOR = ROOT.parent / "shared" / "tools" / "asyncapi-validate" / "asyncapi-validate"


def documents() -> dict[str, dict[str, Any]]:
    """Every document the suite checks: the examples, the stress registries, an empty one."""
    return {
        "chat": chat_events.asyncapi(root_path="/ws"),
        "fastapi": EventTestClient(fastapi_app).http.get("/ws/asyncapi.json").json(),
        "orders": orders_events.asyncapi(root_path="/ws"),
        "stress": build_stress().asyncapi(root_path="/ws"),
        "corners": build_corners().asyncapi(),
        "history": history_app.asyncapi(),
        "presence": presence_app.asyncapi(),
        "credentials": credentials_app.asyncapi(),
        "accounts": accounts_events.asyncapi(root_path="/ws"),
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
    broken["operations"]["chat_room_receive_say"]["channel"] = {"$ref": "#/channels/nowhere"}
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


@pytest.mark.parametrize("name", ["chat", "fastapi", "stress", "corners", "empty"])
def test_documents_keep_the_specs_must_rules(name: str) -> None:
    assert problems(documents()[name]) == []


def test_the_rules_check_catches_what_it_claims_to() -> None:
    document = chat_events.asyncapi()
    del document["channels"]["chat_room"]["parameters"]
    document["components"]["messages"]["chat_room_ping"]["examples"][0]["payload"]["data"] = {}
    found = problems(document)
    assert any("parameters declare" in line for line in found)
    assert any("example does not validate" in line for line in found)


def test_chat_document_describes_the_wire_protocol() -> None:
    document = chat_events.asyncapi(root_path="/ws")
    assert document["asyncapi"] == "3.0.0"
    close_codes = document["info"].pop("x-wsevents-close-codes")
    assert document["info"] == {
        "title": "Chat",
        "version": "1.0.0",
        "description": "A chat with rooms.",
    }
    assert list(close_codes) == ["1000", "1001", "1008", "1009", "1011", "1013", "4401", "4403"]
    assert "do not reconnect" in close_codes["4403"]
    channel = document["channels"]["chat_room"]
    assert channel["address"] == "/ws/chat/{room}"
    assert set(channel["parameters"]) == {"room"}
    assert list(channel["messages"]) == [
        "error", "say", "say_reply", "ping", "ping_reply", "said", "wsevents_subscribed",
        "wsevents_presence",
    ]  # fmt: skip
    operations = document["operations"]
    assert {key: op["action"] for key, op in operations.items()} == {
        "chat_room_receive_say": "receive",
        "chat_room_receive_ping": "receive",
        "chat_room_send_said": "send",
        "chat_room_send_error": "send",
        "chat_room_send_wsevents_subscribed": "send",  # the rooms keep history
        "chat_room_send_wsevents_presence": "send",  # and have members
    }
    ping = operations["chat_room_receive_ping"]
    assert ping["summary"] == "Answer with the same number: a round-trip check."
    assert ping["reply"]["messages"] == [
        {"$ref": "#/channels/chat_room/messages/ping_reply"},
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
        "internal_error", "unavailable",
    ]  # fmt: skip


def test_history_topics_are_described_where_a_client_meets_them() -> None:
    document = history_app.asyncapi()
    (channel,) = document["channels"].values()
    query = channel["bindings"]["ws"]["query"]["properties"]
    assert "wsevents-resume" in query
    messages = document["components"]["messages"]
    subscribed = resolve(document, channel["messages"]["wsevents_subscribed"]["$ref"])
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
    diff = resolve(document, channel["messages"]["wsevents_presence"]["$ref"])
    assert diff["name"] == "wsevents.presence"
    assert diff["payload"]["required"] == ["event", "data"]
    data = resolve(document, diff["payload"]["properties"]["data"]["$ref"])
    assert set(data["required"]) == {"topic", "joined", "left"}
    assert data["properties"]["left"]["additionalProperties"] == {"type": "object"}
    sends = [op for op in document["operations"].values() if op["action"] == "send"]
    assert any(op["messages"][0]["$ref"].endswith("/wsevents_presence") for op in sends)
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
    items = {key: schemas[key]["title"] for key in schemas if key.endswith("__Item")}
    assert items == {
        "tests__stress__shop__Item": "ShopItem",
        "tests__stress__store__Item": "StoreItem",
    }
    adopt = schemas["Adopt"]["properties"]["pet"]
    assert adopt["discriminator"] == "kind"
    assert adopt["oneOf"] == [
        {"$ref": "#/components/schemas/Cat"},
        {"$ref": "#/components/schemas/Dog"},
    ]
    shape = schemas["Receipt-Output"]["properties"]["shape"]
    assert shape["items"] == [{"type": "integer"}, {"type": "string"}]
    assert shape["additionalItems"] is False
    assert "prefixItems" not in json.dumps(document)
    assert schemas["Tree-Input"]["properties"]["children"]["items"] == {
        "$ref": "#/components/schemas/Tree-Input"
    }
    messages = document["channels"]["pets_id_token"]["messages"]
    assert {"tree", "tree_reply", "tree_push"} <= set(messages)
    catalogue = document["channels"]["catalogue_section"]["messages"]
    assert {"items_list", "items_add", "items_add_2", "delete_"} <= set(catalogue)


def test_a_server_request_is_a_send_operation_whose_reply_is_the_answer_correlated_by_ask() -> None:
    document = build_stress().asyncapi()
    operation = document["operations"]["pets_id_token_send_adopt_request"]
    assert operation["action"] == "send"
    assert operation["messages"] == [{"$ref": "#/channels/pets_id_token/messages/adopt_request"}]
    assert operation["reply"]["messages"] == [
        {"$ref": "#/channels/pets_id_token/messages/adopt_answer"},
        {"$ref": "#/channels/pets_id_token/messages/error_answer"},
    ]
    messages = document["components"]["messages"]
    request = messages["pets_id_token_adopt_request"]
    answer = messages["pets_id_token_adopt_answer"]
    assert request["correlationId"] == {"$ref": "#/components/correlationIds/ask"}
    assert answer["correlationId"] == {"$ref": "#/components/correlationIds/ask"}
    assert document["components"]["correlationIds"]["ask"]["location"] == "$message.payload#/ask"
    # the server serializes what it asks; it validates the answer it gets
    assert request["payload"]["properties"]["data"] == {"$ref": "#/components/schemas/Adopt"}
    assert answer["payload"]["properties"]["data"] == {"$ref": "#/components/schemas/Receipt-Input"}
    assert request["payload"]["required"] == ["event", "data", "ask"]
    assert "id" not in answer["payload"]["properties"]
    # the handler of the same name the client sends is still its own operation
    assert "pets_id_token_receive_adopt" in document["operations"]
    # a channel that asks nothing has no answer messages
    assert "error_answer" not in document["channels"]["catalogue_section"]["messages"]


def test_once_handlers_are_marked_and_every_channel_takes_the_session() -> None:
    document = build_stress().asyncapi()
    operations = document["operations"]
    assert operations["pets_id_token_receive_pay"]["x-wsevents-once"] is True
    assert "x-wsevents-once" not in operations["pets_id_token_receive_adopt"]
    # a once request may be refused with unavailable, one of the protocol's codes
    code = document["components"]["schemas"]["wsevents.ErrorData"]["properties"]["code"]
    assert "unavailable" in code["examples"]
    assert "- `unavailable`: a `once` request could not be checked" in code["description"]
    for channel in document["channels"].values():
        session = channel["bindings"]["ws"]["query"]["properties"]["wsevents-session"]
        assert session["pattern"] == "^[A-Za-z0-9_-]{16,128}$"


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
    adopt = document["components"]["messages"]["pets_id_token_adopt"]["examples"][0]["payload"]
    assert adopt["data"]["pet"] == {"kind": "cat", "lives": 9}


def test_events_without_payload_and_optional_payloads_are_not_required() -> None:
    document = build_stress().asyncapi()
    messages = document["components"]["messages"]
    assert messages["catalogue_section_nudge"]["payload"]["required"] == ["event"]
    assert messages["pets_id_token_maybe"]["payload"]["required"] == ["event"]
    assert messages["catalogue_section_nudge_reply"]["payload"]["properties"]["data"] == {
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
    # The servers entry is the request's host, and https means wss.
    assert as_json.json() == chat_events.asyncapi(root_path="/ws", server="ws://testserver")
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


def test_the_served_document_names_the_requests_host_as_its_server() -> None:
    with TestClient(chat_app, base_url="https://chat.example:8443") as client:
        secure = client.get("/ws/asyncapi.json").json()
        forged = client.get("/ws/asyncapi.json", headers={"host": "a b</script>"}).json()
    assert secure["servers"] == {"default": {"host": "chat.example:8443", "protocol": "wss"}}
    assert list(secure)[:3] == ["asyncapi", "info", "servers"]
    # A Host header that is no host name is not echoed: the default stays.
    assert forged["servers"] == {"default": {"host": "localhost:8000", "protocol": "ws"}}
    # An app that names its servers keeps them.
    assert build_stress().asyncapi(server="ws://elsewhere:1")["servers"] == {
        "local": {"host": "127.0.0.1:8000", "protocol": "ws"}
    }


@pytest.mark.parametrize("url", ["http://x", "ws://", "ws://a b", "localhost:8000"])
def test_a_server_that_is_not_a_websocket_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="ws:// or wss://"):
        chat_events.asyncapi(server=url)


IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@pytest.mark.parametrize("name", ["chat", "fastapi", "stress", "corners", "empty"])
def test_every_schema_title_names_one_type_and_is_an_identifier(name: str) -> None:
    document = documents()[name]
    titles = [schema["title"] for schema in document["components"]["schemas"].values()]
    titles += [
        message["payload"]["title"] for message in document["components"]["messages"].values()
    ]
    assert all(IDENTIFIER.fullmatch(title) for title in titles), titles
    assert len(titles) == len(set(titles)), sorted(titles)


def test_titles_are_qualified_only_where_they_would_meet() -> None:
    schemas = build_stress().asyncapi()["components"]["schemas"]
    titles = {key: schema["title"] for key, schema in schemas.items()}
    assert titles["Adopt"] == "Adopt"  # alone: as pydantic titles it
    assert (titles["Tree-Input"], titles["Tree-Output"]) == ("TreeInput", "TreeOutput")
    pages = sorted(title for key, title in titles.items() if "Page" in key)
    assert pages == ["PageItem", "PageItemOutput"]  # "Page[Item]" twice, made names
    assert titles["wsevents.ErrorData"] == "ErrorData"  # the protocol's keep theirs


def test_field_names_give_no_property_titles_but_a_models_own_titles_stay() -> None:
    class Cat(BaseModel):
        kind: Literal["cat"] = "cat"
        name: str = Field(title="Cat name")

    class Dog(BaseModel):
        kind: Literal["dog"] = "dog"

    channel = Channel("/pets")

    @channel.on("adopt", model=Annotated[Cat | Dog, Field(discriminator="kind")])
    async def adopt(data: Cat | Dog) -> None: ...

    schemas = EventApp([channel], title="t", version="1").asyncapi()["components"]["schemas"]
    assert "title" not in schemas["Cat"]["properties"]["kind"]
    assert "title" not in schemas["Dog"]["properties"]["kind"]
    assert schemas["Cat"]["properties"]["name"]["title"] == "Cat name"
    # A literal is a one-value enum: code generators turn `const` tags into enum members.
    assert schemas["Dog"]["properties"]["kind"]["enum"] == ["dog"]


@pytest.mark.parametrize("name", ["chat", "fastapi", "stress", "corners", "empty"])
def test_message_and_operation_keys_are_identifiers(name: str) -> None:
    document = documents()[name]
    keys = [*document["operations"], *document["components"]["messages"]]
    keys += [key for channel in document["channels"].values() for key in channel["messages"]]
    assert all(IDENTIFIER.fullmatch(key) for key in keys), keys
    assert not {"delete", "class", "new"} & set(keys)


def test_envelopes_declare_their_discriminator_and_pushes_carry_no_id() -> None:
    document = chat_events.asyncapi()
    messages = document["components"]["messages"]
    assert {m["payload"]["discriminator"] for m in messages.values()} == {"event"}
    said = jsonschema.Draft7Validator(
        {**messages["chat_room_said"]["payload"], "components": document["components"]}
    )
    frame = {"event": "said", "data": {"user": "ann", "text": "hi"}}
    assert said.is_valid(frame)
    # A reply carries an id: it must not pass for a push of the same event.
    assert not said.is_valid({**frame, "id": "1"})


class Order(BaseModel):
    item: str


def shop_app() -> EventApp:
    channel = Channel("/shop")

    @channel.on("order", errors={"unknown_item": "the item is not on the menu"})
    async def order(data: Order) -> Order:
        if data.item == "pie":
            raise EventError("unknown_item", "no pie today")
        if data.item == "cake":
            raise EventError("sold_out", "not declared")
        if data.item == "rush":
            raise EventError("rate_limited", "a code of the protocol's")
        return data

    @channel.on("free")
    async def free(data: Order) -> None:
        raise EventError("anything", "a handler that declares no codes is not held to any")

    return EventApp([channel], title="Shop", version="1")


def test_a_handlers_own_error_codes_are_in_the_document() -> None:
    document = shop_app().asyncapi()
    operation = document["operations"]["shop_receive_order"]
    assert operation["reply"]["messages"][1] == {"$ref": "#/channels/shop/messages/order_error"}
    error = document["components"]["messages"]["shop_order_error"]
    code = error["payload"]["properties"]["data"]["properties"]["code"]
    assert code["enum"][-1] == "unknown_item"
    assert "validation_error" in code["enum"]
    assert "- `unknown_item`: the item is not on the menu" in code["description"]
    assert error["examples"][0]["payload"]["data"]["code"] == "unknown_item"
    free = document["operations"]["shop_receive_free"]
    assert free["reply"]["messages"][1] == {"$ref": "#/channels/shop/messages/error"}
    assert problems(document) == []


def test_check_frames_holds_a_handler_to_the_error_codes_it_declares() -> None:
    with EventTestClient(shop_app(), check_frames=True) as client, client.connect("/shop") as ws:
        assert ws.request("order", {"item": "tea"}) == {"item": "tea"}
        with pytest.raises(EventError, match="no pie today"):
            ws.request("order", {"item": "pie"})
        with pytest.raises(EventError) as rushed:
            ws.request("order", {"item": "rush"})
        assert rushed.value.code == "rate_limited"  # the protocol's codes stay allowed
        with pytest.raises(EventError) as free:
            ws.request("free", {"item": "x"})
        assert free.value.code == "anything"
        with pytest.raises(FrameContractError, match="'sold_out' is not one of"):
            ws.request("order", {"item": "cake"})


@pytest.mark.parametrize(
    ("errors", "message"),
    [
        ({"Not-Snake": "x"}, "must be snake_case"),
        ({"validation_error": "x"}, "is the protocol's own"),
        ({"fine": " "}, "say what error code 'fine' means"),
        (["fine"], "must map each code"),
    ],
)
def test_declared_error_codes_are_checked_at_registration(errors: Any, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        Channel("/c").add_handler("e", lambda: None, errors=errors)


def test_examples_come_from_the_models_own_examples_first() -> None:
    class Purchase(BaseModel):
        model_config = {"json_schema_extra": {"examples": [{"sku": "ABC-1234", "n": 2}]}}

        sku: str = Field(pattern=r"^[A-Z]{3}-[0-9]{4}$")
        n: int

    class Note(BaseModel):
        text: str = Field(examples=["hello, room"], min_length=1)

    channel = Channel("/c")

    @channel.on("order", model=Purchase, reply=Note)  # local classes: named, not inferred
    async def order(data: Purchase) -> Note: ...  # type: ignore[empty-body]

    messages = EventApp([channel]).asyncapi()["components"]["messages"]
    assert messages["c_order"]["examples"][0]["payload"]["data"] == {"sku": "ABC-1234", "n": 2}
    assert messages["c_order_reply"]["examples"][0]["payload"]["data"] == {"text": "hello, room"}

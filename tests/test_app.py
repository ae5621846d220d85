"""EventApp through EventTestClient: the protocol, hooks, errors, topics, lifespan."""

from __future__ import annotations

import json
import logging
import threading
import time
from functools import partial
from typing import Any

import msgpack
import pytest
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.websockets import WebSocketDisconnect

from wsevents import (
    BackplaneUnavailable,
    Channel,
    Codec,
    Connection,
    EventApp,
    EventError,
    Limits,
    PayloadError,
    RegistrationError,
    Reject,
    TopicError,
)
from wsevents.testing import EventTestClient, Message


class Item(BaseModel):
    name: str = Field(max_length=10)
    qty: int = 1


class Count(BaseModel):
    n: int


class Boom(Exception):
    pass


class Mapped(Exception):
    pass


def make_app(**options: Any) -> EventApp:
    items = Channel("/items/{shop}")
    rooms = Channel("/rooms/{room:int}")
    log: list[Any] = []

    items.emits("added", model=Item)

    @items.on_connect
    async def connect(conn: Connection, shop: str) -> None:
        if conn.query_params.get("token") == "bad":
            raise Reject(401, "bad token")
        if conn.query_params.get("crash"):
            raise RuntimeError("hook crashed")
        conn.state.shop = shop
        await conn.subscribe(f"shops/{shop}")
        await conn.send("welcome", {"shop": shop})

    @items.on_disconnect
    async def disconnect(conn: Connection, code: int) -> None:
        log.append(("disconnect", conn.state.shop, code))

    @items.on("add", model=Item, reply=Item)
    async def add(conn: Connection, data: Item, shop: str) -> Item:
        await conn.publish(f"shops/{shop}", "added", data)
        return data

    @items.on("count", model=list[int], reply=Count)
    def count(data: list[int]) -> dict[str, int]:
        log.append(("thread", threading.current_thread() is threading.main_thread()))
        return {"n": len(data)}

    @items.on("silent")
    async def silent() -> None:
        log.append("silent")

    @items.on("raw")
    async def raw(data: Any) -> None:
        log.append(("raw", data))

    @items.on("fail")
    async def fail() -> None:
        raise EventError("out_of_stock", "no more apples", {"left": 0})

    @items.on("boom")
    async def boom() -> None:
        raise Boom("secret detail")

    @items.on("mapped")
    async def mapped() -> None:
        raise Mapped("x")

    @items.on("bad-reply", reply=Count)
    async def bad_reply() -> dict[str, str]:
        return {"n": "not a number"}

    @items.on("push-undeclared")
    async def push_undeclared(conn: Connection) -> None:
        await conn.send("free-form", {"any": ["thing", 1]})

    @items.on("push-invalid")
    async def push_invalid(conn: Connection) -> None:
        await conn.send("added", {"name": 5})

    @items.on("close")
    async def close(conn: Connection) -> None:
        await conn.close(4000, "bye")

    @items.on("sub")
    async def sub(conn: Connection, data: str) -> None:
        await conn.subscribe(data)

    @items.on("unsub")
    async def unsub(conn: Connection, data: str) -> None:
        await conn.unsubscribe(data)

    @items.on("whoami", reply=dict[str, Any])
    async def whoami(conn: Connection) -> dict[str, Any]:
        return {
            "params": conn.params,
            "header": conn.headers.get("x-test"),
            "cookie": conn.cookies.get("flavour"),
            "client": list(conn.client) if conn.client else None,
            "subprotocol": conn.subprotocol,
            "topics": sorted(conn.topics),
        }

    @rooms.on("room", reply=dict[str, Any])
    async def room_handler(room: int) -> dict[str, Any]:
        return {"room": room, "type": type(room).__name__}

    options.setdefault("title", "Test")
    options.setdefault("version", "1")
    app = EventApp([items, rooms], **options)
    app.state_log = log  # type: ignore[attr-defined]

    @app.exception_handler(Mapped)
    async def on_mapped(conn: Connection, exc: Mapped) -> EventError:
        return EventError("mapped", "it was mapped")

    return app


@pytest.fixture
def app() -> EventApp:
    return make_app()


@pytest.fixture
def client(app: EventApp) -> Any:
    with EventTestClient(app) as client:
        yield client


def eventually(condition: Any, timeout: float = 5.0) -> None:
    """Wait, a bounded time, for something the app does in its own thread."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)


def error(message: Message) -> tuple[str, Any]:
    assert message.event == "error"
    return message.data["code"], message.id


def test_reply_carries_request_event_and_id(client: EventTestClient) -> None:
    with client.connect("/items/north") as ws:
        assert ws.receive() == Message("welcome", {"shop": "north"})
        ws.send("add", {"name": "apple", "qty": 3}, id="k1")
        received = [ws.receive(), ws.receive()]
    assert Message("added", {"name": "apple", "qty": 3}) in received
    assert Message("add", {"name": "apple", "qty": 3}, "k1") in received


def test_integer_id_is_echoed_as_an_integer(client: EventTestClient) -> None:
    with client.connect("/items/north") as ws:
        ws.receive()
        ws.send("silent", id=2**53 - 1)
        assert ws.receive() == Message("silent", None, 2**53 - 1)


def test_event_without_id_succeeds_silently(app: EventApp, client: EventTestClient) -> None:
    with client.connect("/items/north") as ws:
        ws.receive()
        ws.send("silent")
        ws.send("silent", id="after")
        assert ws.receive() == Message("silent", None, "after")
    assert app.state_log.count("silent") == 2  # type: ignore[attr-defined]


def test_handler_without_model_gets_raw_data(app: EventApp, client: EventTestClient) -> None:
    with client.connect("/items/north") as ws:
        ws.receive()
        ws.request("raw", {"free": [1, 2]})
    assert ("raw", {"free": [1, 2]}) in app.state_log  # type: ignore[attr-defined]


def test_sync_handler_runs_in_a_thread_with_typeadapter_model(
    app: EventApp, client: EventTestClient
) -> None:
    with client.connect("/items/north") as ws:
        ws.receive()
        assert ws.request("count", [1, 2, 3]) == {"n": 3}
    assert ("thread", False) in app.state_log  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("frame", "code", "request_id"),
    [
        ("{nope", "bad_frame", None),
        ('{"event": "add", "data": NaN, "id": 1}', "bad_frame", None),
        ('{"event": "silent", "data": {"a": 1, "a": 2}, "id": 5}', "bad_frame", 5),
        ('{"event": "silent", "event": "silent", "id": 6}', "bad_envelope", 6),
        ('{"event": "silent", "id": 6, "id": 7}', "bad_envelope", None),
        ("[1, 2]", "bad_envelope", None),
        ('"text"', "bad_envelope", None),
        ('{"data": 1, "id": "m"}', "bad_envelope", "m"),
        ('{"event": 5, "id": "n"}', "bad_envelope", "n"),
        ('{"event": "", "id": "e"}', "bad_envelope", "e"),
        ('{"event": "silent", "id": 1.5}', "bad_envelope", None),
        ('{"event": "silent", "id": true}', "bad_envelope", None),
        ('{"event": "silent", "id": 9007199254740992}', "bad_envelope", None),
        ('{"event": "silent", "id": "' + "x" * 129 + '"}', "bad_envelope", None),
        ('{"event": "nope", "id": "u"}', "unknown_event", "u"),
        ('{"event": "error", "id": "r"}', "unknown_event", "r"),
        ('{"event": "add", "data": {"qty": 1}, "id": "v"}', "validation_error", "v"),
        ('{"event": "fail", "id": "f"}', "out_of_stock", "f"),
        ('{"event": "boom"}', "internal_error", None),
        ('{"event": "mapped", "id": 3}', "mapped", 3),
        ('{"event": "bad-reply", "id": "br"}', "internal_error", "br"),
        ('{"event": "push-invalid", "id": "pi"}', "internal_error", "pi"),
    ],
)
def test_bad_input_gets_one_error_frame_and_the_connection_stays_up(
    client: EventTestClient, frame: str, code: str, request_id: Any
) -> None:
    with client.connect("/items/north") as ws:
        ws.receive()
        ws.send_raw(frame)
        assert error(ws.receive()) == (code, request_id)
        assert ws.request("count", [1]) == {"n": 1}


def test_validation_error_details_carry_loc_msg_type_and_never_the_input(
    client: EventTestClient,
) -> None:
    with client.connect("/items/north") as ws:
        ws.receive()
        with pytest.raises(EventError) as caught:
            ws.request("add", {"name": "s3cr3t-value-too-long", "qty": "many"})
    assert caught.value.code == "validation_error"
    assert caught.value.details == [
        {
            "loc": ["name"],
            "msg": "String should have at most 10 characters",
            "type": "string_too_long",
        },
        {
            "loc": ["qty"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        },
    ]
    assert "s3cr3t" not in json.dumps(caught.value.details)


def test_unmapped_exception_is_internal_error_without_text_and_logged(
    client: EventTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with client.connect("/items/north") as ws:
        ws.receive()
        ws.send("boom", id="b")
        message = ws.receive()
    assert message == Message(
        "error", {"code": "internal_error", "message": "internal error", "details": None}, "b"
    )
    assert "secret detail" not in json.dumps(message.data)
    errors = [r.exc_info[1] for r in caplog.records if r.name == "wsevents" and r.exc_info]
    assert [type(exc) for exc in errors] == [Boom]


def test_a_backplane_that_did_not_answer_is_unavailable_and_logged_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    busy = Channel("/busy")

    @busy.on("read", reply=dict)
    async def read(conn: Connection) -> dict[str, Any]:
        raise BackplaneUnavailable("the backplane did not answer (ConnectionError())")

    app = EventApp([busy], title="Busy", version="1")
    with EventTestClient(app) as client, client.connect("/busy") as ws:
        ws.send("read", id="r")
        assert ws.receive() == Message(
            "error",
            {
                "code": "unavailable",
                "message": "the backplane did not answer; try again",
                "details": None,
            },
            "r",
        )
    logged = [r for r in caplog.records if r.name == "wsevents" and "read" in r.getMessage()]
    assert [(r.levelname, r.exc_info) for r in logged] == [("WARNING", None)]


def test_event_error_reaches_client_with_code_message_details(client: EventTestClient) -> None:
    with client.connect("/items/north") as ws:
        ws.receive()
        with pytest.raises(EventError) as caught:
            ws.request("fail")
    assert (caught.value.code, caught.value.message, caught.value.details) == (
        "out_of_stock",
        "no more apples",
        {"left": 0},
    )


def test_exception_handler_lookup_follows_the_class_hierarchy() -> None:
    app = make_app()

    class Special(Boom):
        pass

    @app.exception_handler(Boom)
    def on_boom(conn: Connection, exc: Boom) -> EventError:
        return EventError("boom", f"handled {type(exc).__name__}")

    assert app.registry.exception_handler_for(Special) is on_boom
    assert app.registry.exception_handler_for(ValueError) is None


def test_exception_handler_that_fails_or_returns_junk_gives_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()

    @app.exception_handler(Boom)
    def on_boom(conn: Connection, exc: Boom) -> EventError:
        raise RuntimeError("handler bug")

    @app.exception_handler(Mapped)
    def on_mapped(conn: Connection, exc: Mapped) -> Any:
        return "not an error"

    with EventTestClient(app) as client, client.connect("/items/north") as ws:
        ws.receive()
        ws.send("boom", id=1)
        ws.send("mapped", id=2)
        assert error(ws.receive()) == ("internal_error", 1)
        assert error(ws.receive()) == ("internal_error", 2)
    assert "returned 'not an error', not an EventError" in caplog.text


def test_exception_handler_must_be_given_an_exception_type(app: EventApp) -> None:
    with pytest.raises(RegistrationError, match="expected an Exception subclass"):
        app.exception_handler(42)  # type: ignore[arg-type]


def test_reject_in_on_connect_refuses_with_its_status(client: EventTestClient) -> None:
    with pytest.raises(Reject) as caught, client.connect("/items/north?token=bad"):
        pass
    assert (caught.value.status, caught.value.reason) == (401, "bad token")


def test_crashing_on_connect_refuses_with_500(
    client: EventTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(Reject) as caught, client.connect("/items/north?crash=1"):
        pass
    assert caught.value.status == 500
    assert "hook crashed" in caplog.text


def test_unknown_path_is_refused_with_404(client: EventTestClient) -> None:
    with pytest.raises(Reject) as caught, client.connect("/nowhere"):
        pass
    assert caught.value.status == 404


def test_path_parameters_are_converted(client: EventTestClient) -> None:
    with client.connect("/rooms/42") as ws:
        assert ws.request("room") == {"room": 42, "type": "int"}
    with pytest.raises(Reject) as caught, client.connect("/rooms/abc"):
        pass
    assert caught.value.status == 404


def test_connection_exposes_handshake_details(client: EventTestClient) -> None:
    headers = {"x-test": "yes", "cookie": "flavour=lemon"}
    with client.connect("/items/south", headers=headers) as ws:
        ws.receive()
        info = ws.request("whoami")
    assert info == {
        "params": {"shop": "south"},
        "header": "yes",
        "cookie": "lemon",
        "client": ["testclient", 50000],
        "subprotocol": None,
        "topics": ["shops/south"],
    }


def test_msgpack_is_negotiated_and_answered_in_binary(client: EventTestClient) -> None:
    with client.connect("/items/north", subprotocols=["other", "wsevents.msgpack"]) as ws:
        assert ws.subprotocol == "wsevents.msgpack"
        assert isinstance(ws.receive_raw(), bytes)
        ws.send_raw(msgpack.packb({"event": "count", "data": [1, 2], "id": 1}))
        assert msgpack.unpackb(ws.receive_raw()) == {"event": "count", "data": {"n": 2}, "id": 1}
        # A text frame still decodes as JSON; the answer stays in MessagePack.
        ws.send_raw(json.dumps({"event": "count", "data": [1], "id": 2}))
        assert msgpack.unpackb(ws.receive_raw()) == {"event": "count", "data": {"n": 1}, "id": 2}


def test_bad_msgpack_gets_bad_frame(client: EventTestClient) -> None:
    with client.connect("/items/north", subprotocols=["wsevents.msgpack"]) as ws:
        ws.receive()
        ws.send_raw(b"\xc1")
        assert error(ws.receive()) == ("bad_frame", None)
        ws.send_raw(msgpack.packb({"event": "count", "data": [], "id": 9}) + b"\x00")
        assert error(ws.receive()) == ("bad_frame", None)


def test_json_is_used_when_no_offered_subprotocol_is_known(client: EventTestClient) -> None:
    with client.connect("/items/north", subprotocols=["v2.other"]) as ws:
        assert ws.subprotocol is None
        assert isinstance(ws.receive_raw(), str)


def test_first_offered_known_subprotocol_wins(client: EventTestClient) -> None:
    offered = ["wsevents.json", "wsevents.msgpack"]
    with client.connect("/items/north", subprotocols=offered) as ws:
        assert ws.subprotocol == "wsevents.json"


def test_publish_reaches_every_subscriber_once_encoded_per_codec(
    client: EventTestClient,
) -> None:
    with (
        client.connect("/items/east") as a,
        client.connect("/items/east", subprotocols=["wsevents.msgpack"]) as b,
        client.connect("/items/west") as c,
    ):
        for ws in (a, b, c):
            ws.receive()
        a.request("add", {"name": "pear"})
        assert a.receive() == Message("added", {"name": "pear", "qty": 1})
        assert b.receive() == Message("added", {"name": "pear", "qty": 1})
        c.request("unsub", "shops/west")
        c.request("sub", "shops/east")
        b.request("add", {"name": "fig"})
        assert c.receive() == Message("added", {"name": "fig", "qty": 1})


async def _noop() -> None:
    return None


def test_publish_with_exclude_skips_those_connections(app: EventApp) -> None:
    with (
        EventTestClient(app) as client,
        client.connect("/items/a") as x,
        client.connect("/items/a") as y,
    ):
        x.receive()
        y.receive()
        x_id, _ = app.connections  # in the order they connected
        portal = client.http.portal
        assert portal is not None
        portal.call(partial(app.publish, "shops/a", "added", {"name": "kiwi"}, exclude=x_id))
        assert y.receive() == Message("added", {"name": "kiwi", "qty": 1})
        # The excluded one got nothing: its next frame is the reply to this request.
        assert x.request("count", []) == {"n": 0}


def test_send_to_reaches_one_connection_and_unknown_ids_are_dropped(app: EventApp) -> None:
    with EventTestClient(app) as client, client.connect("/items/a") as x:
        x.receive()
        (conn_id,) = app.connections
        portal = client.http.portal
        assert portal is not None
        portal.call(app.send_to, conn_id, "note", {"hello": 1})
        portal.call(app.send_to, "nobody", "note", {"hello": 2})
        assert x.receive() == Message("note", {"hello": 1})
        assert x.request("count", []) == {"n": 0}


def test_publish_invalid_data_raises_before_anyone_gets_it(app: EventApp) -> None:
    with EventTestClient(app) as client, client.connect("/items/a") as x:
        x.receive()
        portal = client.http.portal
        assert portal is not None
        with pytest.raises(PayloadError, match="event 'added'"):
            portal.call(app.publish, "shops/a", "added", {"name": 1})
        with pytest.raises(TopicError):
            portal.call(app.publish, "shops/+", "added", {"name": "x"})
        assert x.request("count", []) == {"n": 0}


def test_send_of_undeclared_event_goes_as_is(client: EventTestClient) -> None:
    with client.connect("/items/north") as ws:
        ws.receive()
        ws.send("push-undeclared", id=1)
        assert ws.receive() == Message("free-form", {"any": ["thing", 1]})
        assert ws.receive() == Message("push-undeclared", None, 1)


def test_subscription_limit_and_bad_topics_raise(client: EventTestClient) -> None:
    app = make_app(limits=Limits(max_subscriptions=1))
    with EventTestClient(app) as client, client.connect("/items/north") as ws:
        ws.receive()
        ws.send("sub", "another", id=1)  # one subscription is taken by on_connect
        assert error(ws.receive()) == ("internal_error", 1)
        ws.send("sub", "shops/north", id=2)  # already subscribed: not a new one
        assert ws.receive() == Message("sub", None, 2)


def test_handler_can_close_the_connection_and_disconnect_hook_gets_code(
    app: EventApp, client: EventTestClient
) -> None:
    with client.connect("/items/north") as ws:
        ws.receive()
        ws.send("close")
        with pytest.raises(WebSocketDisconnect) as caught:
            ws.receive()
        assert caught.value.code == 4000
        ws.close(1000)  # the client's answer to the close
        # Starlette's test session cancels the app when the block ends: wait for the hook.
        eventually(lambda: ("disconnect", "north", 1000) in app.state_log)  # type: ignore[attr-defined]


def test_client_close_runs_disconnect_hooks_app_first(app: EventApp) -> None:
    order: list[str] = []

    @app.on_disconnect
    def app_hook(conn: Connection, code: int) -> None:
        order.append(f"app {code}")

    @app.channels[0].on_disconnect
    async def channel_hook(code: int) -> None:
        order.append(f"channel {code}")

    with EventTestClient(app) as client, client.connect("/items/north") as ws:
        ws.receive()
        ws.close(4001)
        eventually(lambda: len(order) == 2)
    assert order == ["app 4001", "channel 4001"]
    assert ("disconnect", "north", 4001) in app.state_log  # type: ignore[attr-defined]


def test_app_on_connect_runs_before_channel_hook_and_can_reject(app: EventApp) -> None:
    seen: list[str] = []

    @app.on_connect
    async def auth(conn: Connection) -> None:
        seen.append(f"app {conn.channel.address}")
        if conn.headers.get("authorization") != "Bearer ok":
            raise Reject(401, "who are you")

    with EventTestClient(app) as client:
        with pytest.raises(Reject) as caught, client.connect("/items/n"):
            pass
        assert caught.value.status == 401
        with client.connect("/items/n", headers={"authorization": "Bearer ok"}) as ws:
            assert ws.receive() == Message("welcome", {"shop": "n"})
    assert seen == ["app /items/{shop}", "app /items/{shop}"]


def test_allowed_origins_refuse_foreign_browsers_and_allow_non_browsers() -> None:
    app = make_app(allowed_origins=["https://shop.example"])
    with EventTestClient(app) as client:
        with (
            pytest.raises(Reject) as caught,
            client.connect("/items/n", headers={"origin": "https://evil.example"}),
        ):
            pass
        assert caught.value.status == 403
        with client.connect("/items/n", headers={"origin": "https://SHOP.example"}) as ws:
            assert ws.receive().event == "welcome"
        with client.connect("/items/n") as ws:
            assert ws.receive().event == "welcome"


def test_oversized_frame_closes_with_1009() -> None:
    app = make_app(limits=Limits(max_message_bytes=64))
    with EventTestClient(app) as client, client.connect("/items/n") as ws:
        ws.receive()
        ws.send("raw", "é" * 40)  # 40 characters, 80 bytes
        with pytest.raises(WebSocketDisconnect) as caught:
            ws.receive()
    assert caught.value.code == 1009


def test_slow_consumer_with_full_queue_is_closed_with_1013(app: EventApp) -> None:
    app = make_app(limits=Limits(send_queue=2))
    with EventTestClient(app) as client, client.connect("/items/a") as x:
        x.receive()
        (conn_id,) = app.connections
        portal = client.http.portal
        assert portal is not None

        async def flood() -> None:
            for n in range(5):  # send_to queues without waiting: nothing yields to the writer
                await app.send_to(conn_id, "n", n)

        portal.call(flood)
        with pytest.raises(WebSocketDisconnect) as caught:
            x.receive()
    assert caught.value.code == 1013


def test_shutdown_closes_open_connections_with_1001_and_waits_for_them(app: EventApp) -> None:
    with EventTestClient(app) as client, client.connect("/items/n") as ws:
        ws.receive()
        portal = client.http.portal
        assert portal is not None
        shutdown = portal.start_task_soon(app.shutdown)
        with pytest.raises(WebSocketDisconnect) as caught:
            ws.receive()
        assert caught.value.code == 1001
        assert not shutdown.done()  # it waits for the connection to end
        ws.close(1001)
        shutdown.result(timeout=5)
        assert app.connections == {}
    assert ("disconnect", "n", 1001) in app.state_log  # type: ignore[attr-defined]


def test_first_connection_without_lifespan_warns_how_to_wire_it(
    app: EventApp, caplog: pytest.LogCaptureFixture
) -> None:
    client = EventTestClient(app)  # no `with`: no lifespan
    with caplog.at_level(logging.WARNING, "wsevents"), client.connect("/items/n") as ws:
        assert ws.receive().event == "welcome"
    assert "lifespan=events.lifespan" in caplog.text


def test_http_gets_404_or_426_on_a_channel_path(client: EventTestClient) -> None:
    assert client.http.get("/nothing").status_code == 404
    response = client.http.get("/items/x")
    assert (response.status_code, response.headers["upgrade"]) == (426, "websocket")


def test_mounted_under_a_prefix_with_root_path() -> None:
    events = make_app()
    host = Starlette(routes=[Mount("/ws", app=events)], lifespan=events.lifespan)
    with EventTestClient(host) as client:
        with client.connect("/ws/rooms/7") as ws:
            assert ws.request("room") == {"room": 7, "type": "int"}
        with pytest.raises(Reject) as caught, client.connect("/rooms/7"):
            pass
        assert caught.value.status == 403  # Starlette's own 404 for websockets is a close
    # Behind a proxy that strips nothing: ASGI paths include the root path.
    with EventTestClient(host, root_path="/api") as client, client.connect("/api/ws/rooms/8") as ws:
        assert ws.request("room") == {"room": 8, "type": "int"}


def test_events_queued_in_on_connect_arrive_first(client: EventTestClient) -> None:
    with client.connect("/items/first") as ws:
        assert ws.receive_raw() == '{"event":"welcome","data":{"shop":"first"}}'


def test_close_before_accept_is_refused() -> None:
    channel = Channel("/c")

    @channel.on_connect
    async def hook(conn: Connection) -> None:
        await conn.close()

    app = EventApp([channel], title="t", version="1")
    with EventTestClient(app) as client, pytest.raises(Reject) as caught, client.connect("/c"):
        pass
    assert caught.value.status == 500


def test_custom_codec_is_negotiated_and_used_both_ways() -> None:
    class ReversedJSON(Codec):
        subprotocol = "reversed.json"
        frame_type = "text"

        def encode(self, message: Any) -> str:
            return json.dumps(message)[::-1]

        def decode(self, payload: str | bytes) -> Any:
            assert isinstance(payload, str)
            return json.loads(payload[::-1])

    channel = Channel("/c")

    @channel.on("echo", reply=dict[str, int])
    async def echo(data: Any) -> Any:
        return data

    app = EventApp([channel], title="t", version="1", codecs=[ReversedJSON()])
    with EventTestClient(app) as client, client.connect("/c", subprotocols=["reversed.json"]) as ws:
        ws.send_raw(json.dumps({"event": "echo", "data": {"a": 1}, "id": 1})[::-1])
        assert json.loads(str(ws.receive_raw())[::-1]) == {
            "event": "echo",
            "data": {"a": 1},
            "id": 1,
        }
        ws.send_raw("not reversed json")
        frame = json.loads(str(ws.receive_raw())[::-1])
        assert frame["data"]["code"] == "bad_frame"


def test_event_app_refuses_bad_configuration() -> None:
    with pytest.raises(RegistrationError, match="two channels have the address"):
        EventApp([Channel("/a"), Channel("/a", name="other")], title="t", version="1")
    with pytest.raises(RegistrationError, match="two channels are named"):
        EventApp([Channel("/a", name="x"), Channel("/b", name="x")], title="t", version="1")
    with pytest.raises(RegistrationError, match="expected a Channel"):
        EventApp(["/a"], title="t", version="1")  # type: ignore[list-item]
    with pytest.raises(ValueError, match="unknown backplane url"):
        EventApp([], title="t", version="1", backplane="kafka://x")


def test_unknown_scope_type_raises() -> None:
    import anyio

    async def call() -> None:
        await make_app()({"type": "telepathy"}, _noop, _noop)  # type: ignore[arg-type]

    with pytest.raises(RuntimeError, match="Expected ASGI scope type"):
        anyio.run(call)


def test_the_app_serves_the_client_and_its_types() -> None:
    from examples.chat.app import app as chat_app

    with EventTestClient(chat_app) as client:
        script = client.http.get("/ws/wsevents.js")
        types = client.http.get("/ws/wsevents.d.ts")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "export function connect(" in script.text
    assert types.status_code == 200
    assert "export function connect(url: string" in types.text


def test_client_url_none_serves_no_client() -> None:
    app = EventApp([Channel("/c")], title="t", version="1", client_url=None)
    with EventTestClient(app) as client:
        assert client.http.get("/wsevents.js").status_code == 404


def test_a_value_returned_without_a_declared_reply_is_logged_once_per_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = Channel("/c")

    @channel.on("e")
    async def e(data: Any):  # type: ignore[no-untyped-def]
        return {"lost": True}  # no reply declared, no return annotation to read one from

    app = EventApp([channel], title="t", version="1")
    with EventTestClient(app) as client, client.connect("/c") as ws:
        assert ws.request("e", 1) is None
        assert ws.request("e", 2) is None
    told = [r.getMessage() for r in caplog.records if "declares no reply" in r.getMessage()]
    assert len(told) == 1
    assert "annotate its return (-> Model) or pass reply=" in told[0]


def test_an_app_needs_no_title_or_version_to_start() -> None:
    document = EventApp([Channel("/c")]).asyncapi()
    assert (document["info"]["title"], document["info"]["version"]) == ("WebSocket API", "0.1.0")


def test_refusals_are_kept_only_for_a_probe_and_only_so_many_for_so_long() -> None:
    from wsevents._handshake import RefusalLog

    log = RefusalLog(size=2, ttl=60.0)
    probe = {"subprotocols": ["wsevents.json", "wsevents-probe.0123456789abcdef0123"]}
    log.note({"subprotocols": ["wsevents.json"]}, 401, "not asked")
    log.note({"subprotocols": ["wsevents-probe.short"]}, 401, "a nonce too short to be one")
    log.note(probe, 403, "a user name is required")
    assert log.get("0123456789abcdef0123") == (403, "a user name is required")
    assert log.get("short") is None
    for n in range(2):
        log.note({"subprotocols": [f"wsevents-probe.{n:020d}"]}, 400, str(n))
    assert log.get("0123456789abcdef0123") is None  # the oldest went
    assert log.get(f"{1:020d}") == (400, "1")
    log.ttl = 0.0
    time.sleep(0.01)
    assert log.get(f"{1:020d}") is None  # too old


def test_a_refused_probe_is_read_back_over_http_and_an_unknown_one_is_404() -> None:
    channel = Channel("/c", query={"user": "who you are"})

    @channel.on_connect
    async def refuse(conn: Connection) -> None:
        raise Reject(401, "who are you")

    app = EventApp([channel])
    nonce = "f" * 32
    with EventTestClient(app) as client:
        with pytest.raises(Reject), client.connect("/c", subprotocols=[f"wsevents-probe.{nonce}"]):
            pass
        found = client.http.get(f"/docs/refusals/{nonce}")
        unknown = client.http.get("/docs/refusals/" + "0" * 32)
    assert (found.status_code, found.json()) == (200, {"status": 401, "reason": "who are you"})
    assert found.headers["cache-control"] == "no-store"
    assert unknown.status_code == 404
    query = app.asyncapi()["channels"]["c"]["bindings"]["ws"]["query"]["properties"]
    assert query["user"] == {"type": "string", "description": "who you are"}
    assert set(query) == {"user", "wsevents-session"}

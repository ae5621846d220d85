"""The servers `make bench` compares, side by side: each an ASGI app for uvicorn.

Echo: validate ``{text: str, n: int}`` and reply with the same ``id``.
Fan-out: on request, send ``count`` messages to every connection.
Ask: on request ``ask``, ask the client ``check`` (a server request with
``ask``), wait for its answer and reply with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, Literal

import msgpack
import msgspec
import socketio
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from wsevents import Channel, Connection, Depends, EventApp, History, Limits, Presence

Scope = dict[str, Any]


class Echo(BaseModel):
    text: str
    n: int


# -- raw ASGI: the baselines ------------------------------------------------------


async def raw_json(scope: Scope, receive: Any, send: Any) -> None:
    """Raw ASGI echo with the standard library's json, no validation."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await receive()
    await send({"type": "websocket.accept"})
    loads, dumps = json.loads, json.dumps
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return None
        frame = loads(message["text"])
        reply = {"event": frame["event"], "data": frame["data"], "id": frame["id"]}
        await send({"type": "websocket.send", "text": dumps(reply, separators=(",", ":"))})


async def raw_ask(scope: Scope, receive: Any, send: Any) -> None:
    """Raw ASGI: each request asks the client once and replies with its answer, no validation.

    One coroutine per connection reads the request, sends the question and
    reads on until the answer comes: the least a server request can cost.
    """
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await receive()
    await send({"type": "websocket.accept"})
    loads, dumps = json.loads, json.dumps
    asked = 0
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return None
        frame = loads(message["text"])
        asked += 1
        question = {"event": "check", "data": frame["data"], "ask": f"q{asked}"}
        await send({"type": "websocket.send", "text": dumps(question, separators=(",", ":"))})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return None
            answer = loads(message["text"])
            if answer.get("ask") == question["ask"]:
                break
        reply = {"event": frame["event"], "data": answer["data"], "id": frame["id"]}
        await send({"type": "websocket.send", "text": dumps(reply, separators=(",", ":"))})


async def raw_msgpack(scope: Scope, receive: Any, send: Any) -> None:
    """Raw ASGI echo in MessagePack, no validation."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await receive()
    await send({"type": "websocket.accept", "subprotocol": "wsevents.msgpack"})
    unpackb, packb = msgpack.unpackb, msgpack.packb
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return None
        frame = unpackb(message["bytes"])
        reply = {"event": frame["event"], "data": frame["data"], "id": frame["id"]}
        await send({"type": "websocket.send", "bytes": packb(reply)})


async def raw_msgpack_pydantic(scope: Scope, receive: Any, send: Any) -> None:
    """Raw ASGI echo in MessagePack that validates the data with pydantic, no routing."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await receive()
    await send({"type": "websocket.accept", "subprotocol": "wsevents.msgpack"})
    unpackb, pack = msgpack.unpackb, msgpack.Packer().pack
    validate = Echo.model_validate
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return None
        frame = unpackb(message["bytes"])
        data = validate(frame["data"]).model_dump()
        await send({"type": "websocket.send", "bytes": pack({**frame, "data": data})})


class EchoFrame(BaseModel):
    event: Literal["echo"]
    data: Echo
    id: int | str


async def raw_pydantic(scope: Scope, receive: Any, send: Any) -> None:
    """Raw ASGI echo that validates the whole frame in one pydantic-core pass."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await receive()
    await send({"type": "websocket.accept"})
    validate = EchoFrame.model_validate_json
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return None
        frame = validate(message["text"])
        await send({"type": "websocket.send", "text": frame.model_dump_json()})


class _Frame(msgspec.Struct):
    event: str
    data: dict[str, Any]
    id: int | str | None = None


async def _echo_handler(data: Echo) -> Echo:
    return data


async def bare_loop(scope: Scope, receive: Any, send: Any) -> None:
    """The steps of a framework's JSON echo and nothing else: the most any framework reaches.

    msgspec decodes the envelope, pydantic validates the data into the model,
    the handler is awaited, msgspec encodes the reply with the request's id
    (from the model's ``__dict__``, as wsevents does for a plain model). No
    routing, no checks on the input, no error answered: this is a floor for
    a framework's cost per frame, not a server anyone should run.
    """
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await receive()
    await send({"type": "websocket.accept"})
    decode = msgspec.json.Decoder(_Frame).decode
    encode = msgspec.json.Encoder().encode
    validate = Echo.__pydantic_validator__.validate_python
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return None
        frame = decode(message["text"])
        data = await _echo_handler(validate(frame.data))
        reply = {"event": frame.event, "data": data.__dict__, "id": frame.id}
        await send({"type": "websocket.send", "text": encode(reply).decode()})


class _TracedFrame(_Frame):
    traceparent: str | None = None


async def bare_loop_traced(scope: Scope, receive: Any, send: Any) -> None:
    """:func:`bare_loop` with one OpenTelemetry span per frame, as the SDK's docs make one.

    A child of the frame's ``traceparent``, current while the handler runs,
    exported as wsevents' are: the least an instrumented server pays per
    frame for the SDK's span, the floor for telemetry on.
    """
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    await receive()
    await send({"type": "websocket.accept"})
    tracer = _traced_options()["tracer_provider"].get_tracer("bare")
    extract = TraceContextTextMapPropagator().extract
    decode = msgspec.json.Decoder(_TracedFrame).decode
    encode = msgspec.json.Encoder().encode
    validate = Echo.__pydantic_validator__.validate_python
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return None
        frame = decode(message["text"])
        parent = extract({"traceparent": frame.traceparent} if frame.traceparent else {})
        with tracer.start_as_current_span(frame.event, context=parent, kind=SpanKind.SERVER):
            data = await _echo_handler(validate(frame.data))
            reply = {"event": frame.event, "data": data.__dict__, "id": frame.id}
            await send({"type": "websocket.send", "text": encode(reply).decode()})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


# -- raw in-process fan-out -------------------------------------------------------

_raw_members: set[Any] = set()


async def raw_fanout(scope: Scope, receive: Any, send: Any) -> None:
    """Raw ASGI fan-out to the connections made with ``?sub=1``, awaiting each send.

    ``burst`` ``{"count": N}`` sends N ticks to every member, in a loop; ``pub``
    ``{"n": .., "t": ..}`` sends one tick with that data, then replies with the
    request's ``id`` (a client event per publication, as apps publish).
    """
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await receive()
    await send({"type": "websocket.accept"})
    member = b"sub=1" in scope.get("query_string", b"")
    if member:
        _raw_members.add(send)
    dumps = json.dumps
    try:
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return None
            frame = json.loads(message["text"])
            if frame["event"] == "pub":
                text = dumps({"event": "tick", "data": frame["data"]}, separators=(",", ":"))
                for other in list(_raw_members):
                    await other({"type": "websocket.send", "text": text})
                reply = {"event": "pub", "data": None, "id": frame["id"]}
                await send({"type": "websocket.send", "text": dumps(reply, separators=(",", ":"))})
                continue
            for n in range(frame["data"]["count"]):
                tick = {"event": "tick", "data": {"n": n, "t": time.time()}}
                text = dumps(tick, separators=(",", ":"))
                for other in list(_raw_members):
                    await other({"type": "websocket.send", "text": text})
    finally:
        _raw_members.discard(send)


# -- Starlette + pydantic ---------------------------------------------------------


async def _starlette_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            frame = await websocket.receive_json()
            data = Echo.model_validate(frame["data"])
            await websocket.send_json(
                {"event": "echo", "data": data.model_dump(), "id": frame["id"]}
            )
    except WebSocketDisconnect:
        pass


starlette_pydantic = Starlette(routes=[WebSocketRoute("/", _starlette_echo)])


# -- python-socketio --------------------------------------------------------------

_sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=[])


@_sio.on("echo")  # type: ignore[untyped-decorator]
async def _sio_echo(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    return Echo.model_validate(data).model_dump()


@_sio.on("connect")  # type: ignore[untyped-decorator]
async def _sio_connect(sid: str, environ: dict[str, Any]) -> None:
    await _sio.enter_room(sid, "all")


@_sio.on("burst")  # type: ignore[untyped-decorator]
async def _sio_burst(sid: str, data: dict[str, Any]) -> None:
    for n in range(data["count"]):
        await _sio.emit("tick", {"n": n, "t": time.time()}, room="all")


python_socketio = socketio.ASGIApp(_sio)


# -- wsevents ---------------------------------------------------------------------

_bench = Channel("/")


@_bench.on_connect
async def _join(conn: Connection) -> None:
    if conn.query_params.get("sub"):
        await conn.subscribe("all")


@_bench.on("echo", model=Echo, reply=Echo)
async def _echo(data: Echo) -> Echo:
    return data


async def _caller(conn: Connection) -> str:
    return conn.id


@_bench.on("echo_depends", model=Echo, reply=Echo)
async def _echo_depends(data: Echo, caller: str = Depends(_caller)) -> Echo:
    """The echo with one dependency (cached per event): what Depends(...) adds to a handler."""
    return data


_bench.asks("check", model=Echo, reply=Echo)


@_bench.on("ask", model=Echo, reply=Echo)
async def _ask(conn: Connection, data: Echo) -> Echo:
    answer: Echo = await conn.request("check", data)
    return answer


@_bench.on("echo_once", model=Echo, reply=Echo, once=True)
async def _echo_once(data: Echo) -> Echo:
    return data


class Burst(BaseModel):
    count: int
    publishers: int = 1  # how many publish at once, each awaiting its own publications


class Tick(BaseModel):
    n: int
    t: float


@_bench.on("pub", model=Tick)
async def _pub(conn: Connection, data: Tick) -> None:
    """One publication per client event: the tick, with the client's data, to every subscriber."""
    await conn.app.publish("all", "tick", data)


@_bench.on("burst", model=Burst)
async def _burst(conn: Connection, data: Burst) -> None:
    async def publisher(first: int) -> None:
        for n in range(first, data.count, data.publishers):
            await conn.app.publish("all", "tick", {"n": n, "t": time.time()})

    await asyncio.gather(*(publisher(first) for first in range(data.publishers)))


class Probe(BaseModel):
    count: int


class Probed(BaseModel):
    publish_us: list[float]  # each confirmed publish, in the order made
    ping_us: list[float]  # each PING, made between them
    script_us: list[float]  # the history's script alone, called as a bare client calls it


_pinger: Any = None  # a client of the backplane's Redis, made at the first probe


@_bench.on("probe", model=Probe, reply=Probed)
async def _probe(conn: Connection, data: Probe) -> Probed:
    """``count`` publications to "all", one after the other, each awaited (on a history
    topic: confirmed by Redis), and as many PINGs of the same Redis from this process."""
    global _pinger
    if _pinger is None:
        import redis.asyncio as redis

        _pinger = redis.Redis.from_url(os.environ["WSEVENTS_BACKPLANE"])
    from wsevents.backplane._scripts import APPEND

    sha = await _pinger.script_load(APPEND)
    times: tuple[list[float], list[float], list[float]] = ([], [], [])
    # The arguments the backplane passes, on a topic of its own.
    args = [b"x" * 40, 1000, 300_000, "probe", "epoch123", 86_400, 61_000, "0", "p", "probe"]

    def call(which: int, n: int) -> Any:
        if which == 0:
            return conn.app.publish("all", "tick", {"n": n, "t": time.time()})
        if which == 1:
            return _pinger.ping()
        return _pinger.evalsha(sha, 3, "probe:meta", "probe:history", f"probe:result:{n}", *args)

    # In blocks of 20, each kind in turn first, second and third: they see the same
    # moments of the machine, and what one leaves behind (a publication's echo from
    # Redis, read after it returned) falls on the next block's first call only.
    for block in range(0, data.count, 20):
        for k in range(3):
            which = (block // 20 + k) % 3
            for n in range(block, min(block + 20, data.count)):
                started = time.perf_counter()
                await call(which, n)
                times[which].append((time.perf_counter() - started) * 1e6)
    return Probed(publish_us=times[0], ping_us=times[1], script_us=times[2])


# Many topics, for the Redis Cluster scenario (bench/shards.py): ``/topics?t=K``
# subscribes to ``t/K``; ``spread`` publishes ``count`` ticks over ``t/0`` .. ``t/{topics-1}``.
_topics = Channel("/topics")


@_topics.on_connect
async def _hold_topic(conn: Connection) -> None:
    await conn.subscribe(f"t/{conn.query_params.get('t', '0')}")


class Spread(BaseModel):
    count: int
    topics: int


@_topics.on("spread", model=Spread)
async def _spread(conn: Connection, data: Spread) -> None:
    for n in range(data.count):
        await conn.app.publish(f"t/{n % data.topics}", "tick", {"n": n, "t": time.time()})


_options: dict[str, Any] = {
    "version": "1",
    "limits": Limits(rate=None, send_queue=100_000),
    "backplane": os.environ.get("WSEVENTS_BACKPLANE", "memory://"),
    "metrics_url": "/metrics",  # the backplane's counters, read by bench/scale.py
}
wsevents_app = EventApp([_bench, _topics], title="Bench", **_options)


def _traced_options() -> dict[str, Any]:
    """Telemetry on, as an app in production has it: the SDK, batched spans, a meter."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    class Recent(InMemorySpanExporter):
        """The SDK's in-memory exporter, holding the last batches only, as a real exporter
        holds nothing once sent: an unbounded list would measure the garbage collector."""

        def export(self, spans: Any) -> Any:
            if len(self.get_finished_spans()) > 10_000:
                self.clear()
            return super().export(spans)

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Recent()))
    return {"tracer_provider": tracer_provider, "meter_provider": MeterProvider()}


# The same app with telemetry on (docs/telemetry.md): one span per frame.
wsevents_traced_app = EventApp(
    [_bench], title="Bench (telemetry)", telemetry=_traced_options(), **_options
)
# The same app, its topic "all" keeping history (docs/resumable-topics.md).
wsevents_history_app = EventApp(
    [_bench], title="Bench (history)", topics=[History("all", size=1000)], **_options
)

# Presence: every connection to /room is a member of "room" (docs/presence.md).
_room = Channel("/room")


@_room.on_connect
async def _member(conn: Connection) -> None:
    await conn.subscribe("room", presence={"u": conn.query_params.get("u", "")})


wsevents_presence_app = EventApp(
    [_room], title="Bench (presence)", topics=[Presence("room")], **_options
)
# The same without diffs: the members are kept and refreshed, nobody hears them change.
wsevents_presence_quiet_app = EventApp(
    [_room], title="Bench (presence, no diffs)", topics=[Presence("room", diffs=False)], **_options
)

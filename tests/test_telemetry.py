"""Telemetry (DESIGN.md section 13): the switch, the handshake's span, metrics from the counters.

A real uvicorn, the real Python client, and the OpenTelemetry SDK's in-memory
exporter and reader, passed to the app as its providers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import httpx2 as httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

from wsevents import (
    Channel,
    Connection,
    EventApp,
    EventError,
    History,
    Limits,
    RegistrationError,
    Reject,
)
from wsevents.backplane.redis import RedisBackplane
from wsevents.client import connect

from .conftest import RedisServer, serve

pytestmark = pytest.mark.anyio


def provider_with(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def run_python(code: str) -> str:
    """What ``code`` prints, run in a process of its own (the global providers are per process)."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.strip()


class Ping(BaseModel):
    n: int


class Traced:
    """An app with telemetry on, and what its providers collected."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.spans = InMemorySpanExporter()
        tracer_provider = provider_with(self.spans)
        self.reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[self.reader])
        room = Channel("/rooms/{room}")

        @room.on_connect
        async def check(conn: Connection) -> None:
            user = conn.query_params.get("user")
            if user is None:
                raise Reject(403, "who are you?")
            if user == "boom":
                raise RuntimeError("the hook failed")
            with tracer_provider.get_tracer("app").start_as_current_span("load user"):
                pass  # the app's own span, made in a hook

        @room.on("ping", model=Ping, reply=Ping)
        async def ping(data: Ping) -> Ping:
            if data.n < 0:
                raise EventError("negative", "n < 0")
            return data

        @room.on("whoami", reply=str)
        async def whoami(conn: Connection) -> str:
            return conn.id

        room.asks("sure", model=int, reply=bool)
        payments = itertools.count(1)

        @room.on("pay", once=True, reply=int)
        async def pay() -> int:
            return next(payments)

        @room.on("confirm", reply=bool)
        async def confirm(conn: Connection) -> bool:
            answer: bool = await conn.request("sure", 1, timeout=5)
            return answer

        @room.on("fail")
        async def fail() -> None:
            raise RuntimeError("s3cret detail")

        @room.on("work", reply=str)
        def work() -> str:  # sync: runs in a thread, its span current there too
            with tracer_provider.get_tracer("app").start_as_current_span("in thread"):
                return threading.current_thread().name

        self.app = EventApp(
            [room],
            limits=limits or Limits(),
            title="t",
            version="1",
            metrics_url="/metrics",
            telemetry={"tracer_provider": tracer_provider, "meter_provider": meter_provider},
        )

    def finished(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.name == name]

    def histograms(self, metric: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        return self.points(metric, value=lambda point: point)

    def points(
        self, metric: str, value: Callable[[Any], Any] = lambda point: point.value
    ) -> dict[tuple[tuple[str, Any], ...], Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        found: dict[tuple[tuple[str, Any], ...], Any] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                if scope.scope.name != "wsevents":
                    continue
                for item in scope.metrics:
                    if item.name == metric:
                        for point in item.data.data_points:
                            found[tuple(sorted(point.attributes.items()))] = value(point)
        return found


async def test_each_handshake_is_a_server_span_with_its_refusal_and_the_hook_spans_in_it() -> None:
    traced = Traced()
    with serve(traced.app) as address:
        base = f"ws://{address}/rooms/lobby"
        async with connect(f"{base}?user=ann&token=s3cr3t") as ann:
            connection_id = await ann.request("whoami")
        for query, status in (("", 403), ("?user=boom", 500)):
            with pytest.raises(Reject) as refused:
                async with connect(base + query, reconnect=False):
                    pass
            assert refused.value.status == status
        with pytest.raises(Reject):  # no channel: no span, a client could mint paths
            async with connect(f"ws://{address}/nowhere"):
                pass
    name = "wsevents connect /rooms/{room}"
    accepted, forbidden, failed = traced.finished(name)
    assert traced.spans.get_finished_spans()[-1].name == name  # nothing for /nowhere
    assert accepted.kind == SpanKind.SERVER
    assert dict(accepted.attributes or {}) == {
        "messaging.system": "wsevents",
        "wsevents.channel": "/rooms/{room}",
        "wsevents.connection.id": connection_id,
    }
    assert accepted.status.status_code == StatusCode.UNSET
    (hooked,) = traced.finished("load user")
    assert hooked.parent is not None
    assert hooked.parent.span_id == accepted.context.span_id  # the hook ran in the span
    assert (forbidden.attributes or {})["http.response.status_code"] == 403
    assert forbidden.status.status_code == StatusCode.UNSET  # a client's fault, not ours
    assert (failed.attributes or {})["http.response.status_code"] == 500
    assert failed.status.status_code == StatusCode.ERROR
    assert not failed.events  # no exception text recorded
    for span in traced.spans.get_finished_spans():
        assert "s3cr3t" not in repr(dict(span.attributes or {}))


async def test_metrics_read_the_same_counts_as_the_prometheus_endpoint() -> None:
    traced = Traced()
    with serve(traced.app) as address:
        async with connect(f"ws://{address}/rooms/lobby?user=ann") as ann:
            await ann.request("ping", {"n": 1})
            await ann.request("ping", {"n": 2})
            for bad in ({"n": "x"}, {"n": -1}):
                with pytest.raises(EventError):
                    await ann.request("ping", bad)
            open_now = traced.points("wsevents.connections")
            text = httpx.get(f"http://{address}/metrics").text
    events = traced.points("wsevents.events")
    channel = ("wsevents.channel", "/rooms/{room}")
    assert events == {
        (channel, ("wsevents.event", "ping"), ("wsevents.outcome", "ok")): 2,
        (channel, ("wsevents.event", "ping"), ("wsevents.outcome", "validation_error")): 1,
        (channel, ("wsevents.event", "ping"), ("wsevents.outcome", "negative")): 1,
    }
    assert open_now == {(): 1}
    assert traced.points("wsevents.slow_consumers") == {(): 0}
    assert traced.points("wsevents.backplane.publish.failures") == {(): 0}
    assert traced.points("wsevents.connections") == {(): 0}  # the client left
    assert 'wsevents_events_total{event="ping",outcome="ok"} 2' in text
    assert 'wsevents_events_total{event="ping",outcome="validation_error"} 1' in text
    assert "wsevents_connections_open 1" in text


def test_with_telemetry_off_nothing_of_opentelemetry_is_imported() -> None:
    code = (
        "import sys\n"
        "from wsevents import Channel, EventApp\n"
        "from wsevents.testing import EventTestClient\n"
        "app = EventApp([Channel('/c')])\n"
        "with EventTestClient(app) as client, client.connect('/c'):\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    printed = run_python(code)
    assert printed == "[]"


def test_telemetry_takes_true_false_or_the_providers() -> None:
    from wsevents.testing import EventTestClient

    app = EventApp([Channel("/c")], telemetry=True)  # the global providers: no SDK, no-ops
    with EventTestClient(app) as client, client.connect("/c"):
        pass
    assert app.stats()["connections_total"] == 1
    with pytest.raises(RegistrationError, match="tracer_provider and meter_provider"):
        EventApp([Channel("/c")], telemetry={"exporter": object()})
    with pytest.raises(RegistrationError, match="True, False or a mapping"):
        EventApp([Channel("/c")], telemetry="yes")  # type: ignore[arg-type]


def test_the_document_describes_trace_context_on_every_client_message() -> None:
    from examples.orders.app import events as orders_events

    document = orders_events.asyncapi()
    messages = document["components"]["messages"]
    traced, untraced = [], []
    for operation in document["operations"].values():
        for ref in operation["messages"]:
            channel, key = ref["$ref"].removeprefix("#/channels/").split("/messages/")
            component = document["channels"][channel]["messages"][key]["$ref"].rsplit("/", 1)[1]
            properties = messages[component]["payload"]["properties"]
            client_sends = operation["action"] == "receive" or "ask" in properties
            (traced if "traceparent" in properties else untraced).append(client_sends)
            if "traceparent" in properties:
                assert properties["tracestate"] == {
                    "$ref": "#/components/schemas/wsevents.TraceState"
                }
    assert traced
    assert all(traced)
    assert untraced
    assert not any(untraced)
    pattern = document["components"]["schemas"]["wsevents.TraceParent"]["pattern"]
    assert re.fullmatch(pattern, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert not re.fullmatch(pattern, "00-xyz-00f067aa0ba902b7-01")


def test_a_frame_with_trace_context_is_answered_as_any_other_and_a_malformed_one_too() -> None:
    from wsevents.testing import EventTestClient

    traced = Traced()
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with (
        EventTestClient(traced.app, check_frames=True) as client,
        client.connect("/rooms/lobby?user=ann") as ws,
    ):
        ws.send_raw(json.dumps({"event": "ping", "data": {"n": 1}, "id": 1, "traceparent": good}))
        assert json.loads(ws.receive_raw()) == {"event": "ping", "data": {"n": 1}, "id": 1}
    with (
        EventTestClient(traced.app) as client,
        client.connect("/rooms/lobby?user=ann") as ws,
    ):
        frame = {"event": "ping", "data": {"n": 2}, "id": 2, "traceparent": "garbage"}
        ws.send_raw(json.dumps(frame))
        assert json.loads(ws.receive_raw()) == {"event": "ping", "data": {"n": 2}, "id": 2}


async def test_the_python_client_sends_the_current_trace_context_in_its_frames() -> None:
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as websockets_serve

    frames: list[dict[str, Any]] = []
    three = asyncio.Event()

    async def echo(ws: ServerConnection) -> None:
        async for payload in ws:
            frame = json.loads(payload)
            frames.append(frame)
            if len(frames) == 3:
                three.set()
            if "id" in frame:
                await ws.send(
                    json.dumps({"event": frame["event"], "data": None, "id": frame["id"]})
                )

    exporter = InMemorySpanExporter()
    tracer = provider_with(exporter).get_tracer("app")
    async with websockets_serve(echo, "127.0.0.1", 0, subprotocols=["wsevents.json"]) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/c") as client:
            await client.request("outside")  # no span is current: nothing to carry
            with tracer.start_as_current_span("click") as span:
                await client.request("inside")
                await client.send("also inside")
            await asyncio.wait_for(three.wait(), 5)
    context = span.get_span_context()
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    outside, inside, also = frames
    assert "traceparent" not in outside
    assert inside["traceparent"] == expected
    assert also["traceparent"] == expected
    assert (inside["event"], inside["id"]) == ("inside", 2)


async def test_each_event_is_a_server_span_child_of_the_frames_trace_context() -> None:
    from websockets.asyncio.client import connect as raw_connect

    traced = Traced()
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    frames = [
        {"event": "ping", "data": {"n": 1}, "id": 1, "traceparent": parent, "tracestate": "k=v"},
        {"event": "ping", "data": {"n": 2}, "id": 2, "traceparent": "00-garbage-01"},
        {"event": "ping", "data": {"n": "x"}, "id": 3},  # the client's bad input
        {"event": "ping", "data": {"n": -1}, "id": 4},  # an EventError the handler raised
        {"event": "nope", "data": {}, "id": 5},  # unknown: no span (a client could mint names)
        {"event": "fail", "id": 6, "traceparent": parent},  # the server's fault
        {"event": "work", "id": 7},
    ]
    with serve(traced.app) as address:
        url = f"ws://{address}/rooms/lobby?user=ann&token=s3cr3t"
        async with raw_connect(url, subprotocols=["wsevents.json"]) as ws:  # type: ignore[list-item]
            answers = []
            for frame in frames:
                await ws.send(json.dumps(frame))
                answers.append(json.loads(await ws.recv()))
    assert [answer["id"] for answer in answers] == [1, 2, 3, 4, 5, 6, 7]
    assert answers[1]["data"] == {"n": 2}  # a malformed traceparent changes nothing
    spans = [span for span in traced.spans.get_finished_spans() if span.name != "load user"]
    names = [span.name for span in spans if not span.name.startswith("wsevents connect")]
    assert names == ["wsevents ping"] * 4 + ["wsevents fail", "in thread", "wsevents work"]
    good, malformed, invalid, negative, failed = (
        span for span in spans if span.name in ("wsevents ping", "wsevents fail")
    )
    assert good.kind == SpanKind.SERVER
    assert good.parent is not None
    assert (good.context.trace_id, good.parent.span_id) == (
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
    )
    assert good.parent.is_remote
    assert dict(good.context.trace_state) == {"k": "v"}
    attributes = dict(good.attributes or {})
    assert attributes.pop("wsevents.connection.id").startswith(traced.app.node_id)
    assert attributes == {
        "messaging.system": "wsevents",
        "wsevents.channel": "/rooms/{room}",
        "wsevents.event": "ping",
        "wsevents.request.id": "1",
    }
    assert malformed.parent is None  # ignored: the span starts a trace
    assert malformed.context.trace_id != good.context.trace_id
    assert malformed.status.status_code == StatusCode.UNSET
    for span, code in ((invalid, "validation_error"), (negative, "negative")):
        assert (span.attributes or {})["wsevents.error.code"] == code
        assert span.status.status_code == StatusCode.UNSET  # a client's fault, not ours
    assert failed.status.status_code == StatusCode.ERROR
    assert (failed.attributes or {})["wsevents.error.code"] == "internal_error"
    assert (failed.attributes or {})["error.type"] == "RuntimeError"
    assert [(event.name, dict(event.attributes or {})) for event in failed.events] == [
        ("exception", {"exception.type": "RuntimeError"})
    ]
    assert failed.status.description is None
    thread_span, work_span = spans[-2:]
    assert thread_span.parent is not None
    assert thread_span.parent.span_id == work_span.context.span_id  # current in the thread
    for span in spans:
        text = repr((dict(span.attributes or {}), span.events, span.status.description))
        assert "s3cr3t" not in text
        assert "s3cret" not in text
    durations = traced.histograms("wsevents.handler.duration")
    ping = (("wsevents.channel", "/rooms/{room}"), ("wsevents.event", "ping"))
    assert durations[ping].count == 4
    assert durations[ping].sum > 0


async def test_a_rate_limited_frame_gets_its_event_span_with_the_code() -> None:
    traced = Traced(Limits(rate=1.0, burst=5))
    with serve(traced.app) as address:
        async with connect(f"ws://{address}/rooms/lobby?user=ann") as ann:
            codes = []
            for n in range(8):
                try:
                    await ann.request("ping", {"n": n})
                    codes.append("ok")
                except EventError as error:
                    codes.append(error.code)
    assert "rate_limited" in codes
    spans = traced.finished("wsevents ping")
    assert len(spans) == 8
    assert [(span.attributes or {}).get("wsevents.error.code", "ok") for span in spans] == codes
    assert all(span.status.status_code == StatusCode.UNSET for span in spans)


async def test_the_python_clients_request_and_the_servers_handler_share_one_trace() -> None:
    traced = Traced()
    exporter = InMemorySpanExporter()
    client_provider = provider_with(exporter)
    with serve(traced.app) as address:
        async with connect(f"ws://{address}/rooms/lobby?user=ann") as ann:
            with client_provider.get_tracer("app").start_as_current_span("click") as click:
                assert await ann.request("ping", {"n": 3}) == {"n": 3}
    (handled,) = traced.finished("wsevents ping")
    assert handled.context.trace_id == click.get_span_context().trace_id
    assert handled.parent is not None
    assert handled.parent.span_id == click.get_span_context().span_id


@pytest.mark.parametrize(
    ("telemetry", "expected"), [(False, []), (True, ["wsevents connect /c", "wsevents ping"])]
)
def test_spans_are_made_with_telemetry_on_and_none_with_it_off(
    telemetry: bool, expected: list[str]
) -> None:
    """With the SDK's provider set globally, as an app sets it: a process of its own."""
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import "
        "InMemorySpanExporter\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
        "from wsevents import Channel, EventApp\n"
        "from wsevents.testing import EventTestClient\n"
        "c = Channel('/c')\n"
        "@c.on('ping', reply=int)\n"
        "async def ping(data: int) -> int:\n"
        "    return data\n"
        f"app = EventApp([c], telemetry={telemetry})\n"
        "with EventTestClient(app) as client, client.connect('/c') as ws:\n"
        '    ws.send_raw(\'{"event": "ping", "data": 1, "id": 1, "traceparent": '
        '"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}\')\n'
        '    assert ws.receive_raw() == \'{"event":"ping","data":1,"id":1}\'\n'
        "print(sorted(span.name for span in exporter.get_finished_spans()))\n"
    )
    printed = run_python(code)
    assert printed == repr(expected)


class Said(BaseModel):
    text: str


def relay_app(
    redis_url: str, provider: TracerProvider, meter_provider: MeterProvider | None = None
) -> EventApp:
    """A chat channel through Redis: ``say`` publishes to the room, plain or kept."""
    chat = Channel("/chat/{room}")

    @chat.on_connect
    async def join(conn: Connection, room: str) -> None:
        await conn.subscribe(f"rooms/{room}")
        await conn.subscribe(f"kept/{room}")

    @chat.on("say", model=Said)
    async def say(conn: Connection, data: Said, room: str) -> None:
        await conn.publish(f"rooms/{room}", "said", {"text": data.text})

    chat.asks("sure", reply=bool)

    @chat.on("ask_peer", model=str, reply=bool)
    async def ask_peer(conn: Connection, data: str) -> bool:
        answer: bool = await app.request(data, "sure", timeout=5)
        return answer

    @chat.on("whoami", reply=str)
    async def whoami(conn: Connection) -> str:
        return conn.id

    @chat.on("keep", model=Said)
    async def keep(conn: Connection, data: Said, room: str) -> None:
        await conn.publish(f"kept/{room}", "said", {"text": data.text})

    app = EventApp(
        [chat],
        backplane=RedisBackplane(redis_url),
        topics=[History("kept/+")],
        telemetry={"tracer_provider": provider, "meter_provider": meter_provider},
    )
    return app


async def test_a_publish_in_one_process_and_its_delivery_in_another_are_linked(
    redis_server: RedisServer,
) -> None:
    here, there = InMemorySpanExporter(), InMemorySpanExporter()
    reader = InMemoryMetricReader()
    app_here = relay_app(
        redis_server.url, provider_with(here), MeterProvider(metric_readers=[reader])
    )
    app_there = relay_app(redis_server.url, provider_with(there))
    with serve(app_here) as address_here, serve(app_there) as address_there:
        async with (
            connect(f"ws://{address_here}/chat/a") as ann,
            connect(f"ws://{address_there}/chat/a") as bob,
            connect(f"ws://{address_there}/chat/a") as cat,
        ):
            said = [asyncio.Queue[Any]() for _ in range(2)]
            bob.on("said", said[0].put)
            cat.on("said", said[1].put)
            bob.answer("sure", lambda data: True)
            await ann.request("say", {"text": "hi"})
            await ann.request("keep", {"text": "kept"})
            # A server request of a connection another process holds: asked there.
            assert await ann.request("ask_peer", await bob.request("whoami")) is True
            for queue in said:
                assert (await asyncio.wait_for(queue.get(), 5))["text"] == "hi"
                assert (await asyncio.wait_for(queue.get(), 5))["text"] == "kept"
            epoch = bob.positions["kept/a"].epoch
        # A replay of the kept publication: delivered again, but no delivery span.
        dan = connect(f"ws://{address_there}/chat/a", resume={"kept/a": (epoch, 0)})
        replayed = asyncio.Queue[Any]()
        dan.on("said", replayed.put)
        async with dan:
            assert (await asyncio.wait_for(replayed.get(), 5))["text"] == "kept"
    spans_here = here.get_finished_spans()
    spans_there = there.get_finished_spans()
    say_span = next(span for span in spans_here if span.name == "wsevents say")
    publishes = [span for span in spans_here if span.name == "wsevents publish"]
    assert [(span.attributes or {})["wsevents.topic"] for span in publishes] == [
        "rooms/a",
        "kept/a",
    ]
    plain, kept = publishes
    assert plain.kind == SpanKind.PRODUCER
    assert plain.parent is not None
    assert plain.parent.span_id == say_span.context.span_id  # made in the handler
    local = [span for span in spans_here if span.name == "wsevents deliver"]
    remote = [span for span in spans_there if span.name == "wsevents deliver"]
    assert len(local) == 2  # ann, here, heard both
    assert len(remote) == 2  # one span per process and publication, never per recipient
    for producer, delivered in zip(publishes, remote, strict=True):
        assert delivered.kind == SpanKind.CONSUMER
        assert delivered.context.trace_id == producer.context.trace_id
        assert delivered.parent is not None
        assert delivered.parent.span_id == producer.context.span_id
        assert [link.context.span_id for link in delivered.links] == [producer.context.span_id]
        assert (delivered.attributes or {})["wsevents.recipients"] == 2  # bob and cat
    assert [(span.attributes or {})["wsevents.recipients"] for span in local] == [1, 1]
    assert kept.status.status_code == StatusCode.UNSET
    (asked_there,) = [span for span in spans_there if span.name == "wsevents ask sure"]
    (ask_peer,) = [span for span in spans_here if span.name == "wsevents ask_peer"]
    assert asked_there.kind == SpanKind.CLIENT
    assert asked_there.parent is not None
    assert asked_there.parent.span_id == ask_peer.context.span_id  # one trace, two processes
    metrics = {
        item.name: item.data.data_points
        for resource in (reader.get_metrics_data() or MetricsData([])).resource_metrics
        for scope in resource.scope_metrics
        for item in scope.metrics
    }
    assert [point.value for point in metrics["wsevents.publications"]] == [2]
    assert [point.value for point in metrics["wsevents.deliveries"]] == [2]  # ann, twice
    (round_trips,) = metrics["wsevents.backplane.publish.duration"]
    assert round_trips.count >= 1  # the plain publication went out in a pipeline
    assert round_trips.sum > 0


async def test_a_server_request_is_a_client_span_whose_context_the_ask_frame_carries() -> None:
    from websockets.asyncio.client import connect as raw_connect

    traced = Traced()
    with serve(traced.app) as address:
        url = f"ws://{address}/rooms/lobby?user=ann"
        async with raw_connect(url, subprotocols=["wsevents.json"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"event": "confirm", "id": 1}))
            asked = json.loads(await ws.recv())
            await ws.send(json.dumps({"event": "sure", "data": True, "ask": asked["ask"]}))
            assert json.loads(await ws.recv()) == {"event": "confirm", "data": True, "id": 1}
    (ask,) = traced.finished("wsevents ask sure")
    (handler,) = traced.finished("wsevents confirm")
    assert ask.kind == SpanKind.CLIENT
    assert ask.parent is not None
    assert ask.parent.span_id == handler.context.span_id  # asked in the handler
    context = ask.context
    flags = f"{context.trace_flags:02x}"
    assert asked["traceparent"] == f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags}"
    assert (ask.attributes or {})["wsevents.outcome"] == "answered"
    assert ask.status.status_code == StatusCode.UNSET


async def test_a_once_requests_span_says_whether_its_answer_was_computed_or_kept() -> None:
    from websockets.asyncio.client import connect as raw_connect

    traced = Traced()
    with serve(traced.app) as address:
        url = f"ws://{address}/rooms/lobby?user=ann&wsevents-session=abcdefghijklmnop1234"
        answers = []
        for _ in range(2):  # the same request, sent again (on a new socket, as after a drop)
            async with raw_connect(url, subprotocols=["wsevents.json"]) as ws:  # type: ignore[list-item]
                await ws.send(json.dumps({"event": "pay", "id": "p1"}))
                answers.append(json.loads(await ws.recv()))
    assert answers == [{"event": "pay", "data": 1, "id": "p1"}] * 2  # ran once
    spans = traced.finished("wsevents pay")
    assert [(span.attributes or {})["wsevents.once.answer"] for span in spans] == [
        "computed",
        "kept",
    ]


def test_a_traceparent_is_read_as_the_w3c_propagator_reads_it() -> None:
    """The fast reading of a version 00 traceparent gives what the API's propagator gives."""
    import random

    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from wsevents._telemetry import parent_of

    propagator = TraceContextTextMapPropagator()
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    rng = random.Random(13)
    alphabet = "0123456789abcdefABF- xz_+"
    cases = [
        good,
        good.upper(),
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",
        "ff" + good[2:],
        "01" + good[2:] + "-extra",
        " " + good,
        good + "-",
        "",
    ]
    for _ in range(5000):
        text = list(good)
        for _ in range(rng.randint(1, 3)):
            text[rng.randrange(len(text))] = rng.choice(alphabet)
        cases.append("".join(text))
    read = 0
    for traceparent in cases:
        for tracestate in (None, "k=v", "bad state!"):
            carrier = {"traceparent": traceparent}
            if tracestate is not None:
                carrier["tracestate"] = tracestate
            expected = propagator.extract(carrier, context=Context())
            got = parent_of(traceparent, tracestate)
            wanted = trace.get_current_span(expected).get_span_context()
            assert trace.get_current_span(got).get_span_context() == wanted, carrier
            read += wanted.is_valid
    assert read > 1000  # valid ones were among them

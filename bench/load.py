"""The load generator: picows clients that keep requests in flight and check every reply.

Run by bench/run.py in a process pinned to its own core, one scenario per
call; prints one JSON line with the results.

    python bench/load.py echo URL --connections 50 --window 10 --seconds 5 [--msgpack]
    python bench/load.py echo URL --event ask ...  (answers each server request ``check``)
    python bench/load.py socketio URL --connections 50 --window 10 --seconds 5
    python bench/load.py fanout URL --connections 1000 --count 50 [--socketio]
    python bench/load.py trigger URL --publish-url URL2 --connections 1000 --triggers 4 --seconds 3
    python bench/load.py idle URL --connections 1000 --hold 3 [--sources 8]
    python bench/load.py storm URL --connections 10000 --sources 8
    python bench/load.py cluster URL ... --holders 8 --connections 8000 --count 5
    python bench/load.py presence URL --connections 5000 --churn 50 --seconds 10 [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import msgpack
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

TEXT = "hello, world"


class Stats:
    def __init__(self) -> None:
        self.latencies: list[int] = []  # ns
        self.replies = 0
        self.bad = 0
        self.running = True


class Requester(WSListener):
    """Keeps ``window`` echo requests in flight; times and checks every reply."""

    def __init__(self, stats: Stats, window: int, base: int) -> None:
        self.stats, self.window = stats, window
        self.next_id = base
        self.sent: dict[int, int] = {}

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def start(self) -> None:
        for _ in range(self.window):
            self._send()

    def _send(self) -> None:
        n = self.next_id
        self.next_id += 1
        self.sent[n] = time.perf_counter_ns()
        self.request(n)

    def request(self, n: int) -> None:
        """Send request ``n``."""
        raise NotImplementedError

    def answered(self, n: Any, correct: bool) -> None:
        """Record the answer to request ``n``, then keep the window full."""
        started = self.sent.pop(n, None)
        stats = self.stats
        if started is None or not correct:
            stats.bad += 1
        else:
            stats.latencies.append(time.perf_counter_ns() - started)
            stats.replies += 1
        if stats.running:
            self._send()


class EchoClient(Requester):
    """The wsevents envelope, in JSON or MessagePack."""

    def __init__(
        self,
        stats: Stats,
        window: int,
        binary: bool,
        base: int,
        event: str = "echo",
        traced: bool = False,
    ) -> None:
        super().__init__(stats, window, base)
        self.encode: Callable[[Any], Any] = msgpack.packb if binary else _json_bytes
        self.decode: Callable[[bytes], Any] = msgpack.unpackb if binary else json.loads
        self.kind = WSMsgType.BINARY if binary else WSMsgType.TEXT
        self.event = event
        self.traced = traced

    def request(self, n: int) -> None:
        frame = {"event": self.event, "data": {"text": TEXT, "n": n}, "id": n}
        if self.traced:  # a browser's click, as OpenTelemetry JS would carry it
            frame["traceparent"] = f"00-{n + 1:032x}-{n + 1:016x}-01"
        self.transport.send(self.kind, self.encode(frame))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return
        reply = self.decode(frame.get_payload_as_bytes())
        ask = reply.get("ask")
        if ask is not None:  # a server request: answer with its data
            answer = {"event": reply["event"], "data": reply["data"], "ask": ask}
            self.transport.send(self.kind, self.encode(answer))
            return
        n = reply.get("id")
        expected = {"text": TEXT, "n": n}
        self.answered(n, reply["event"] == self.event and reply.get("data") == expected)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def source(n: int, sources: int) -> dict[str, Any]:
    """``local_addr`` for connection ``n``: spread over 127.0.0.2 and up, past the port range.

    One source address reaches one server port about 28,000 times (the
    ephemeral ports); loopback answers on all of 127.0.0.0/8.
    """
    if sources <= 1:
        return {}
    return {"local_addr": (f"127.0.0.{2 + n % sources}", 0)}


async def connect_many(
    factory: Callable[[int], WSListener], urls: list[str], count: int, sources: int
) -> list[Any]:
    """Open ``count`` connections, 200 handshakes at a time, round-robin over ``urls``."""
    slots = asyncio.Semaphore(200)

    async def one(n: int) -> Any:
        async with slots:
            _, client = await ws_connect(
                lambda: factory(n), urls[n % len(urls)], **source(n, sources)
            )
            ready = getattr(client, "ready", None)
            if ready is not None:
                await ready
            return client

    return list(await asyncio.gather(*(one(n) for n in range(count))))


class SocketIOClient(Requester):
    """The same echo over Engine.IO/Socket.IO frames, spoken directly: ``42N["echo",{...}]``."""

    def __init__(self, stats: Stats, window: int, base: int) -> None:
        super().__init__(stats, window, base)
        self.ready = asyncio.get_running_loop().create_future()

    def request(self, n: int) -> None:
        payload = json.dumps(["echo", {"text": TEXT, "n": n}], separators=(",", ":"))
        self.transport.send(WSMsgType.TEXT, f"42{n}{payload}".encode())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        text = frame.get_payload_as_utf8_text()
        if text.startswith("0"):  # Engine.IO open: join the default namespace
            transport.send(WSMsgType.TEXT, b"40")
        elif text.startswith("40"):
            if not self.ready.done():
                self.ready.set_result(None)
        elif text == "2":  # Engine.IO ping
            transport.send(WSMsgType.TEXT, b"3")
        elif text.startswith("43"):
            body = text.index("[")
            n = int(text[2:body])
            self.answered(n, json.loads(text[body:]) == [{"text": TEXT, "n": n}])


async def echo(args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    clients: list[Any] = []
    url = args.url
    headers = {"Sec-WebSocket-Protocol": "wsevents.msgpack"} if args.msgpack else None
    for c in range(args.connections):
        base = c * 10**7  # ids are unique across connections
        if args.command == "socketio":
            _, client = await ws_connect(
                lambda base=base: SocketIOClient(stats, args.window, base), url
            )
            await client.ready
        else:
            _, client = await ws_connect(
                lambda base=base: EchoClient(
                    stats, args.window, args.msgpack, base, args.event, args.traced
                ),
                url,
                extra_headers=headers,
            )
        clients.append(client)
    for client in clients:  # warm up
        client.start()
    await asyncio.sleep(min(1.0, args.seconds / 5))
    stats.latencies.clear()
    stats.replies = 0
    started = time.perf_counter()
    await asyncio.sleep(args.seconds)
    elapsed = time.perf_counter() - started
    replies = stats.replies
    latencies = sorted(stats.latencies)
    stats.running = False
    await asyncio.sleep(0.2)
    for client in clients:
        client.transport.disconnect()
    return {
        "messages_per_second": replies / elapsed,
        "p50_ms": latencies[len(latencies) // 2] / 1e6 if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99)] / 1e6 if latencies else None,
        "bad_replies": stats.bad,
    }


class Subscriber(WSListener):
    def __init__(
        self,
        counter: list[int],
        socketio_protocol: bool,
        delays: list[float],
        done: Done | None = None,
    ) -> None:
        self.counter = counter
        self.delays = delays
        self.done = done
        self.socketio = socketio_protocol
        self.ready = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if not self.socketio:
            self.ready.set_result(None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        if self.socketio:
            text = frame.get_payload_as_utf8_text()
            if text.startswith("0"):
                transport.send(WSMsgType.TEXT, b"40")
                return
            if text.startswith("40"):
                self.ready.set_result(None)
                return
            if text == "2":
                transport.send(WSMsgType.TEXT, b"3")
                return
            data = json.loads(text[text.index("[") :])[1]
        else:
            message = json.loads(frame.get_payload_as_bytes())
            if message["event"] != "tick":  # wsevents.subscribed, on a history topic
                return
            data = message["data"]
        self.delays.append(time.time() - data["t"])
        self.counter[0] += 1
        done = self.done
        if done is not None and done.expected and self.counter[0] >= done.expected:
            done.at = time.perf_counter()
            done.set()


class Done(asyncio.Event):
    """Set when the counter reaches ``expected``; ``at`` is when."""

    expected = 0
    at = 0.0


async def fanout(args: argparse.Namespace) -> dict[str, Any]:
    done = Done()
    counter = [0]
    delays: list[float] = []
    subscribers = []
    urls = [args.url, args.url2] if args.url2 else [args.url]  # half on each server
    subscribers = await connect_many(
        lambda n: Subscriber(counter, args.socketio, delays, done),
        urls,
        args.connections,
        args.sources,
    )
    await asyncio.sleep(0.5)
    if args.wait:  # the caller reads the server's counters, then says go
        print(json.dumps({"connected": len(subscribers)}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    counter[0] = 0
    delays.clear()
    expected = args.connections * args.count
    trigger = subscribers[0].transport
    started = time.perf_counter()
    if args.socketio:
        trigger.send(WSMsgType.TEXT, f'42["burst",{{"count":{args.count}}}]'.encode())
    else:
        frame = {"event": "burst", "data": {"count": args.count, "publishers": args.publishers}}
        trigger.send(WSMsgType.TEXT, _json_bytes(frame))
    done.expected = expected
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(done.wait(), 120)
    elapsed = done.at - started if done.is_set() else time.perf_counter() - started
    for client in subscribers:
        client.transport.disconnect()
    delays.sort()
    return {
        "deliveries_per_second": counter[0] / elapsed,
        "delivered": counter[0],
        "expected": expected,
        "p50_ms": delays[len(delays) // 2] * 1000 if delays else None,
        "p99_ms": delays[int(len(delays) * 0.99)] * 1000 if delays else None,
    }


class Trigger(Requester):
    """Publishes through the server: each request is one client event, one publication."""

    def request(self, n: int) -> None:
        frame = {"event": "pub", "data": {"n": n, "t": time.time()}, "id": n}
        self.transport.send(WSMsgType.TEXT, _json_bytes(frame))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        reply = json.loads(frame.get_payload_as_bytes())
        self.answered(reply.get("id"), reply.get("event") == "pub" and "error" not in reply)


async def trigger(args: argparse.Namespace) -> dict[str, Any]:
    """Clients trigger the publications: ``triggers`` connections, each one event in flight.

    Every publication answered must reach every subscriber; the rate and the
    latencies (from the client's event to each delivery) are those of the
    ``seconds`` after a warm-up.
    """
    counter = [0]
    delays: list[float] = []
    subscribers = []
    for _ in range(args.connections):
        _, client = await ws_connect(lambda: Subscriber(counter, False, delays), args.url)
        subscribers.append(client)
    stats = Stats()
    triggers = []
    for t in range(args.triggers):
        _, client = await ws_connect(
            lambda base=t * 10**8: Trigger(stats, args.window, base), args.publish_url
        )
        triggers.append(client)
    await asyncio.sleep(0.5)
    for client in triggers:
        client.start()
    await asyncio.sleep(min(1.0, args.seconds / 3))  # warm up
    delivered, published = counter[0], stats.replies
    delays.clear()
    started = time.perf_counter()
    await asyncio.sleep(args.seconds)
    elapsed = time.perf_counter() - started
    delivered, published = counter[0] - delivered, stats.replies - published
    latencies = sorted(delays)
    stats.running = False
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline and (  # noqa: ASYNC110 - counters, no event
        any(client.sent for client in triggers) or counter[0] < stats.replies * args.connections
    ):
        await asyncio.sleep(0.05)
    total = counter[0]
    for client in subscribers + triggers:
        client.transport.disconnect()
    return {
        "deliveries_per_second": delivered / elapsed,
        "publications_per_second": published / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None,
        "delivered": total,
        "expected": stats.replies * args.connections,
        "bad_replies": stats.bad,
    }


async def idle(args: argparse.Namespace) -> dict[str, Any]:
    counter = [0]
    clients = await connect_many(
        lambda n: Subscriber(counter, False, []), [args.url], args.connections, args.sources
    )
    print(json.dumps({"connected": len(clients)}), flush=True)
    await asyncio.sleep(args.hold)
    for client in clients:
        client.transport.disconnect()
    return {"connections": len(clients)}


class Returning(WSListener):
    """A client that connects again when its connection drops, as browsers' clients do.

    Backoff as ``wsevents.client``'s: 0.05 s doubling to 1 s, with full jitter.
    """

    def __init__(self, storm: Storm, n: int) -> None:
        self.storm, self.n = storm, n

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        storm = self.storm
        if storm.reconnecting:
            storm.dropped += 1
            storm.first_drop = storm.first_drop or time.perf_counter()
            storm.tasks.add(asyncio.get_running_loop().create_task(storm.reconnect(self.n)))


class Storm:
    """Everyone's reconnections after the server went away."""

    def __init__(self, url: str, sources: int) -> None:
        self.url, self.sources = url, sources
        self.reconnecting = False
        self.dropped = self.back = self.attempts = 0
        self.first_drop = self.first_back = self.last_back = 0.0
        self.tasks: set[asyncio.Task[None]] = set()
        self.clients: dict[int, Any] = {}

    async def reconnect(self, n: int) -> None:
        delay = 0.05
        while True:
            await asyncio.sleep(random.uniform(0, delay))
            self.attempts += 1
            try:
                _, client = await ws_connect(
                    lambda: Returning(self, n), self.url, **source(n, self.sources)
                )
            except (OSError, asyncio.TimeoutError, RuntimeError, ValueError):
                delay = min(delay * 2, 1.0)
                continue
            self.clients[n] = client
            now = time.perf_counter()
            self.first_back = self.first_back or now
            self.last_back = now
            self.back += 1
            return


async def storm(args: argparse.Namespace) -> dict[str, Any]:
    """Hold ``connections``; print when connected; after the server restarts, time them back."""
    state = Storm(args.url, args.sources)
    clients = await connect_many(
        lambda n: Returning(state, n), [args.url], args.connections, args.sources
    )
    state.clients = dict(enumerate(clients))
    state.reconnecting = True
    print(json.dumps({"connected": len(clients)}), flush=True)
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline and (  # noqa: ASYNC110 - counters, no event
        state.dropped < args.connections or state.back < args.connections
    ):
        await asyncio.sleep(0.05)
    state.reconnecting = False
    for client in state.clients.values():
        if client is not None:
            client.transport.disconnect()
    back = state.back
    spread = state.last_back - state.first_back
    return {
        "connections": args.connections,
        "dropped": state.dropped,
        "back": back,
        "attempts": state.attempts,
        "seconds_until_all_back": state.last_back - state.first_drop if back else None,
        # The same instants by the wall clock, comparable across load generators.
        "first_drop_at": time.time() - (time.perf_counter() - state.first_drop),
        "last_back_at": time.time() - (time.perf_counter() - state.last_back),
        "handshakes_per_second": back / spread if back and spread else None,
        "delivered": back,
        "expected": args.connections,
    }


async def cluster(args: argparse.Namespace) -> dict[str, Any]:
    """Subscribers spread over the first ``holders`` servers; every server publishes a burst.

    Prints ``{"connected": n}`` and waits for a line on stdin before the
    bursts, so that the caller can read the servers' counters around them.
    """
    urls = args.url.split(",")
    counters = [[0] for _ in urls]
    delays: list[float] = []
    holders = urls[: args.holders]
    subscribers = await connect_many(
        lambda n: Subscriber(counters[n % len(holders)], False, delays),
        [f"{url}?sub=1" for url in holders],
        args.connections,
        args.sources,
    )
    publishers = [(await ws_connect(lambda: Subscriber([0], False, []), url))[1] for url in urls]
    burst = {"event": "burst", "data": {"count": args.count}}
    expected = len(urls) * args.count * args.connections
    return await _bursts(counters, delays, subscribers, publishers, burst, expected)


async def share(args: argparse.Namespace) -> dict[str, Any]:
    """One of several load generators in a burst (bench/spread.py): ``connections``
    subscribers of ``url``; the one started with ``--trigger`` asks for the burst.

    Prints ``{"connected": n}`` and waits for a line; after the burst, prints its
    counts (wall-clock times, comparable across the generators) and waits for
    another line before it disconnects, so that the caller reads the servers'
    CPU time around the burst alone.
    """
    counter = [0]
    delays: list[float] = []
    done = Done()
    subscribers = await connect_many(
        lambda n: Subscriber(counter, False, delays, done),
        [f"{args.url}?sub=1"],
        args.connections,
        args.sources,
    )
    await asyncio.sleep(0.5)
    print(json.dumps({"connected": len(subscribers)}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    counter[0] = 0
    delays.clear()
    done.expected = expected = args.connections * args.count
    sent_at = time.time()
    if args.trigger:
        frame = {"event": "burst", "data": {"count": args.count, "publishers": 1}}
        subscribers[0].transport.send(WSMsgType.TEXT, _json_bytes(frame))
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(done.wait(), 120)
    last_at = time.time() - (time.perf_counter() - done.at) if done.is_set() else time.time()
    delays.sort()
    print(
        json.dumps(
            {
                "delivered": counter[0],
                "expected": expected,
                "sent_at": sent_at,
                "last_at": last_at,
                "delays": delays[:: max(1, len(delays) // 2000)],  # a sample, in order
            }
        ),
        flush=True,
    )
    await loop.run_in_executor(None, sys.stdin.readline)
    for client in subscribers:
        client.transport.disconnect()
    return {"connections": len(subscribers)}


async def topics(args: argparse.Namespace) -> dict[str, Any]:
    """Subscribers spread over every server and ``--topics`` topics; each server publishes
    ``--count`` publications over the topics, round-robin.

    Subscriber ``n`` holds topic ``(n // servers) % topics``, so each topic has a
    subscriber on every server (while there are enough). Prints
    ``{"connected": n}`` and waits for a line on stdin before the publications.
    """
    urls = args.url.split(",")
    counters = [[0] for _ in urls]
    delays: list[float] = []
    subscribers = await connect_many(
        lambda n: Subscriber(counters[n % len(urls)], False, delays),
        [  # one URL per connection: connect_many takes the n-th for the n-th
            f"{urls[n % len(urls)]}topics?t={(n // len(urls)) % args.topics}"
            for n in range(args.connections)
        ],
        args.connections,
        args.sources,
    )
    publishers = [
        (await ws_connect(lambda: Subscriber([0], False, []), f"{url}topics?t=none"))[1]
        for url in urls
    ]
    spread = {"event": "spread", "data": {"count": args.count, "topics": args.topics}}
    # Each publication reaches the subscribers of its topic: connections / topics of them.
    expected = len(urls) * args.count * (args.connections // args.topics)
    return await _bursts(counters, delays, subscribers, publishers, spread, expected)


async def _bursts(
    counters: list[list[int]],
    delays: list[float],
    subscribers: list[Any],
    publishers: list[Any],
    frame: dict[str, Any],
    expected: int,
) -> dict[str, Any]:
    """Say connected, wait for a line, send ``frame`` to every publisher, count deliveries."""
    await asyncio.sleep(0.5)
    print(json.dumps({"connected": len(subscribers)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    delays.clear()
    started = time.perf_counter()
    for client in publishers:
        client.transport.send(WSMsgType.TEXT, _json_bytes(frame))
    deadline = started + 120
    while sum(c[0] for c in counters) < expected and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    for client in subscribers + publishers:
        client.transport.disconnect()
    delays.sort()
    return {
        "deliveries_per_second": sum(c[0] for c in counters) / elapsed,
        "per_process": [c[0] / elapsed for c in counters],
        "delivered_per_process": [c[0] for c in counters],
        "publications": len(publishers) * frame["data"]["count"],
        "p50_ms": delays[len(delays) // 2] * 1000 if delays else None,
        "p99_ms": delays[int(len(delays) * 0.99)] * 1000 if delays else None,
        "delivered": sum(c[0] for c in counters),
        "expected": expected,
    }


class Tally:
    """Presence frames and bytes some members got; ``all_in``: each of ``expected`` got one."""

    def __init__(self, expected: int) -> None:
        self.frames = self.bytes = self.firsts = 0
        self.expected = expected
        self.all_in = asyncio.Event()


class Member(WSListener):
    """A member of the room: counts the presence frames and bytes it gets."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.first = True

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        tally = self.tally
        tally.frames += 1
        tally.bytes += len(frame.get_payload_as_bytes())
        if self.first:  # every member then in the room
            self.first = False
            tally.firsts += 1
            if tally.firsts == tally.expected:
                tally.all_in.set()


def _redis_commands(url: str | None) -> int:
    if url is None:
        return 0
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


async def presence(args: argparse.Namespace) -> dict[str, Any]:
    """``connections`` members stay; ``churn`` a second join and as many leave, for ``seconds``."""
    tally = Tally(args.connections)
    quiet = Tally(0)  # the churners' own, not counted
    members = []
    for n in range(args.connections):
        _, client = await ws_connect(lambda: Member(tally), f"{args.url}?u=m{n}")
        members.append(client)
    churners: list[Any] = []
    for n in range(args.churn):  # the churn's steady state: as many in as go out
        _, client = await ws_connect(lambda: Member(quiet), f"{args.url}?u=c{n}")
        churners.append(client)
    if args.diffs:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(tally.all_in.wait(), 120)
    await asyncio.sleep(1.5)  # the last first frames, and the joins above, go out
    frames, sent, commands = tally.frames, tally.bytes, _redis_commands(args.redis)
    started = time.perf_counter()
    joins = 0
    while time.perf_counter() < started + args.seconds:
        _, client = await ws_connect(lambda: Member(quiet), f"{args.url}?u=c{args.churn + joins}")
        churners.append(client)
        churners.pop(0).transport.disconnect()
        joins += 1
        await asyncio.sleep(max(0.0, started + joins / args.churn - time.perf_counter()))
    elapsed = time.perf_counter() - started
    frames, sent = tally.frames - frames, tally.bytes - sent
    commands = _redis_commands(args.redis) - commands
    for client in members + churners:
        client.transport.disconnect()
    return {
        "members": args.connections,
        "first_frames": tally.firsts,
        "joins_per_second": joins / elapsed,
        "diff_frames_per_second": frames / elapsed,
        "bytes_per_subscriber_per_second": sent / elapsed / args.connections,
        "redis_commands_per_second": commands / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "command",
        choices=[
            "echo",
            "socketio",
            "fanout",
            "trigger",
            "idle",
            "storm",
            "cluster",
            "presence",
            "topics",
            "share",
        ],
    )
    parser.add_argument("url")
    parser.add_argument("--url2", help="a second server for half the fan-out subscribers")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--window", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--publishers", type=int, default=1, help="fanout: publishing at once")
    parser.add_argument("--publish-url", help="trigger: where the publishing clients connect")
    parser.add_argument("--triggers", type=int, default=4, help="trigger: publishing clients")
    parser.add_argument("--sources", type=int, default=1, help="loopback addresses to connect from")
    parser.add_argument("--holders", type=int, default=1, help="cluster: servers with subscribers")
    parser.add_argument("--topics", type=int, default=1000, help="topics: how many")
    parser.add_argument("--wait", action="store_true", help="fanout: print, wait for a line")
    parser.add_argument("--hold", type=float, default=3)
    parser.add_argument("--trigger", action="store_true", help="share: ask for the burst")
    parser.add_argument(
        "--churn", type=int, default=50, help="presence: joins (and leaves) a second"
    )
    parser.add_argument("--diffs", action="store_true", help="presence: members get first frames")
    parser.add_argument("--redis", help="presence: count this Redis's commands")
    parser.add_argument("--msgpack", action="store_true")
    parser.add_argument("--event", default="echo", help="echo: the event each request sends")
    parser.add_argument("--traced", action="store_true", help="echo: frames carry traceparent")
    parser.add_argument("--socketio", action="store_true")
    args = parser.parse_args()
    run = {
        "echo": echo,
        "socketio": echo,
        "fanout": fanout,
        "trigger": trigger,
        "idle": idle,
        "storm": storm,
        "cluster": cluster,
        "presence": presence,
        "topics": topics,
        "share": share,
    }[args.command]
    result = uvloop.run(run(args))
    print(json.dumps(result), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

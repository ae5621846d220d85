"""`make soak`: faults and load against a real uvicorn and a real Redis, on loopback.

About three minutes, bounded in count and time:

1. baseline: 1,000 connections in one room; talkers say something 4 times a
   second (4,000 deliveries a second); 20 probes ping every 100 ms;
2. abuse: the same, plus 12 kinds of malformed frames (850 of each), a client
   that never reads (fed by a firehose), a client that floods, and Redis
   killed with SIGKILL and restarted 3 times.

It prints a table (and writes it to bench/results/soak.json): frames sent,
answers by kind, close codes seen, the probes' p99 latency in each phase,
server memory before and after, and messages lost by healthy clients.
Exits 1 if a target is missed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import RedisServer, free_port  # noqa: E402 - after the path is set

CONNECTIONS = 1000
PROBES = 20
TALK_RATE = 4.0  # says per second, each delivered to every connection
BASELINE_SECONDS = 35.0
ABUSE_SECONDS = 80.0
MALFORMED_EACH = 850
REDIS_CYCLES = 3

MALFORMED: dict[str, str | bytes] = {
    "invalid JSON": "{nope",
    "not an object": "[1, 2]",
    "no event": '{"data": 1, "id": "x"}',
    "event not a string": '{"event": 5, "id": "y"}',
    "bad id": '{"event": "ping", "data": {"n": 1}, "id": 1.5}',
    "unknown event": '{"event": "nope", "id": "u"}',
    "invalid data": '{"event": "ping", "data": {"n": "x"}, "id": "v"}',
    "NaN": '{"event": "ping", "data": {"n": NaN}}',
    "nesting 65 deep": "[" * 65 + "]" * 65,
    "lone surrogate": '{"event": "ping", "data": {"n": "\\ud800"}}',
    "repeated key": '{"event": "ping", "event": "ping"}',
    "MessagePack extension": msgpack.packb({"event": "ping", "data": msgpack.ExtType(7, b"x")}),
}


class Healthy:
    """Every healthy connection: counts the room's messages."""

    def __init__(self) -> None:
        self.heard: Counter[str] = Counter()
        self.errors = 0
        self.closed: list[int] = []

    async def listen(self, ws: ClientConnection) -> None:
        try:
            async for text in ws:
                frame = json.loads(text)
                if frame["event"] == "said":
                    self.heard[frame["data"]["text"]] += 1
                elif frame["event"] == "error":
                    self.errors += 1
        except ConnectionClosed as exc:
            self.closed.append(exc.rcvd.code if exc.rcvd else 1006)


async def probe(ws: ClientConnection, until: float, rtts: list[float]) -> None:
    n = 0
    while time.monotonic() < until:
        n += 1
        started = time.perf_counter()
        await ws.send(json.dumps({"event": "ping", "data": {"n": n}, "id": n}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame.get("id") == n:
                break
        rtts.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.1)


async def talk(ws: ClientConnection, until: float, said: list[str], prefix: str) -> None:
    n = 0
    while time.monotonic() < until:
        text = f"{prefix}{n}"
        said.append(text)
        await ws.send(json.dumps({"event": "say", "data": {"text": text}}))
        n += 1
        await asyncio.sleep(1 / TALK_RATE)


async def abuse(
    url: str, kind: str, frame: str | bytes, until: float, answers: Counter[str]
) -> None:
    async with connect(url) as ws:

        async def read() -> None:
            async for message in ws:
                decoded = json.loads(message)
                if decoded["event"] == "error":
                    answers[decoded["data"]["code"]] += 1

        reader = asyncio.ensure_future(read())
        interval = (until - time.monotonic()) / MALFORMED_EACH
        for _ in range(MALFORMED_EACH):
            await ws.send(frame)
            await asyncio.sleep(interval)
        await asyncio.sleep(1)
        reader.cancel()


async def flood(url: str, closes: Counter[int], answers: Counter[str]) -> None:
    async with connect(url) as ws:
        try:
            for n in range(20_000):
                await ws.send(json.dumps({"event": "ping", "data": {"n": n}, "id": n}))
                if n % 50 == 0:
                    while True:  # read what came, without waiting
                        try:
                            frame = json.loads(await asyncio.wait_for(ws.recv(), 0.001))
                        except asyncio.TimeoutError:
                            break
                        if frame["event"] == "error":
                            answers[frame["data"]["code"]] += 1
            await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed as exc:
            closes[exc.rcvd.code if exc.rcvd else 1006] += 1


def never_reading(port: int) -> socket.socket:
    """Complete a handshake, subscribe to the firehose, and never read again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /room?sub=firehose HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    return sock


async def pour(url: str, until: float) -> None:
    """Feed the firehose at 80 frames of 8 KB a second: under the rate limit."""
    async with connect(url + "?sub=nothing") as ws:
        while time.monotonic() < until:
            await ws.send(json.dumps({"event": "pour", "data": {"text": "x" * 8000}}))
            await asyncio.sleep(1 / 80)


async def metrics(port: int) -> dict[str, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = (await reader.read()).split(b"\r\n\r\n", 1)[1].decode()
    writer.close()
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else float("nan")


async def run(server_port: int, server: psutil.Process, redis: RedisServer) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{server_port}/room"
    healthy = Healthy()
    clients = []
    for _ in range(CONNECTIONS):
        clients.append(await connect(url, max_queue=None))
    listeners = [asyncio.ensure_future(healthy.listen(ws)) for ws in clients[PROBES:]]
    probes = clients[:PROBES]
    talkers = clients[PROBES : PROBES + 4]
    await asyncio.sleep(1)
    memory_before = server.memory_info().rss

    said: list[str] = []
    baseline_rtts: list[float] = []
    until = time.monotonic() + BASELINE_SECONDS
    await asyncio.gather(
        *(probe(ws, until, baseline_rtts) for ws in probes),
        *(talk(ws, until, said, f"b{i}-") for i, ws in enumerate(talkers)),
    )

    answers: Counter[str] = Counter()
    closes: Counter[int] = Counter()
    abuse_rtts: list[float] = []
    until = time.monotonic() + ABUSE_SECONDS
    stuck = never_reading(server_port)
    stuck_since = time.monotonic()

    async def watch_stuck() -> float | None:
        while time.monotonic() < until:
            values = await metrics(server_port)
            if values.get("wsevents_slow_consumers_dropped_total", 0) >= 1:
                return time.monotonic() - stuck_since
            await asyncio.sleep(0.1)
        return None

    async def cycle_redis() -> int:
        for _ in range(REDIS_CYCLES):
            await asyncio.sleep(ABUSE_SECONDS / (REDIS_CYCLES + 1) - 2)
            redis.kill()
            await asyncio.sleep(2)
            redis.start()
        return REDIS_CYCLES

    results = await asyncio.gather(
        *(probe(ws, until, abuse_rtts) for ws in probes),
        *(talk(ws, until, said, f"a{i}-") for i, ws in enumerate(talkers)),
        *(abuse(url, kind, frame, until - 5, answers) for kind, frame in MALFORMED.items()),
        flood(url, closes, answers),
        pour(url, until - 10),
        watch_stuck(),
        cycle_redis(),
    )
    stuck_closed_after = results[-2]
    stuck.close()
    await asyncio.sleep(3)  # let the last says arrive
    for ws in clients:
        await ws.close()
    await asyncio.gather(*listeners, return_exceptions=True)
    await asyncio.sleep(1)
    memory_after = server.memory_info().rss
    expected = len(said) * (CONNECTIONS - PROBES)
    received = sum(min(healthy.heard[text], CONNECTIONS - PROBES) for text in said)
    final = await metrics(server_port)
    return {
        "connections": CONNECTIONS,
        "frames_sent": {
            "says (each to every connection)": len(said),
            "pings from probes": len(baseline_rtts) + len(abuse_rtts),
            "malformed": MALFORMED_EACH * len(MALFORMED),
        },
        "answers_by_kind": dict(answers),
        "close_codes_seen": {
            **{f"flood client {code}": n for code, n in closes.items()},
            "healthy clients closed by the server": healthy.closed.count(1013)
            + healthy.closed.count(1008),
        },
        "slow_client_closed_with_1013_after_s": stuck_closed_after,
        "probe_p99_ms": {"baseline": p99(baseline_rtts), "with abuse": p99(abuse_rtts)},
        "server_memory_mb": {"before": memory_before / 2**20, "after": memory_after / 2**20},
        "messages_lost_by_healthy_clients": expected - received,
        "healthy_clients_error_frames": healthy.errors,
        "redis_cycles": REDIS_CYCLES,
        "backplane": {
            "reconnects": final.get("wsevents_backplane_reconnects_total", 0),
            "publish_failures": final.get("wsevents_backplane_publish_failures_total", 0),
        },
    }


def table(report: dict[str, Any]) -> str:
    rows = []
    for key, value in report.items():
        if isinstance(value, dict):
            for inner, item in value.items():
                rows.append((f"{key}: {inner}", item))
        else:
            rows.append((key, value))
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'measure'.ljust(width)} | value |", f"| {'-' * width} | ----- |"]
    for name, value in rows:
        text = f"{value:.2f}" if isinstance(value, float) else str(value)
        lines.append(f"| {name.ljust(width)} | {text} |")
    return "\n".join(lines)


def main() -> int:
    redis = RedisServer(Path("/tmp"))
    redis.start()
    port = free_port()
    log = ROOT / "bench" / "results" / "soak-server.log"
    log.parent.mkdir(exist_ok=True)
    env = {**os.environ, "WSEVENTS_BACKPLANE": redis.url, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.soak_app:app", "--port", str(port),
             "--log-level", "warning", "--ws", "websockets-sansio"],
            cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        report = asyncio.run(run(port, psutil.Process(process.pid), redis))
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
        redis.kill()
    server_log = log.read_text()
    report["server_tracebacks"] = server_log.count("Traceback")
    print(table(report))
    (ROOT / "bench" / "results" / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    p99s = report["probe_p99_ms"]
    missed = [
        name
        for name, ok in {
            "zero messages lost": report["messages_lost_by_healthy_clients"] == 0,
            "no crash": report["server_tracebacks"] == 0,
            "p99 under 2x baseline": p99s["with abuse"] < 2 * p99s["baseline"],
            "slow client closed": report["slow_client_closed_with_1013_after_s"] is not None,
            "memory growth under 20 MB": report["server_memory_mb"]["after"]
            - report["server_memory_mb"]["before"]
            < 20,
        }.items()
        if not ok
    ]
    print("targets missed: " + ", ".join(missed) if missed else "every target met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

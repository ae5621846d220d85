"""`make bench`: wsevents against side-by-side baselines, three repetitions.

Every server runs in uvicorn (websockets-sansio, uvloop) pinned to core 0;
the load generator (bench/load.py, picows) is pinned to core 1. Each figure
is a ratio to the raw ASGI baseline measured in the same repetition; the
table shows the median and the min-max of the three, and the raw numbers go
to bench/results/bench.json.

    python bench/run.py [--repetitions 3] [--seconds 3] [--quick] [--only SCENARIO ...]

``--only "echo JSON, C=50 W=10" --repetitions 10`` runs one scenario more
times (written to bench/results/bench-only.json, with no targets: they need
every scenario). ``--telemetry`` runs the telemetry scenario alone, with its
targets, into bench/results/bench-telemetry.json (docs/telemetry.md shows it).
``--cluster`` runs bench/shards.py: four processes on a Redis Cluster of three
shards against the same on one Redis (docs/performance.md shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.targets import DEPENDS, TARGETS_HEADER, TRACED, targets, telemetry_rows  # noqa: E402
from tests.conftest import RedisServer, free_port  # noqa: E402

SIO = "/socket.io/?EIO=4&transport=websocket"
ECHO_SERVERS = {  # name: (app, path, load command, event)
    "raw ASGI (json)": ("raw_json", "/", "echo", "echo"),
    "raw ASGI + pydantic-core one pass": ("raw_pydantic", "/", "echo", "echo"),
    "bare loop: msgspec + pydantic, no framework": ("bare_loop", "/", "echo", "echo"),
    "Starlette + pydantic": ("starlette_pydantic", "/", "echo", "echo"),
    "python-socketio": ("python_socketio", SIO, "socketio", "echo"),
    "wsevents": ("wsevents_app", "/", "echo", "echo"),
    DEPENDS: ("wsevents_app", "/", "echo", "echo_depends"),
}
MSGPACK_SERVERS = {
    "raw ASGI (msgpack)": ("raw_msgpack", "/"),
    "raw ASGI (msgpack) + pydantic": ("raw_msgpack_pydantic", "/"),
    "wsevents (msgpack)": ("wsevents_app", "/"),
}
FANOUT_SERVERS = {
    "raw in-process fan-out": ("raw_fanout", "/?sub=1", False),
    "python-socketio rooms": ("python_socketio", SIO, True),
    "wsevents publish": ("wsevents_app", "/?sub=1", False),
}


class Server:
    """uvicorn with one app, pinned to core 0."""

    def __init__(self, app: str, env: dict[str, str] | None = None, port: int = 0) -> None:
        self.port = port or free_port()
        command = [
            "taskset", "-c", "0", sys.executable, "-m", "uvicorn", f"bench.servers:{app}",
            "--port", str(self.port), "--ws", "websockets-sansio", "--loop", "uvloop",
            "--log-level", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL
        )
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{app} did not start")

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def load(*args: str) -> dict[str, Any]:
    """Run bench/load.py pinned to core 1; return its last JSON line."""
    command = ["taskset", "-c", "1", sys.executable, str(ROOT / "bench" / "load.py"), *args]
    output = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def echo_round(seconds: float, connections: int, window: int) -> dict[str, Any]:
    results = {}
    for name, (app, path, command, event) in ECHO_SERVERS.items():
        server = Server(app)
        try:
            results[name] = load(
                command, server.url(path), "--connections", str(connections),
                "--window", str(window), "--seconds", str(seconds), "--event", event,
            )  # fmt: skip
        finally:
            server.stop()
    return results


# Telemetry (docs/telemetry.md): the same echo, off, then on with the SDK.
TRACED_SERVERS = {  # name: (app, load options)
    "wsevents, telemetry off": ("wsevents_app", ()),
    "bare loop + one OpenTelemetry span per frame": ("bare_loop_traced", ("--traced",)),
    "wsevents, telemetry off, frames with traceparent": ("wsevents_app", ("--traced",)),
    "wsevents, telemetry on (SDK, BatchSpanProcessor), frames with traceparent": (
        "wsevents_traced_app",
        ("--traced",),
    ),
    "wsevents, telemetry on, frames without": ("wsevents_traced_app", ()),
}


def traced_round(seconds: float, connections: int) -> dict[str, Any]:
    results = {}
    for name, (app, options) in TRACED_SERVERS.items():
        server = Server(app)
        try:
            results[name] = load(
                "echo", server.url("/"), "--connections", str(connections),
                "--window", "10", "--seconds", str(seconds), *options,
            )  # fmt: skip
        finally:
            server.stop()
    return results


def msgpack_round(seconds: float) -> dict[str, Any]:
    results = {}
    for name, (app, path) in MSGPACK_SERVERS.items():
        server = Server(app)
        try:
            results[name] = load(
                "echo", server.url(path), "--connections", "50", "--window", "10",
                "--seconds", str(seconds), "--msgpack",
            )  # fmt: skip
        finally:
            server.stop()
    return results


def fanout_round(connections: int, count: int) -> dict[str, Any]:
    results = {}
    for name, (app, path, socketio) in FANOUT_SERVERS.items():
        server = Server(app)
        try:
            extra = ["--socketio"] if socketio else []
            results[name] = load(
                "fanout", server.url(path), "--connections", str(connections),
                "--count", str(count), *extra,
            )  # fmt: skip
        finally:
            server.stop()
    return results


ASK_SERVERS = {  # name: (app, path, event)
    "raw ASGI loop, asking in line": ("raw_ask", "/", "ask"),
    "wsevents conn.request": ("wsevents_app", "/", "ask"),
}


def ask_round(seconds: float, connections: int) -> dict[str, Any]:
    """Each request asks the client once: client -> server -> client -> server -> client."""
    results = {}
    for name, (app, path, event) in ASK_SERVERS.items():
        server = Server(app)
        try:
            results[name] = load(
                "echo", server.url(path), "--connections", str(connections), "--window", "1",
                "--seconds", str(seconds), "--event", event,
            )  # fmt: skip
        finally:
            server.stop()
    return results


# The load's connections share one session: their ids are unique across connections.
SESSION = "/?wsevents-session=bench-session-0001"


def once_round(seconds: float, connections: int, tmp: Path) -> dict[str, Any]:
    """The same echo without and with ``once``, on one process with a Redis backplane."""
    results = {}
    for name, event in (("wsevents echo, Redis backplane", "echo"), ("once echo", "echo_once")):
        redis = RedisServer(tmp)
        redis.start()
        server = Server("wsevents_app", {"WSEVENTS_BACKPLANE": redis.url})
        try:
            results[name] = load(
                "echo", server.url(SESSION), "--connections", str(connections),
                "--window", "1", "--seconds", str(seconds), "--event", event,
            )  # fmt: skip
        finally:
            server.stop()
            redis.kill()
    return results


TRIGGERED_SERVERS = {  # name: (app, the subscribers' path, the publishing clients' path)
    "raw ASGI loop, awaiting each send": ("raw_fanout", "/?sub=1", "/"),
    "wsevents publish": ("wsevents_app", "/?sub=1", "/"),
}


def triggered_round(connections: int, seconds: float) -> dict[str, Any]:
    """Fan-out as apps publish: each publication one client event, four in flight."""
    results = {}
    for name, (app, path, publish_path) in TRIGGERED_SERVERS.items():
        server = Server(app)
        try:
            results[name] = load(
                "trigger", server.url(path), "--publish-url", server.url(publish_path),
                "--connections", str(connections), "--triggers", "4",
                "--seconds", str(seconds),
            )  # fmt: skip
        finally:
            server.stop()
    return results


def redis_round(connections: int, count: int, tmp: Path) -> dict[str, Any]:
    redis = RedisServer(tmp)
    redis.start()
    env = {"WSEVENTS_BACKPLANE": redis.url}
    one, two = Server("wsevents_app", env), Server("wsevents_app", env)
    try:
        result = load(
            "fanout", one.url("/?sub=1"), "--url2", two.url("/?sub=1"),
            "--connections", str(connections), "--count", str(count),
        )  # fmt: skip
    finally:
        one.stop()
        two.stop()
        redis.kill()
    return {"wsevents across two processes through Redis": result}


def history_round(connections: int, count: int, tmp: Path, publishers: int = 1) -> dict[str, Any]:
    """The same burst without and with history: in one process, then two through Redis.

    ``publishers`` publish at once, each awaiting its publications (as many
    connections' handlers do); one alone waits a round trip per publication.
    """
    results = {}
    burst = ["--connections", str(connections), "--count", str(count)]
    burst += ["--publishers", str(publishers)]
    for name, app in (
        ("in one process", "wsevents_app"),
        ("in one process, history", "wsevents_history_app"),
    ):
        server = Server(app)
        try:
            results[name] = load("fanout", server.url("/?sub=1"), *burst)
        finally:
            server.stop()
    for name, app in (
        ("through Redis", "wsevents_app"),
        ("through Redis, history", "wsevents_history_app"),
    ):
        redis = RedisServer(tmp)
        redis.start()
        env = {"WSEVENTS_BACKPLANE": redis.url}
        one, two = Server(app, env), Server(app, env)
        try:
            results[name] = load("fanout", one.url("/?sub=1"), "--url2", two.url("/?sub=1"), *burst)
            if "history" in name:
                results[name].update(redis_cost(redis.url))
        finally:
            one.stop()
            two.stop()
            redis.kill()
    return results


CONFIRMED = "history: confirmed publish latency through Redis"
CONFIRMED_NAME = "wsevents, one publisher"


def confirmed_round(count: int, tmp: Path) -> dict[str, Any]:
    """One publisher's publications to a history topic through Redis, each awaited (one
    round trip, confirmed), against PINGs of the same Redis from the same process."""
    from websockets.sync.client import connect

    redis = RedisServer(tmp)
    redis.start()
    # Redis on the server's core: a wakeup across cores costs this machine hundreds of
    # microseconds, which would hide what the publish itself adds to the round trip.
    os.sched_setaffinity(redis.process.pid, {0})
    server = Server("wsevents_history_app", {"WSEVENTS_BACKPLANE": redis.url})
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})  # the subscriber's thread, made below, where the load runs
    try:
        with connect(server.url("/")) as ws:  # no subscriber here: the publish alone
            ws.send(json.dumps({"event": "probe", "data": {"count": count}, "id": 1}))
            while (frame := json.loads(ws.recv(timeout=120))).get("id") != 1:
                pass
    finally:
        os.sched_setaffinity(0, affinity)
        server.stop()
        redis.kill()
    found = frame["data"]
    return {
        CONFIRMED_NAME: {
            f"{key}_p50_us": statistics.median(found[f"{key}_us"])
            for key in ("publish", "ping", "script")
        }
    }


def confirmed_table(rounds: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"**{CONFIRMED}**",
        "",
        "| repetition | publish p50 | PING p50 | ratio | the script alone, bare client | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n, round_ in enumerate(rounds, 1):
        r = round_[CONFIRMED_NAME]
        ping = r["ping_p50_us"]
        lines.append(
            f"| {n} | {r['publish_p50_us']:.0f} µs | {ping:.0f} µs "
            f"| {r['publish_p50_us'] / ping:.2f} | {r['script_p50_us']:.0f} µs "
            f"| {r['script_p50_us'] / ping:.2f} |"
        )
    return [*lines, ""]


# The churn lasts one refresh period (Presence's ttl / 3): every member is refreshed once.
PRESENCE_SECONDS = 10.0


def presence_round(members: int, churn: int, seconds: float, tmp: Path) -> dict[str, Any]:
    """Members of one topic through Redis, with churn: with diffs, and without."""
    results = {}
    for name, app in (
        ("diffs", "wsevents_presence_app"),
        ("no diffs", "wsevents_presence_quiet_app"),
    ):
        redis = RedisServer(tmp)
        redis.start()
        server = Server(app, {"WSEVENTS_BACKPLANE": redis.url})
        try:
            results[name] = load(
                "presence", server.url("/room"), "--connections", str(members),
                "--churn", str(churn), "--seconds", str(seconds), "--redis", redis.url,
                *(["--diffs"] if name == "diffs" else []),
            )  # fmt: skip
        finally:
            server.stop()
            redis.kill()
    return results


def redis_cost(url: str) -> dict[str, float]:
    """What the history costs Redis per publication: the script's time, a kept entry's bytes."""
    import redis as redis_py

    client = redis_py.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
        script = stats.get("cmdstat_evalsha") or stats.get("cmdstat_eval") or {}
        kept = client.xlen("wsevents:history:all")
        size = client.memory_usage("wsevents:history:all") or 0
    finally:
        client.close()
    return {
        "redis_us_per_publication": float(script.get("usec_per_call", 0.0)),
        "redis_bytes_per_kept": size / kept if kept else 0.0,
    }


def held(command: list[str]) -> subprocess.Popen[str]:
    """Start bench/load.py pinned to core 1; return once it printed that it is connected."""
    client = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, str(ROOT / "bench" / "load.py"), *command],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None
    if not client.stdout.readline():
        raise RuntimeError(f"the load generator ended before connecting: {command}")
    return client


def go(client: subprocess.Popen[str]) -> None:
    """Tell a load generator started by :func:`held` (with ``--wait``) to start."""
    assert client.stdin is not None
    client.stdin.write("go\n")
    client.stdin.flush()


def finished(client: subprocess.Popen[str], timeout: float = 300) -> dict[str, Any]:
    """The last JSON line of a load generator started by :func:`held`."""
    out, _ = client.communicate(timeout=timeout)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


IDLE_SECONDS = 3.0  # how long the server's CPU is measured while the connections idle


def memory_round(connections: int, sources: int = 1) -> dict[str, Any]:
    """RSS per idle connection, raw ASGI and wsevents, ``connections`` held at once; and
    the server's CPU while they idle (the watchdog's, for wsevents, and uvicorn's pings)."""
    results = {}
    for name, app in (("raw ASGI (json)", "raw_json"), ("wsevents", "wsevents_app")):
        server = Server(app)
        try:
            process = psutil.Process(server.process.pid)
            time.sleep(0.5)
            before = process.memory_info().rss
            client = held(
                ["idle", server.url("/"), "--connections", str(connections),
                 "--hold", "6", "--sources", str(sources)]
            )  # fmt: skip
            time.sleep(1)
            cpu = process.cpu_times()
            time.sleep(IDLE_SECONDS)
            cpu_after = process.cpu_times()
            after = process.memory_info().rss
            finished(client)
            busy = cpu_after.user + cpu_after.system - cpu.user - cpu.system
            results[name] = {
                "bytes_per_connection": (after - before) / connections,
                "idle_cpu_percent": 100 * busy / IDLE_SECONDS,
            }
        finally:
            server.stop()
    return results


def ratios(rounds: list[dict[str, Any]], key: str, baseline: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for round_ in rounds:
        base = round_[baseline][key]
        for name, result in round_.items():
            out.setdefault(name, []).append(result[key] / base)
    return out


def presence_table(label: str, rounds: list[dict[str, Any]]) -> list[str]:
    """Medians of what the members got and what Redis did, with diffs and without."""
    lines = [
        f"**{label}**",
        "",
        "| server | joins/s | presence frames/s | per member per second | Redis commands/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in rounds[0]:

        def median(key: str, name: str = name) -> float:
            return statistics.median(round_[name][key] for round_ in rounds)

        lines.append(
            f"| wsevents, {name} | {median('joins_per_second'):,.1f} "
            f"| {median('diff_frames_per_second'):,.0f} "
            f"| {median('bytes_per_subscriber_per_second'):,.0f} B "
            f"| {median('redis_commands_per_second'):,.0f} |"
        )
    return [*lines, ""]


def row(name: str, values: list[float], raw: list[float], unit: str) -> str:
    median = statistics.median(values)
    return (
        f"| {name} | {statistics.median(raw):,.0f} {unit} | {median:.2f} "
        f"({min(values):.2f}-{max(values):.2f}) |"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke test")
    parser.add_argument(
        "--only", action="append", metavar="SCENARIO", help="run this scenario only (repeatable)"
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="the scale set instead (minutes): 50,000 connections, eight processes on Redis",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="Redis Cluster against one Redis instead: four processes, 1,000 topics, a hot one",
    )
    parser.add_argument(
        "--spread",
        action="store_true",
        help="50,000 connections over three processes on one Redis instead (minutes)",
    )
    parser.add_argument(
        "--telemetry",
        action="store_true",
        help="the telemetry scenario alone, with its targets (docs/telemetry.md)",
    )
    args = parser.parse_args()
    if args.telemetry:
        args.only = [TRACED]
    tmp = ROOT / "bench" / "results" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    if args.scale:
        return run_scale(args.quick, tmp)
    if args.spread:
        from bench.spread import run_spread

        return run_spread(args.quick, tmp)
    if args.cluster:
        from bench.shards import run_cluster

        return run_cluster(args.quick, tmp)
    scale = 10 if args.quick else 1
    results: dict[str, list[dict[str, Any]]] = {}
    seconds = args.seconds
    scenarios: dict[str, Callable[[], dict[str, Any]]] = {
        "echo JSON, C=1 W=1": lambda: echo_round(seconds, 1, 1),
        "echo JSON, C=50 W=1": lambda: echo_round(seconds, 50 // scale, 1),
        "echo JSON, C=50 W=10": lambda: echo_round(seconds, 50 // scale, 10),
        "echo MessagePack, C=50 W=10": lambda: msgpack_round(seconds),
        TRACED: lambda: traced_round(seconds, 50 // scale),
        "server request answered by the client, C=1": lambda: ask_round(seconds, 1),
        "server request answered by the client, C=50": lambda: ask_round(seconds, 50 // scale),
        "once handlers through Redis, C=1": lambda: once_round(seconds, 1, tmp),
        "once handlers through Redis, C=50": lambda: once_round(seconds, 50 // scale, tmp),
        f"fan-out to {200 // scale}": lambda: fanout_round(200 // scale, 50 // scale),
        f"fan-out to {1000 // scale}": lambda: fanout_round(1000 // scale, 20 // scale),
        f"fan-out to {200 // scale}, client-triggered": lambda: triggered_round(
            200 // scale, seconds
        ),
        f"fan-out to {1000 // scale}, client-triggered": lambda: triggered_round(
            1000 // scale, seconds
        ),
        "fan-out across processes": lambda: redis_round(1000 // scale, 20 // scale, tmp),
        "memory per idle connection": lambda: memory_round(1000 // scale),
        "history: publish to 2": lambda: history_round(2, 2000 // scale, tmp),
        "history: publish to 2, 16 publishers": lambda: history_round(
            2, 2000 // scale, tmp, publishers=16
        ),
        CONFIRMED: lambda: confirmed_round(2000 // scale, tmp),
        f"history: fan-out to {1000 // scale}": lambda: history_round(
            1000 // scale, 20 // scale, tmp
        ),
        f"presence: {5000 // scale} members, {50 // scale} joins and leaves a second": lambda: (
            presence_round(5000 // scale, 50 // scale, PRESENCE_SECONDS, tmp)
        ),
    }
    if args.only:
        unknown = set(args.only) - set(scenarios)
        if unknown:
            parser.error(f"no scenario {sorted(unknown)}; there are {list(scenarios)}")
        scenarios = {label: run for label, run in scenarios.items() if label in args.only}
    for repetition in range(args.repetitions):
        print(f"repetition {repetition + 1} of {args.repetitions}", file=sys.stderr)
        for label, run in scenarios.items():
            results.setdefault(label, []).append(run())
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    lines = [
        f"Machine: {machine}; {args.repetitions} repetitions, medians (min-max) of the ratios "
        "to the first row of each table, measured in the same repetition.",
        "",
    ]
    for label, rounds in results.items():
        if label.startswith("presence"):
            lines += presence_table(label, rounds)
            continue
        if label == CONFIRMED:
            lines += confirmed_table(rounds)
            continue
        if label.startswith(("echo", "server request", "once")):
            key, unit = "messages_per_second", "msg/s"
        elif label.startswith("memory"):
            key, unit = "bytes_per_connection", "B"
        else:
            key, unit = "deliveries_per_second", "deliveries/s"
        baseline = next(iter(rounds[0]))
        lines += [
            f"**{label}**",
            "",
            "| server | median | ratio to the first |",
            "| --- | --- | --- |",
        ]
        for name, values in ratios(rounds, key, baseline).items():
            raw = [round_[name][key] for round_ in rounds]
            lines.append(row(name, values, raw, unit))
        if label.endswith(("C=1 W=1", "C=1")):
            for name in rounds[0]:
                p50 = statistics.median(round_[name]["p50_ms"] for round_ in rounds)
                lines.append(f"| {name}: p50 latency | {p50:.3f} ms | |")
        if "fan-out" in label:
            for name in rounds[0]:
                for p in ("p50", "p99"):
                    values = [round_[name].get(f"{p}_ms") for round_ in rounds]
                    if None not in values:
                        latency = statistics.median(values)
                        lines.append(f"| {name}: {p} delivery latency | {latency:.1f} ms | |")
        lines.append("")
    table = "\n".join(lines)
    print(table)
    stored: dict[str, Any] = {"table": table, "results": results}
    if not (args.quick or args.only):  # the targets need every scenario, at full counts
        stored["targets"] = targets(results)
        print(stored["targets"])
    elif args.telemetry and not args.quick:
        stored["targets"] = "\n".join([*TARGETS_HEADER, *telemetry_rows(results)]) + "\n"
        print(stored["targets"])
    name = "bench-quick.json" if args.quick else "bench-only.json" if args.only else "bench.json"
    if args.telemetry and not args.quick:
        name = "bench-telemetry.json"
    out = ROOT / "bench" / "results" / name
    out.write_text(json.dumps(stored, indent=2) + "\n")
    bad = [
        (label, name)
        for label, rounds in results.items()
        for round_ in rounds
        for name, result in round_.items()
        if result.get("bad_replies") or result.get("delivered", 0) < result.get("expected", 0)
    ]
    if bad:
        print(f"wrong or missing replies: {bad}", file=sys.stderr)
        return 1
    return 0


def run_scale(quick: bool, tmp: Path) -> int:
    """The scale set, once: tables, targets and pictures (bench/scale.py, bench/plots.py)."""
    from bench.plots import draw
    from bench.scale import (
        LARGEST,
        largest_size,
        raise_fd_limit,
        scale_rounds,
        scale_tables,
        scale_targets,
    )

    open_files = raise_fd_limit()
    results = scale_rounds(quick, tmp)
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    header = f"Machine: {machine}; the scale set, one run."
    if largest_size(open_files) < LARGEST and not quick:
        header += (
            f" A process may open {open_files:,} files here (the hard limit, which only "
            f"CAP_SYS_RESOURCE raises): the largest size is {largest_size(open_files):,} "
            f"connections, not {LARGEST:,}."
        )
    stored: dict[str, Any] = {
        "table": f"{header}\n\n" + scale_tables(results),
        "results": results,
        "open_files": open_files,
    }
    print(stored["table"])
    if not quick:
        stored["targets"] = scale_targets(results)
        print(stored["targets"])
    name = "bench-scale-quick.json" if quick else "bench-scale.json"
    (ROOT / "bench" / "results" / name).write_text(json.dumps(stored, indent=2) + "\n")
    out = tmp if quick else ROOT / "docs"
    for path in draw(results, out):
        print(f"drew {path}")
    missing = [
        (label, name)
        for label, row in results.items()
        for name, result in row.items()
        if result.get("delivered", 0) < result.get("expected", 0)
    ]
    if missing:
        print(f"missing deliveries or reconnections: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

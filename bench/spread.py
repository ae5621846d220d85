"""50,000 connections on this machine: three processes on one Redis, as a deployment spreads them.

    python bench/run.py --spread [--quick]

One process here may open 20,000 files (the hard limit; raising it needs
CAP_SYS_RESOURCE), so the connections are held by three server processes,
each under it, and made by three load generators, one per server, from
several loopback addresses. Measured, each against what it is compared with:

- idle memory per connection, three wsevents processes on Redis against three
  raw ASGI processes holding as many;
- a burst published in one process to every connection through Redis:
  deliveries/s and the servers' CPU per delivery, against the same burst to
  1,000 connections laid out the same way;
- a reconnect storm: the three servers restart under every connection; the
  time until all are back, and the handshakes per second.

Results go to bench/results/bench-spread.json, the picture to docs/scale-spread.png.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.run import Server, held
from bench.scale import SOURCES, cpu_seconds
from tests.conftest import RedisServer

PROCESSES = 3
LARGEST = 50_000
BASE = 1_000  # the burst it is compared with
DELIVERIES = 200_000  # a burst's deliveries in all, whatever the connections
PICTURE = "scale-spread.png"


def shares(connections: int) -> list[int]:
    """``connections`` spread over the processes, the first ones taking the rest."""
    each, rest = divmod(connections, PROCESSES)
    return [each + (1 if n < rest else 0) for n in range(PROCESSES)]


def servers(app: str, redis: RedisServer | None, processes: int = PROCESSES) -> list[Server]:
    env = {"WSEVENTS_BACKPLANE": redis.url} if redis is not None else None
    return [Server(app, env) for _ in range(processes)]


def stop(
    started: list[Server], clients: list[Any] | None = None, redis: RedisServer | None = None
) -> None:
    """Stop the servers; and the load generators still running, and Redis, if given."""
    for client in clients or ():
        if client.poll() is None:
            client.kill()
    for server in started:
        server.stop()
    if redis is not None:
        redis.kill()


def line(client: Any) -> dict[str, Any]:
    """The next JSON line a load generator prints."""
    text = client.stdout.readline()
    if not text:
        raise RuntimeError("a load generator ended early")
    found: dict[str, Any] = json.loads(text)
    return found


def say(client: Any) -> None:
    client.stdin.write("go\n")
    client.stdin.flush()


def idle_memory(connections: int, tmp: Path) -> dict[str, Any]:
    """RSS per idle connection over the three processes: raw ASGI, then wsevents on Redis."""
    results = {}
    for name, app in (("raw ASGI (json)", "raw_json"), ("wsevents", "wsevents_app")):
        redis = RedisServer(tmp) if app == "wsevents_app" else None
        if redis is not None:
            redis.start()
        started = servers(app, redis)
        clients = []
        try:
            processes = [psutil.Process(server.process.pid) for server in started]
            time.sleep(0.5)
            before = sum(p.memory_info().rss for p in processes)
            for server, count in zip(started, shares(connections), strict=True):
                clients.append(
                    held(["idle", server.url("/"), "--connections", str(count),
                          "--hold", "5", "--sources", SOURCES])
                )  # fmt: skip
            time.sleep(1)
            after = sum(p.memory_info().rss for p in processes)
            for client in clients:
                client.communicate(timeout=120)
            results[name] = {
                "bytes_per_connection": (after - before) / connections,
                "processes": PROCESSES,
            }
        finally:
            stop(started, clients, redis)
    return results


def burst(
    connections: int, tmp: Path, app: str = "wsevents_app", processes: int = PROCESSES
) -> dict[str, Any]:
    """A burst published in the first process, heard by every connection through Redis
    (one process: by its own connections, no Redis; ``raw_fanout``, raw ASGI's loop)."""
    count = max(2, DELIVERIES // connections)
    redis = RedisServer(tmp) if processes > 1 else None
    if redis is not None:
        redis.start()
    started = servers(app, redis, processes)
    clients = []
    try:
        spread = shares(connections) if processes > 1 else [connections]
        for n, (server, share) in enumerate(zip(started, spread, strict=True)):
            command = ["share", server.url("/"), "--connections", str(share)]
            command += ["--count", str(count), "--sources", SOURCES]
            clients.append(held(command + (["--trigger"] if n == 0 else [])))
        watched = [psutil.Process(server.process.pid) for server in started]
        before = [cpu_seconds(p) for p in watched]
        for client in clients:
            say(client)
        counts = [line(client) for client in clients]  # each once its share was delivered
        cpu = [cpu_seconds(p) - b for p, b in zip(watched, before, strict=True)]
        for client in clients:
            say(client)
            client.communicate(timeout=120)
    finally:
        stop(started, clients, redis)
    delivered = sum(c["delivered"] for c in counts)
    sent_at = counts[0]["sent_at"]
    elapsed = max(c["last_at"] for c in counts) - sent_at
    delays = sorted(d for c in counts for d in c["delays"])
    return {
        "connections": connections,
        "publications": count,
        "delivered": delivered,
        "expected": sum(c["expected"] for c in counts),
        "deliveries_per_second": delivered / elapsed,
        "cpu_seconds": cpu,
        "cpu_us_per_delivery": sum(cpu) / delivered * 1e6 if delivered else None,
        "p50_ms": delays[len(delays) // 2] * 1000 if delays else None,
        "p99_ms": delays[int(len(delays) * 0.99)] * 1000 if delays else None,
    }


def storm(connections: int, tmp: Path) -> dict[str, Any]:
    """Every connection held; the three servers restart; how soon they are all back."""
    redis = RedisServer(tmp)
    redis.start()
    started = servers("wsevents_app", redis)
    clients = []
    try:
        for server, share in zip(started, shares(connections), strict=True):
            clients.append(
                held(["storm", server.url("/"), "--connections", str(share),
                      "--sources", SOURCES, "--seconds", "300"])
            )  # fmt: skip
        ports = [server.port for server in started]
        stop(started)  # every client drops at once (a deploy, a crash)
        started = [
            Server("wsevents_app", {"WSEVENTS_BACKPLANE": redis.url}, port=port) for port in ports
        ]
        results = [line(client) for client in clients]
        for client in clients:
            client.communicate(timeout=60)
    finally:
        stop(started, clients, redis)
    back = sum(r["back"] for r in results)
    first_drop = min(r["first_drop_at"] for r in results)
    last_back = max(r["last_back_at"] for r in results)
    return {
        "connections": connections,
        "dropped": sum(r["dropped"] for r in results),
        "back": back,
        "attempts": sum(r["attempts"] for r in results),
        "seconds_until_all_back": last_back - first_drop,
        "handshakes_per_second": back / (last_back - first_drop),
        "delivered": back,
        "expected": connections,
    }


def spread_rounds(quick: bool, tmp: Path) -> dict[str, Any]:
    """Every scenario once; ``quick``: small counts (a smoke test)."""
    largest = 3_000 if quick else LARGEST
    base = 300 if quick else BASE
    return {
        "idle": idle_memory(largest, tmp),
        "burst": {str(size): burst(size, tmp) for size in (base, largest)},
        # What the same step costs raw ASGI's own loop, in one process holding one share.
        "raw burst": {
            str(size): burst(size // PROCESSES, tmp, "raw_fanout", 1) for size in (base, largest)
        },
        "storm": storm(largest, tmp),
    }


def spread_tables(results: dict[str, Any]) -> str:
    idle = results["idle"]
    raw, ours = (idle[k]["bytes_per_connection"] for k in ("raw ASGI (json)", "wsevents"))
    largest = results["storm"]["connections"]
    lines = [
        f"**{largest:,} connections over {PROCESSES} processes on one Redis**",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| idle memory per connection, raw ASGI | {raw:,.0f} B |",
        f"| idle memory per connection, wsevents | {ours:,.0f} B ({ours / raw:.2f} of raw) |",
    ]
    for key, how in (("burst", "through Redis"), ("raw burst", "raw ASGI, one process")):
        for r in results.get(key, {}).values():
            lines.append(
                f"| burst to {r['connections']:,}, {how} ({r['publications']} publications) "
                f"| {r['deliveries_per_second']:,.0f} deliveries/s, "
                f"{r['cpu_us_per_delivery']:.1f} µs of server CPU per delivery, "
                f"p50 {r['p50_ms']:,.0f} / p99 {r['p99_ms']:,.0f} ms |"
            )
    s = results["storm"]
    lines.append(
        f"| reconnect storm, {s['connections']:,} clients, the servers restarted "
        f"| {s['back']:,} back in {s['seconds_until_all_back']:.1f} s, "
        f"{s['handshakes_per_second']:,.0f} handshakes/s, {s['attempts']:,} attempts |"
    )
    return "\n".join(lines) + "\n"


def spread_targets(results: dict[str, Any]) -> str:
    idle = results["idle"]
    raw = idle["raw ASGI (json)"]["bytes_per_connection"]
    memory = idle["wsevents"]["bytes_per_connection"] / raw
    sizes = sorted(results["burst"], key=int)
    base, big = (results["burst"][s] for s in sizes)
    rate = big["deliveries_per_second"] / base["deliveries_per_second"]
    cost = base["cpu_us_per_delivery"] / big["cpu_us_per_delivery"]  # above 1: cheaper at scale
    raw_base, raw_big = (results["raw burst"][s] for s in sizes)
    raw_rate = raw_big["deliveries_per_second"] / raw_base["deliveries_per_second"]
    raw_cost = raw_base["cpu_us_per_delivery"] / raw_big["cpu_us_per_delivery"]
    raw = (
        f"; raw ASGI's loop in one process, {raw_big['connections']:,} against "
        f"{raw_base['connections']:,}"
    )
    s = results["storm"]
    every = s["back"] == s["connections"]
    n = f"{int(sizes[1]):,}"
    rows = [
        "| target | measured | met |",
        "| --- | --- | --- |",
        f"| {n} over {PROCESSES} processes: idle memory per connection at most 1.15 times "
        f"raw ASGI's | {memory:.2f} | {'yes' if memory <= 1.15 else 'no'} |",
        f"| burst to {n} through Redis: deliveries/s at least 0.85 of the burst to "
        f"{int(sizes[0]):,} | {rate:.2f}{raw}: {raw_rate:.2f} "
        f"| {'yes' if rate >= 0.85 else 'no'} |",
        f"| burst to {n} through Redis: server CPU per delivery, that at {int(sizes[0]):,} "
        f"over it, at least 0.85 | {cost:.2f} ({big['cpu_us_per_delivery']:.1f} µs against "
        f"{base['cpu_us_per_delivery']:.1f}){raw}: {raw_cost:.2f} "
        f"({raw_big['cpu_us_per_delivery']:.1f} µs against "
        f"{raw_base['cpu_us_per_delivery']:.1f}) | {'yes' if cost >= 0.85 else 'no'} |",
        f"| reconnect storm of {n}: every one back | {s['back']:,} of {s['connections']:,} "
        f"in {s['seconds_until_all_back']:.1f} s, {s['handshakes_per_second']:,.0f} "
        f"handshakes/s | {'yes' if every else 'no'} |",
    ]
    return "\n".join(rows) + "\n"


def draw_spread(results: dict[str, Any], out: Path) -> Path:
    """Memory, the burst at both sizes, and the storm, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.plots import save

    figure, (memory, rate, cpu, storm_) = plt.subplots(1, 4, figsize=(16, 4))
    idle = results["idle"]
    names = ["raw ASGI (json)", "wsevents"]
    memory.bar(["raw ASGI", "wsevents"], [idle[k]["bytes_per_connection"] / 1024 for k in names])
    largest = results["storm"]["connections"]
    memory.set(ylabel="KiB per connection", title=f"{largest:,} idle, {PROCESSES} processes")
    sizes = sorted(results["burst"], key=int)
    labels = [f"{int(s):,}" for s in sizes]
    width = 0.4
    where = list(range(len(sizes)))
    for shift, key, name in (
        (-width / 2, "burst", f"wsevents, {PROCESSES} processes on Redis"),
        (width / 2, "raw burst", "raw ASGI's loop, one process, one share"),
    ):
        rows = [results[key][s] for s in sizes]
        spots = [x + shift for x in where]
        rate.bar(spots, [r["deliveries_per_second"] for r in rows], width, label=name)
        cpu.bar(spots, [r["cpu_us_per_delivery"] for r in rows], width, label=name)
    for axes in (rate, cpu):
        axes.set_xticks(where, labels)
        axes.set_ylim(0, axes.get_ylim()[1] * 1.3)  # room for the legend above the bars
        axes.legend(fontsize="small", loc="upper left")
    rate.set(xlabel="connections in all", ylabel="deliveries/s", title="A burst")
    cpu.set(xlabel="connections in all", ylabel="server CPU µs per delivery", title="Its cost")
    s = results["storm"]
    storm_.bar(["until all back"], [s["seconds_until_all_back"]])
    storm_.set(
        ylabel="seconds",
        title=f"Storm: {s['back']:,} back\n{s['handshakes_per_second']:,.0f} handshakes/s",
    )
    for axes in (memory, rate, cpu, storm_):
        axes.grid(True, axis="y", alpha=0.3)
    return save(figure, out / PICTURE)


def run_spread(quick: bool, tmp: Path) -> int:
    """The set once: its table, targets and picture (docs/, or the results' tmp when quick)."""
    from bench.scale import raise_fd_limit

    raise_fd_limit()
    results = spread_rounds(quick, tmp)
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    stored: dict[str, Any] = {
        "table": f"Machine: {machine}; one run.\n\n" + spread_tables(results),
        "results": results,
    }
    print(stored["table"])
    if not quick:
        stored["targets"] = spread_targets(results)
        print(stored["targets"])
    root = Path(__file__).resolve().parent.parent
    name = "bench-spread-quick.json" if quick else "bench-spread.json"
    (root / "bench" / "results" / name).write_text(json.dumps(stored, indent=2) + "\n")
    print(f"drew {draw_spread(results, tmp if quick else root / 'docs')}")
    missing = [
        label
        for label, result in [
            *results["burst"].items(),
            *results["raw burst"].items(),
            ("storm", results["storm"]),
        ]
        if result["delivered"] < result["expected"]
    ]
    if missing:
        print(f"missing deliveries or reconnections: {missing}", file=sys.stderr)
        return 1
    return 0

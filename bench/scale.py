"""The scale set of `make bench`: what one process costs at 50,000 connections, and eight on Redis.

    python bench/run.py --scale [--quick]

Idle memory per connection at 1,000, 10,000 and 50,000 (wsevents against raw
ASGI); fan-out bursts to as many subscribers (deliveries/s, p50 and p99);
a reconnect storm of 10,000 clients after a restart; eight processes on one
Redis, subscribers spread over them, a burst published in each. The clients
connect from several loopback addresses (past the ephemeral port range), and
the bench raises its own file-descriptor limit, which its children inherit.
Results go to bench/results/bench-scale.json and the curves to docs/*.png.
"""

from __future__ import annotations

import resource
import statistics
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from bench.run import Server, finished, go, held, memory_round
from tests.conftest import RedisServer

SOURCES = "8"  # loopback addresses the clients connect from: 8 x 28,000 ports


LARGEST = 50_000


def raise_fd_limit(wanted: int = 120_000) -> int:
    """Let this process and its children (servers, clients) hold ``wanted`` files if allowed.

    Returns the limit in force: raising the hard limit needs CAP_SYS_RESOURCE,
    which a container may not grant (this project's machine stops at 20,000).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))  # root may raise it
            return wanted
        except (ValueError, OSError):
            wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    return max(soft, wanted)


def largest_size(open_files: int) -> int:
    """The most connections one process can hold here, up to 50,000, in thousands."""
    return min(LARGEST, (open_files - 500) // 1000 * 1000)


def idle_memory(connections: int) -> dict[str, Any]:
    """RSS per idle connection, raw ASGI and wsevents, ``connections`` held at once."""
    return memory_round(connections, sources=int(SOURCES))


def fanout(subscribers: int) -> dict[str, Any]:
    """A burst of publications to ``subscribers``, about 200,000 deliveries in all.

    Besides deliveries/s (which the one load generator also bounds), the
    server's own CPU time per delivery, measured around the burst only.
    """
    count = max(4, 200_000 // subscribers)
    results = {}
    for name, app in (
        ("raw in-process fan-out", "raw_fanout"),
        ("wsevents publish", "wsevents_app"),
    ):
        server = Server(app)
        try:
            client = held(
                ["fanout", server.url("/?sub=1"), "--connections", str(subscribers),
                 "--count", str(count), "--sources", SOURCES, "--wait"]
            )  # fmt: skip
            process = psutil.Process(server.process.pid)
            before = cpu_seconds(process)
            go(client)
            result = finished(client)
            cpu = cpu_seconds(process) - before
            result["cpu_us_per_delivery"] = cpu / result["delivered"] * 1e6
            results[name] = result
        finally:
            server.stop()
    return results


def storm(connections: int) -> dict[str, Any]:
    """``connections`` clients; the server restarts; how soon they are all back."""
    results = {}
    for name, app in (("raw ASGI (json)", "raw_json"), ("wsevents", "wsevents_app")):
        server = Server(app)
        client = held(
            ["storm", server.url("/"), "--connections", str(connections),
             "--sources", SOURCES, "--seconds", "120"]
        )  # fmt: skip
        server.stop()  # every client drops at once (a deploy, a crash)
        server = Server(app, port=server.port)
        try:
            results[name] = finished(client)
        finally:
            server.stop()
    return results


def metrics(port: int) -> dict[str, float]:
    """The backplane counters of one process, from its Prometheus page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("wsevents_backplane_"):
            name, value = line.split()
            found[name.removeprefix("wsevents_backplane_").removesuffix("_total")] = float(value)
    return found


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def cluster(
    processes: int, holders: int, subscribers: int, count: int, tmp: Path
) -> dict[str, Any]:
    """``processes`` servers on one Redis, subscribers on the first ``holders``; each publishes.

    Besides deliveries/s in all and per process, each process's CPU seconds
    during the bursts (the processes share this machine's cores, so wall-clock
    rates per process fall with their number; per CPU second they do not), and
    Redis' own count of the messages it sent per publication.
    """
    redis = RedisServer(tmp)
    redis.start()
    env = {"WSEVENTS_BACKPLANE": redis.url}
    servers = [Server("wsevents_app", env) for _ in range(processes)] if processes > 1 else []
    if not servers:
        servers = [Server("wsevents_app")]  # in one process: the in-memory backplane
    try:
        urls = ",".join(server.url("/") for server in servers)
        client = held(
            ["cluster", urls, "--holders", str(holders), "--connections", str(subscribers),
             "--count", str(count), "--sources", SOURCES]
        )  # fmt: skip
        watched = [psutil.Process(server.process.pid) for server in servers]
        before = [cpu_seconds(p) for p in watched]
        counted = [metrics(server.port) for server in servers]
        go(client)
        result = finished(client)
        cpu = [cpu_seconds(p) - b for p, b in zip(watched, before, strict=True)]
        after = [metrics(server.port) for server in servers]
    finally:
        for server in servers:
            server.stop()
        redis.kill()

    def total(key: str) -> float:
        return sum(a.get(key, 0.0) - b.get(key, 0.0) for a, b in zip(after, counted, strict=True))

    published = total("published")
    return {
        **result,
        "processes": processes,
        "holders": holders,
        "subscribers": subscribers,
        "cpu_seconds": cpu,
        # Deliveries per CPU second of each holding process: what it delivers on a core of its own.
        "deliveries_per_cpu_second": [
            delivered / seconds if seconds else 0.0
            for delivered, seconds in zip(
                result["delivered_per_process"][:holders], cpu[:holders], strict=True
            )
        ],
        "redis_messages_per_publication": (
            total("publish_receivers") / published if published else None
        ),
        "published": published,
    }


def scale_rounds(quick: bool, tmp: Path) -> dict[str, dict[str, Any]]:
    """Every scale scenario once; ``quick``: a tenth of the counts (a smoke test)."""
    sizes = [100, 1000] if quick else [1000, 10_000, largest_size(raise_fd_limit())]
    results: dict[str, dict[str, Any]] = {}
    for size in sizes:
        results[f"idle connections: {size}"] = idle_memory(size)
    for size in sizes:
        results[f"fan-out burst to {size}"] = fanout(size)
    storm_size = 1000 if quick else 10_000
    results[f"reconnect storm: {storm_size}"] = storm(storm_size)
    subscribers = 800 if quick else 8000
    count = 40  # publications in all, shared by the processes
    results[f"in one process: {subscribers} subscribers"] = {
        "wsevents": cluster(1, 1, subscribers, count, tmp)
    }
    for processes, holders, subs in (
        (2, 2, subscribers),
        (4, 4, subscribers),
        (8, 8, subscribers // 10),
        (8, 8, subscribers),
        (8, 4, subscribers),
    ):
        label = cluster_label(processes, holders, subs)
        results[label] = {"wsevents": cluster(processes, holders, subs, count // processes, tmp)}
    return results


def cluster_label(processes: int, holders: int, subscribers: int) -> str:
    return f"{processes} processes on Redis, {subscribers} subscribers on {holders}"


def sizes_of(results: dict[str, Any], prefix: str) -> list[int]:
    return [int(label.rsplit(" ", 1)[1]) for label in results if label.startswith(prefix)]


def scale_tables(results: dict[str, Any]) -> str:
    """The scale set as markdown tables."""
    lines = [
        "**Idle connections in one process** (RSS per connection; the server's CPU while "
        "they idle, % of a core)",
        "",
    ]
    lines += [
        "| connections | raw ASGI | wsevents | ratio | CPU raw ASGI | CPU wsevents |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for size in sizes_of(results, "idle connections: "):
        row = results[f"idle connections: {size}"]
        raw, ours = (row[k]["bytes_per_connection"] for k in ("raw ASGI (json)", "wsevents"))
        cpu = [row[k].get("idle_cpu_percent") for k in ("raw ASGI (json)", "wsevents")]
        shown = [f"{c:.1f}%" if c is not None else "-" for c in cpu]
        lines.append(
            f"| {size:,} | {raw:,.0f} B | {ours:,.0f} B | {ours / raw:.2f} | {shown[0]} "
            f"| {shown[1]} |"
        )
    lines += [
        "",
        "**Fan-out burst in one process** (deliveries/s, delivery latency p50 / p99, the "
        "server's CPU per delivery)",
        "",
    ]
    lines += ["| subscribers | raw in-process loop | wsevents publish | ratio |"]
    lines += ["| --- | --- | --- | --- |"]
    for size in sizes_of(results, "fan-out burst to "):
        row = results[f"fan-out burst to {size}"]
        raw, ours = row["raw in-process fan-out"], row["wsevents publish"]
        cells = [
            f"{r['deliveries_per_second']:,.0f}/s, {r['p50_ms']:,.0f} / {r['p99_ms']:,.0f} ms"
            + (f", {r['cpu_us_per_delivery']:.1f} µs CPU" if "cpu_us_per_delivery" in r else "")
            for r in (raw, ours)
        ]
        ratio = ours["deliveries_per_second"] / raw["deliveries_per_second"]
        lines.append(f"| {size:,} | {cells[0]} | {cells[1]} | {ratio:.2f} |")
    for label in results:
        if label.startswith("reconnect storm: "):
            lines += ["", f"**{label} clients** (the server restarted under them)", ""]
            lines += ["| server | handshakes/s | until all back | attempts |"]
            lines += ["| --- | --- | --- | --- |"]
            for name, r in results[label].items():
                lines.append(
                    f"| {name} | {r['handshakes_per_second']:,.0f} "
                    f"| {r['seconds_until_all_back']:.1f} s | {r['attempts']:,} |"
                )
    lines += ["", "**Processes on one Redis** (each publishes; CPU: the process's own seconds)", ""]
    lines += [
        "| setup | deliveries/s in all | per process | per CPU second, per process "
        "| Redis messages per publication | p99 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, row in results.items():
        if not (label.startswith("in one process") or "on Redis" in label):
            continue
        r = row["wsevents"]
        per_process = statistics.median(r["per_process"][: r["holders"]])
        per_cpu = statistics.median(r["deliveries_per_cpu_second"])
        messages = r["redis_messages_per_publication"]
        lines.append(
            f"| {label} | {r['deliveries_per_second']:,.0f} | {per_process:,.0f} "
            f"| {per_cpu:,.0f} | {'-' if 'one process' in label else f'{messages:.2f}'} "
            f"| {r['p99_ms']:,.0f} ms |"
        )
    return "\n".join(lines) + "\n"


def scale_targets(results: dict[str, Any]) -> str:
    """The issue's scale targets: measured, and whether met."""
    rows = ["| target | measured | met |", "| --- | --- | --- |"]
    sizes = sizes_of(results, "idle connections: ")
    big = max(sizes)
    memory = results[f"idle connections: {big}"]
    ratio = (
        memory["wsevents"]["bytes_per_connection"]
        / memory["raw ASGI (json)"]["bytes_per_connection"]
    )
    rows.append(
        f"| {big:,} idle connections: at most 1.15 times raw ASGI's memory per connection "
        f"| {ratio:.2f} | {'yes' if ratio <= 1.15 else 'no'} |"
    )
    fan = {s: results[f"fan-out burst to {s}"] for s in sizes}

    def kept(size: int, name: str) -> float:
        rate = fan[size][name]["deliveries_per_second"]
        return float(rate / fan[sizes[0]][name]["deliveries_per_second"])

    for size in sizes[1:]:
        ours, raw = kept(size, "wsevents publish"), kept(size, "raw in-process fan-out")
        cost = ""
        if "cpu_us_per_delivery" in fan[size]["wsevents publish"]:
            first = fan[sizes[0]]["wsevents publish"]["cpu_us_per_delivery"]
            here = fan[size]["wsevents publish"]["cpu_us_per_delivery"]
            cost = f"; the server's CPU per delivery {here:.1f} µs against {first:.1f}"
        rows.append(
            f"| fan-out to {size:,}: at least 0.9 of the deliveries/s at {sizes[0]:,} "
            f"| {ours:.2f} (the raw loop in the same run: {raw:.2f}){cost} "
            f"| {'yes' if ours >= 0.9 else 'no'} |"
        )
    one = next(row["wsevents"] for label, row in results.items() if label.startswith("in one"))
    alone = one["deliveries_per_cpu_second"][0]
    for label, row in results.items():
        if "on Redis" in label and label.startswith("8 processes") and "on 8" in label:
            r = row["wsevents"]
            if r["subscribers"] != one["subscribers"]:
                continue
            kept = statistics.median(r["deliveries_per_cpu_second"]) / alone
            rows.append(
                f"| through Redis ({label}): per-process deliveries at least 0.8 of in-process, "
                f"per CPU second (eight processes share two cores here) "
                f"| {kept:.2f} | {'yes' if kept >= 0.8 else 'no'} |"
            )
    messages = [
        (label, row["wsevents"]["redis_messages_per_publication"], row["wsevents"]["holders"])
        for label, row in results.items()
        if "on Redis" in label
    ]
    exact = all(abs(m - holders) < 1e-9 for _, m, holders in messages)
    rows.append(
        "| Redis messages per publication equal the processes holding the topic, flat as "
        "subscribers grow tenfold | "
        + "; ".join(f"{label}: {m:.2f}" for label, m, _ in messages)
        + f" | {'yes' if exact else 'no'} |"
    )
    return "\n".join(rows) + "\n"

"""Redis Cluster against one Redis: ``python bench/run.py --cluster [--quick]``.

Four wsevents processes on one backplane, subscribers spread over them and
over 1,000 topics (each topic held on every process), every process
publishing over the topics; then the same with one hot topic. On one Redis
(``PUBLISH``) and on a cluster of three primaries with a replica each
(``SPUBLISH``), started here as the tests start them. Measured: deliveries/s,
the commands each Redis node ran per publication (``INFO commandstats``,
reset after the subscriptions), and how the publications spread over the
shards. Results go to bench/results/bench-cluster.json, the picture to
docs/cluster-shards.png (docs/performance.md shows both).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bench.run import ROOT, Server, finished, go, held
from bench.scale import metrics
from tests.conftest import RedisServer
from tests.redis_sets import ClusterSet, _client

PROCESSES = 4
PICTURE = "cluster-shards.png"


def commandstats(ports: list[int]) -> dict[int, dict[str, int]]:
    """The calls of each command on each node since its statistics were reset."""
    found = {}
    for port in ports:
        stats = _client(port).info("commandstats")
        found[port] = {
            name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()
        }
    return found


def one_round(
    url: str, ports: list[int], connections: int, topics: int, count: int
) -> dict[str, Any]:
    """Four processes on ``url``; subscribers over ``topics``; ``count`` publications each."""
    servers = [Server("wsevents_app", {"WSEVENTS_BACKPLANE": url}) for _ in range(PROCESSES)]
    try:
        client = held(
            ["topics", ",".join(server.url("/") for server in servers),
             "--connections", str(connections), "--topics", str(topics),
             "--count", str(count)]
        )  # fmt: skip
        for port in ports:  # what the publications cost, not the subscriptions
            _client(port).config_resetstat()
        before = [metrics(server.port) for server in servers]
        go(client)
        result = finished(client)
        stats = commandstats(ports)
        after = [metrics(server.port) for server in servers]
    finally:
        for server in servers:
            server.stop()
    publications = result["publications"]
    # Pipelines sent again after a round trip that timed out (a loop busy past
    # command_timeout): Redis ran them twice, the receivers dropped the second.
    result["publish_retries"] = sum(
        a.get("publish_retries", 0.0) - b.get("publish_retries", 0.0)
        for a, b in zip(after, before, strict=True)
    )
    nodes = {}
    for port, calls in stats.items():
        published = calls.get("spublish", 0) + calls.get("publish", 0)
        nodes[str(port)] = {
            "publish_commands": published,
            "commands": sum(calls.values()),
            "publish_commands_per_publication": published / publications,
            "commands_per_publication": sum(calls.values()) / publications,
        }
    everywhere = sum(node["publish_commands"] for node in nodes.values()) or 1
    for node in nodes.values():
        node["share"] = node["publish_commands"] / everywhere
    return {**result, "nodes": nodes}


def cluster_rounds(quick: bool, tmp: Path) -> dict[str, Any]:
    """Spread over 1,000 topics and one hot topic, on one Redis and on a cluster."""
    topics = 100 if quick else 1000
    connections = 4 * topics  # a subscriber of each topic on each process
    spread_count = 200 if quick else 500  # publications per process
    hot_count = 5 if quick else 20
    spread, hot = f"{topics:,} topics", "one hot topic"
    results: dict[str, Any] = {}
    redis = RedisServer(tmp)
    redis.start()
    try:
        port = int(redis.url.rsplit(":", 1)[1].split("/")[0])
        results[f"one Redis, {spread}"] = one_round(
            redis.url, [port], connections, topics, spread_count
        )
        results[f"one Redis, {hot}"] = one_round(redis.url, [port], connections // 10, 1, hot_count)
    finally:
        redis.kill()
    directory = tmp / "cluster"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    found = ClusterSet(directory, node_timeout=30_000)
    found.start()
    try:
        primaries = found.primaries()
        results[f"cluster of 3 shards, {spread}"] = one_round(
            found.url, primaries, connections, topics, spread_count
        )
        results[f"cluster of 3 shards, {hot}"] = one_round(
            found.url, primaries, connections // 10, 1, hot_count
        )
    finally:
        found.stop()
    return results


def cluster_table(results: dict[str, Any]) -> str:
    """The rounds as a markdown table: one row per setup, the nodes in their cells."""
    lines = [
        f"**{PROCESSES} processes, subscribers on each, every process publishing** "
        "(publish commands: SPUBLISH on the cluster, PUBLISH on one Redis; all commands: "
        "everything the node ran during the publications, the backplane's own looks included)",
        "",
        "| setup | deliveries/s | p99 | publish commands per publication, per node "
        "| all commands per publication, per node | share of the publications, per node "
        "| publications sent again |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, r in results.items():
        nodes = list(r["nodes"].values())

        def each(key: str, form: str, nodes: list[dict[str, float]] = nodes) -> str:
            return " / ".join(format(node[key], form) for node in nodes)

        lines.append(
            f"| {label} | {r['deliveries_per_second']:,.0f} | {r['p99_ms']:,.0f} ms "
            f"| {each('publish_commands_per_publication', '.2f')} "
            f"| {each('commands_per_publication', '.2f')} | {each('share', '.0%')} "
            f"| {r['publish_retries']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def draw(results: dict[str, Any], out: Path) -> Path:
    """Each node's share of the publications, for each setup, as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (share, rate) = plt.subplots(1, 2, figsize=(10, 4.6))
    labels = list(results)
    for index, label in enumerate(labels):
        nodes = [results[label]["nodes"][port] for port in sorted(results[label]["nodes"])]
        bottom = 0.0
        for number, node in enumerate(nodes):
            one = len(nodes) == 1
            share.bar(
                index,
                node["share"] * 100,
                bottom=bottom,
                color="C7" if one else f"C{number}",
                edgecolor="white",
                label=("one Redis" if one else f"cluster primary {number + 1}"),
            )
            bottom += node["share"] * 100
    handles, names = share.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    figure.legend(unique.values(), unique.keys(), fontsize=8, loc="lower center", ncol=4)
    share.set_xticks(range(len(labels)), [label.replace(", ", "\n") for label in labels])
    share.set_ylabel("share of the publications per node (%)")
    share.set_title("Where the publications go")
    share.tick_params(axis="x", labelsize=7)
    rate.bar(range(len(labels)), [results[label]["deliveries_per_second"] for label in labels])
    rate.set_xticks(range(len(labels)), [label.replace(", ", "\n") for label in labels])
    rate.set_ylabel("deliveries/s, in all")
    rate.set_title(f"{PROCESSES} processes, two cores")
    rate.tick_params(axis="x", labelsize=7)
    figure.tight_layout(rect=(0, 0.07, 1, 1))  # the legend below
    path = out / PICTURE
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def run_cluster(quick: bool, tmp: Path) -> int:
    """The cluster set, once: its table, its JSON and its picture."""
    results = cluster_rounds(quick, tmp)
    table = cluster_table(results)
    print(table)
    name = "bench-cluster-quick.json" if quick else "bench-cluster.json"
    stored = {"table": table, "results": results}
    (ROOT / "bench" / "results" / name).write_text(json.dumps(stored, indent=2) + "\n")
    print(f"drew {draw(results, tmp if quick else ROOT / 'docs')}")
    missing = [label for label, r in results.items() if r["delivered"] < r["expected"]]
    if missing:
        print(f"missing deliveries: {missing}")
        return 1
    return 0

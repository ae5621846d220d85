"""The benchmark's parts work: every baseline server answers correctly under the load generator.

The figures themselves come from `make bench`; here only that every server
and scenario runs and that the load generator's checks would catch a wrong reply.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import servers
from bench.targets import targets

from .conftest import serve

ROOT = Path(__file__).resolve().parent.parent
SIO = "/socket.io/?EIO=4&transport=websocket"


def load(*args: str) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), *args],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("app", "path", "command", "extra"),
    [
        ("raw_json", "/", "echo", ()),
        ("raw_pydantic", "/", "echo", ()),
        ("bare_loop", "/", "echo", ()),
        ("starlette_pydantic", "/", "echo", ()),
        ("python_socketio", SIO, "socketio", ()),
        ("wsevents_app", "/", "echo", ()),
        ("raw_msgpack", "/", "echo", ("--msgpack",)),
        ("raw_msgpack_pydantic", "/", "echo", ("--msgpack",)),
        ("wsevents_app", "/", "echo", ("--msgpack",)),
        # each request asks the load generator once, and replies with its answer
        ("raw_ask", "/", "echo", ("--event", "ask")),
        ("wsevents_app", "/", "echo", ("--event", "ask")),
        ("wsevents_app", "/?wsevents-session=bench-session-0001", "echo", ("--event", "echo_once")),
        # telemetry (docs/telemetry.md): frames carrying traceparent, spans made or not
        ("wsevents_app", "/", "echo", ("--traced",)),
        ("wsevents_traced_app", "/", "echo", ("--traced",)),
        ("wsevents_traced_app", "/", "echo", ()),
        ("bare_loop_traced", "/", "echo", ("--traced",)),
    ],
)
def test_every_echo_server_answers_every_request_correctly(
    app: str, path: str, command: str, extra: tuple[str, ...]
) -> None:
    with serve(getattr(servers, app)) as address:
        result = load(
            command, f"ws://{address}{path}", "--connections", "3", "--window", "4",
            "--seconds", "0.3", *extra,
        )  # fmt: skip
    assert result["bad_replies"] == 0
    assert result["messages_per_second"] > 0
    assert result["p50_ms"] <= result["p99_ms"]


@pytest.mark.parametrize(
    ("app", "path", "extra"),
    [
        ("raw_fanout", "/?sub=1", ()),
        ("python_socketio", SIO, ("--socketio",)),
        ("wsevents_app", "/?sub=1", ()),
    ],
)
def test_every_fanout_server_delivers_everything(
    app: str, path: str, extra: tuple[str, ...]
) -> None:
    with serve(getattr(servers, app)) as address:
        result = load(
            "fanout", f"ws://{address}{path}", "--connections", "20", "--count", "5", *extra
        )
    assert result["delivered"] == result["expected"] == 100


@pytest.mark.parametrize("app", ["raw_fanout", "wsevents_app"])
def test_client_triggered_publications_reach_every_subscriber(app: str) -> None:
    with serve(getattr(servers, app)) as address:
        result = load(
            "trigger", f"ws://{address}/?sub=1", "--publish-url", f"ws://{address}/",
            "--connections", "20", "--triggers", "4", "--seconds", "0.5",
        )  # fmt: skip
    assert result["bad_replies"] == 0
    assert result["publications_per_second"] > 0
    assert result["delivered"] == result["expected"] > 0  # every answered one, to all 20
    assert result["deliveries_per_second"] == pytest.approx(
        result["publications_per_second"] * 20, rel=0.2
    )
    assert 0 < result["p50_ms"] <= result["p99_ms"]


@pytest.mark.parametrize("app", ["raw_json", "wsevents_app"])
def test_a_reconnect_storm_brings_every_client_back_after_a_restart(app: str) -> None:
    from bench.run import Server, finished, held

    server = Server(app)
    client = held(  # it ends once all are back; 60 s for a restart on a loaded machine
        ["storm", server.url("/"), "--connections", "50", "--sources", "4", "--seconds", "60"]
    )
    server.stop()
    server = Server(app, port=server.port)
    try:
        result = finished(client, timeout=60)
    finally:
        server.stop()
    assert result["dropped"] == result["back"] == 50
    assert result["attempts"] >= 50
    assert result["seconds_until_all_back"] > 0


def test_eight_processes_on_redis_send_each_publication_to_the_processes_holding_it(
    tmp_path: Path,
) -> None:
    from bench.scale import cluster

    result = cluster(8, 4, 40, 2, tmp_path)  # subscribers on 4 of the 8; each publishes 2
    assert result["delivered"] == result["expected"] == 8 * 2 * 40
    assert result["delivered_per_process"][:4] == [8 * 2 * 10] * 4
    assert result["published"] == 16
    assert result["redis_messages_per_publication"] == 4.0  # the holders, not all eight
    assert len(result["deliveries_per_cpu_second"]) == 4


def test_three_processes_on_redis_hold_the_connections_hear_the_burst_and_get_them_back(
    tmp_path: Path,
) -> None:
    from bench.spread import PROCESSES, burst, idle_memory, shares, storm

    assert shares(100) == [34, 33, 33]
    memory = idle_memory(60, tmp_path)
    assert {r["processes"] for r in memory.values()} == {PROCESSES}
    assert all(r["bytes_per_connection"] > 0 for r in memory.values())
    heard = burst(60, tmp_path)  # published in the first process, heard in all three
    assert heard["delivered"] == heard["expected"] == 60 * heard["publications"]
    assert len(heard["cpu_seconds"]) == PROCESSES
    assert 0 < heard["p50_ms"] <= heard["p99_ms"]
    raw = burst(20, tmp_path, "raw_fanout", 1)  # raw ASGI's loop, one process, no Redis
    assert raw["delivered"] == raw["expected"] == 20 * raw["publications"]
    assert len(raw["cpu_seconds"]) == 1
    back = storm(60, tmp_path)  # the three restart under them
    assert back["dropped"] == back["back"] == 60
    assert back["seconds_until_all_back"] > 0


def test_spread_targets_compare_the_large_burst_with_the_small_and_say_what_raw_did() -> None:
    from bench.spread import spread_tables, spread_targets

    def shot(connections: int, rate: float, cpu: float) -> dict[str, Any]:
        return {
            "connections": connections, "publications": 4, "delivered": 8, "expected": 8,
            "deliveries_per_second": rate, "cpu_us_per_delivery": cpu,
            "p50_ms": 1.0, "p99_ms": 2.0,
        }  # fmt: skip

    results = {
        "idle": {
            "raw ASGI (json)": {"bytes_per_connection": 20_000.0, "processes": 3},
            "wsevents": {"bytes_per_connection": 22_000.0, "processes": 3},
        },
        "burst": {"1000": shot(1000, 100_000, 10.0), "50000": shot(50_000, 90_000, 12.5)},
        "raw burst": {"1000": shot(333, 80_000, 10.0), "50000": shot(16_666, 40_000, 20.0)},
    }
    storm = {"connections": 50_000, "dropped": 50_000, "back": 49_999, "attempts": 60_000}
    storm.update({"seconds_until_all_back": 10.0, "handshakes_per_second": 5_000.0})
    results["storm"] = {**storm, "delivered": 49_999, "expected": 50_000}
    rows = spread_targets(results).splitlines()[2:]
    assert rows[0].endswith("| 1.10 | yes |")  # memory: 22,000 / 20,000
    assert "| 0.90; raw ASGI's loop in one process, 16,666 against 333: 0.50 | yes |" in rows[1]
    assert "| 0.80 (12.5 µs against 10.0)" in rows[2]
    assert rows[2].endswith("| no |")
    assert rows[3].endswith("| no |")  # one client did not come back
    assert "49,999 back in 10.0 s" in spread_tables(results)


def test_the_confirmed_publish_probe_times_publishes_pings_and_the_bare_script(
    tmp_path: Path,
) -> None:
    from bench.run import CONFIRMED_NAME, confirmed_round

    found = confirmed_round(40, tmp_path)[CONFIRMED_NAME]
    assert set(found) == {"publish_p50_us", "ping_p50_us", "script_p50_us"}
    assert all(value > 0 for value in found.values())


def test_four_processes_on_a_cluster_publish_each_topic_on_its_own_shard_only(
    tmp_path: Path,
) -> None:
    from bench.shards import one_round

    from .redis_sets import ClusterSet

    found = ClusterSet(tmp_path, node_timeout=30_000)
    found.start()
    try:
        primaries = found.primaries()
        spread = one_round(found.url, primaries, 4 * 30, 30, 6)  # 30 topics, 6 each
        hot = one_round(found.url, primaries, 40, 1, 2)
    finally:
        found.stop()
    assert spread["delivered"] == spread["expected"] == 4 * 6 * 4  # 4 holders per topic
    assert hot["delivered"] == hot["expected"] == 4 * 2 * 40
    published = [node["publish_commands"] for node in spread["nodes"].values()]
    assert sum(published) == 4 * 6 + spread["publish_retries"]  # one SPUBLISH each
    assert sum(1 for count in published if count) == 3  # 30 topics: on every shard
    shares = sorted(node["share"] for node in hot["nodes"].values())
    assert shares == [0.0, 0.0, 1.0]  # one topic: one shard


def test_the_presence_load_counts_every_member_s_first_frame_and_the_diffs() -> None:
    with serve(servers.wsevents_presence_app) as address:
        result = load(
            "presence", f"ws://{address}/room", "--connections", "20", "--churn", "5",
            "--seconds", "1", "--diffs",
        )  # fmt: skip
    assert result["first_frames"] == result["members"] == 20
    assert 3 <= result["joins_per_second"] <= 6
    # Two windows a second, each with the churn's joins and leaves, to each of 20 members;
    # on a loaded machine one window can fall outside the measured second (20 frames in
    # 1.0006 s is 19.99 a second), so the floor is half a window's frames.
    assert 10 <= result["diff_frames_per_second"] <= 60
    assert result["bytes_per_subscriber_per_second"] > 0
    with serve(servers.wsevents_presence_quiet_app) as address:
        quiet = load(
            "presence", f"ws://{address}/room", "--connections", "20", "--churn", "5",
            "--seconds", "1",
        )  # fmt: skip
    assert quiet["diff_frames_per_second"] == 0 == quiet["first_frames"]


def test_the_load_generator_catches_a_wrong_reply() -> None:
    async def liar(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await servers._lifespan(receive, send)
            return
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            frame = json.loads(message["text"])
            frame["data"]["n"] += 1  # a wrong answer with the right id
            await send({"type": "websocket.send", "text": json.dumps(frame)})

    with serve(liar) as address:
        result = load("echo", f"ws://{address}/", "--seconds", "0.2")
    assert result["bad_replies"] > 0
    assert result["messages_per_second"] == 0


def _results(wsevents: float) -> dict[str, list[dict[str, Any]]]:
    """Three repetitions of every scenario the targets read; wsevents echoes at ``wsevents``."""

    def rate(value: float) -> dict[str, Any]:
        return {"messages_per_second": value, "p50_ms": 0.1, "p99_ms": 1.0}

    def fan(value: float) -> dict[str, Any]:
        return {"deliveries_per_second": value, "p99_ms": 2.0}

    rounds: dict[str, dict[str, Any]] = {
        "echo JSON, C=50 W=10": {
            "raw ASGI (json)": rate(100),
            "raw ASGI + pydantic-core one pass": rate(110),
            "bare loop: msgspec + pydantic, no framework": rate(104),
            "python-socketio": rate(20),
            "wsevents": rate(wsevents),
            "wsevents, a handler with one cached dependency": rate(wsevents * 0.9),
        },
        "echo MessagePack, C=50 W=10": {
            "raw ASGI (msgpack)": rate(100),
            "raw ASGI (msgpack) + pydantic": rate(85),
            "wsevents (msgpack)": rate(wsevents - 20),
        },
        "echo JSON, C=1 W=1": {"raw ASGI (json)": rate(1), "wsevents": rate(1)},
        "fan-out to 1000": {
            "raw in-process fan-out": fan(100),
            "python-socketio rooms": fan(25),
            "wsevents publish": fan(96),
        },
        "fan-out across processes": {"wsevents across two processes through Redis": fan(50)},
        "memory per idle connection": {
            "raw ASGI (json)": {"bytes_per_connection": 20_000},
            "wsevents": {"bytes_per_connection": 23_600},
        },
        "presence: 5000 members, 50 joins and leaves a second": {
            name: {
                "diff_frames_per_second": frames,
                "bytes_per_subscriber_per_second": 4000.0 if frames else 0.0,
                "redis_commands_per_second": commands,
            }
            for name, frames, commands in (("diffs", 9800.0, 800.0), ("no diffs", 0.0, 600.0))
        },
    }
    return {label: [round_] * 3 for label, round_ in rounds.items()}


def test_targets_are_ratios_within_each_repetition_and_say_whether_they_are_met() -> None:
    table = targets(_results(wsevents=99))
    lines = table.splitlines()
    assert "| 0.90 (0.90-0.90) | yes |" in lines[2]  # 99 / 110
    assert "5.0 (5.0-5.0) times" in lines[3]
    assert lines[3].endswith("| no |")  # 4.95 is not 5
    assert "no framework) 5.2 (5.2-5.2) times python-socketio, and wsevents 0.95" in lines[3]
    assert (
        "0.79 (0.79-0.79); the MessagePack echo that validates with pydantic measured 0.85"
        in lines[4]
    )
    assert "+0.000 ms" in lines[5]
    assert lines[5].endswith("| yes |")
    assert "| 0.96 (0.96-0.96) | yes |" in lines[6]
    assert (
        "| 9,800 presence frames/s delivered, 4,000 B per member per second, 800 Redis "
        "commands/s (without diffs: 600) | reported |"
    ) in lines[-1]
    assert "3.8 (3.8-3.8) times | no |" in lines[7]
    assert "| 1.18 (1.18-1.18) | no |" in lines[8]
    assert "50 deliveries/s" in lines[9]
    assert "| 0.90 (0.90-0.90) of the same echo without it | reported |" in lines[10]
    assert targets(_results(wsevents=110)).splitlines()[3].endswith("| yes |")


def test_only_runs_the_scenarios_named_and_refuses_one_that_does_not_exist() -> None:
    run = [sys.executable, str(ROOT / "bench" / "run.py")]
    refused = subprocess.run(
        [*run, "--only", "echo JSON, C=50 W=11"], cwd=ROOT, capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert "no scenario ['echo JSON, C=50 W=11']" in refused.stderr
    assert "'echo MessagePack, C=50 W=10'" in refused.stderr  # the names it knows
    subprocess.run(
        [*run, "--quick", "--repetitions", "1", "--seconds", "0.2",
         "--only", "echo MessagePack, C=50 W=10"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    stored = json.loads((ROOT / "bench" / "results" / "bench-quick.json").read_text())
    assert list(stored["results"]) == ["echo MessagePack, C=50 W=10"]
    assert len(stored["results"]["echo MessagePack, C=50 W=10"]) == 1
    assert "targets" not in stored  # they need every scenario


def _scale_results() -> dict[str, Any]:
    """A scale set as bench/scale.py stores it, with round numbers."""

    def fan(rate: float, p99: float) -> dict[str, Any]:
        return {"deliveries_per_second": rate, "p50_ms": p99 / 2, "p99_ms": p99}

    def run(processes: int, holders: int, subscribers: int, per_cpu: float) -> dict[str, Any]:
        return {
            "wsevents": {
                "processes": processes,
                "holders": holders,
                "subscribers": subscribers,
                "deliveries_per_second": 1000.0 * holders,
                "per_process": [1000.0] * processes,
                "deliveries_per_cpu_second": [per_cpu] * holders,
                "redis_messages_per_publication": None if processes == 1 else float(holders),
                "p99_ms": 10.0,
            }
        }

    results: dict[str, Any] = {}
    for size, raw, ours in (
        (1000, 20_000, 21_000),
        (10_000, 20_000, 22_000),
        (19_000, 20_000, 23_400),
    ):
        results[f"idle connections: {size}"] = {
            "raw ASGI (json)": {"bytes_per_connection": raw, "idle_cpu_percent": 0.5},
            "wsevents": {"bytes_per_connection": ours, "idle_cpu_percent": size / 2500},
        }
    for size, rate in ((1000, 100.0), (10_000, 95.0), (19_000, 80.0)):
        results[f"fan-out burst to {size}"] = {
            "raw in-process fan-out": fan(100.0, 10.0),
            "wsevents publish": fan(rate, 12.0),
        }
    results["in one process: 8000 subscribers"] = run(1, 1, 8000, 100.0)
    results["8 processes on Redis, 800 subscribers on 8"] = run(8, 8, 800, 70.0)
    results["8 processes on Redis, 8000 subscribers on 8"] = run(8, 8, 8000, 85.0)
    results["8 processes on Redis, 8000 subscribers on 4"] = run(8, 4, 8000, 90.0)
    return results


def test_scale_targets_read_the_largest_size_and_the_processes_on_redis() -> None:
    from bench.scale import scale_tables, scale_targets

    rows = scale_targets(_scale_results()).splitlines()
    assert rows[2] == (
        "| 19,000 idle connections: at most 1.15 times raw ASGI's memory per connection "
        "| 1.17 | no |"
    )
    assert rows[3].endswith(
        "fan-out to 10,000: at least 0.9 of the deliveries/s at 1,000 "
        "| 0.95 (the raw loop in the same run: 1.00) | yes |"
    )
    assert rows[4].endswith(
        "fan-out to 19,000: at least 0.9 of the deliveries/s at 1,000 "
        "| 0.80 (the raw loop in the same run: 1.00) | no |"
    )
    assert "8000 subscribers on 8): per-process deliveries at least 0.8" in rows[5]
    assert rows[5].endswith("| 0.85 | yes |")  # 85 per CPU second against 100 in one process
    assert rows[6].endswith("| yes |")  # 8.00, 8.00 and 4.00: the holders
    table = scale_tables(_scale_results())
    assert "| 19,000 | 20,000 B | 23,400 B | 1.17 | 0.5% | 7.6% |" in table
    assert (
        "| 8 processes on Redis, 8000 subscribers on 4 | 4,000 | 1,000 | 90 | 4.00 | 10 ms |"
        in table
    )


def test_the_telemetry_target_compares_on_with_off_and_with_the_sdks_own_floor() -> None:
    from bench.targets import FLOOR, OFF, ON, TRACED, telemetry_rows

    carried = "wsevents, telemetry off, frames with traceparent"
    rates = {OFF: 1000.0, FLOOR: 200.0, ON: 190.0, carried: 960.0}
    rounds = [{name: {"messages_per_second": rate} for name, rate in rates.items()}]
    on, same = telemetry_rows({TRACED: rounds})
    assert "| 0.19 (0.19-0.19); the bare loop with one SDK span per frame" in on
    assert "measured 0.20 (0.20-0.20) of wsevents off" in on
    assert "wsevents on 0.95 (0.95-0.95) of that bare loop | no |" in on
    assert same.endswith("| 0.96 (0.96-0.96) of frames without | yes |")
    assert telemetry_rows({}) == []

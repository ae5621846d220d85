"""The scaling curves of `make bench`, drawn from bench/results/bench-scale.json into docs/.

    python bench/plots.py [bench/results/bench-scale.json]

matplotlib is a bench-only dependency (the ``bench`` extra).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale import sizes_of  # noqa: E402 - after the path is set

PICTURES = ("scale-fanout.png", "scale-memory.png", "scale-processes.png")


def draw(results: dict[str, Any], out: Path) -> list[Path]:
    """Draw the three pictures into ``out``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    sizes = sizes_of(results, "fan-out burst to ")
    figure, (rate, latency) = plt.subplots(1, 2, figsize=(10, 4))
    for name, label in (
        ("raw in-process fan-out", "raw ASGI loop"),
        ("wsevents publish", "wsevents"),
    ):
        rows = [results[f"fan-out burst to {s}"][name] for s in sizes]
        rate.plot(sizes, [r["deliveries_per_second"] for r in rows], marker="o", label=label)
        latency.plot(sizes, [r["p99_ms"] for r in rows], marker="o", label=label)
    rate.set(xscale="log", xlabel="subscribers", ylabel="deliveries/s", title="Fan-out burst")
    rate.set_ylim(bottom=0)
    latency.set(xscale="log", yscale="log", xlabel="subscribers", ylabel="p99 delivery latency, ms")
    latency.set_title("p99 latency of the burst")
    for axes in (rate, latency):
        axes.grid(True, alpha=0.3)
        axes.legend()
    written.append(save(figure, out / PICTURES[0]))

    sizes = sizes_of(results, "idle connections: ")
    figure, axes = plt.subplots(figsize=(6, 4))
    for name in ("raw ASGI (json)", "wsevents"):
        kib = [
            results[f"idle connections: {s}"][name]["bytes_per_connection"] / 1024 for s in sizes
        ]
        axes.plot(sizes, kib, marker="o", label=name)
    axes.set(xscale="log", xlabel="idle connections in one process", ylabel="KiB per connection")
    axes.set_ylim(bottom=0)
    axes.set_title("Memory per idle connection")
    axes.grid(True, alpha=0.3)
    axes.legend()
    written.append(save(figure, out / PICTURES[1]))

    clustered = [
        row["wsevents"]
        for label, row in results.items()
        if label.startswith("in one process") or "on Redis" in label
    ]
    most = max(r["subscribers"] for r in clustered)
    runs = [r for r in clustered if r["holders"] == r["processes"] and r["subscribers"] == most]
    runs.sort(key=lambda r: r["processes"])
    processes = [r["processes"] for r in runs]
    figure, (per_cpu, wall) = plt.subplots(1, 2, figsize=(10, 4))
    per_cpu.plot(
        processes, [statistics.median(r["deliveries_per_cpu_second"]) for r in runs], marker="o"
    )
    per_cpu.set(
        xlabel="processes (1: in-process; more: on one Redis)", ylabel="deliveries per CPU second"
    )
    per_cpu.set_title("Per process, per CPU second")
    per_cpu.set_ylim(bottom=0)
    wall.plot(processes, [r["deliveries_per_second"] for r in runs], marker="o", label="in all")
    wall.plot(
        processes,
        [statistics.median(r["per_process"]) for r in runs],
        marker="o",
        label="per process",
    )
    wall.set(xlabel="processes sharing this machine's two cores", ylabel="deliveries/s")
    wall.set_title("Wall clock")
    wall.set_ylim(bottom=0)
    wall.legend()
    for axes in (per_cpu, wall):
        axes.grid(True, alpha=0.3)
        axes.set_xticks(processes)
    written.append(save(figure, out / PICTURES[2]))
    return written


def save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench/results/bench-scale.json"
    for path in draw(json.loads(source.read_text())["results"], ROOT / "docs"):
        print(path)


if __name__ == "__main__":
    main()

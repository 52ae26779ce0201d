"""What the benchmarks share: interleaved A/B rounds and the figures they report.

The machine is shared (other test runs come and go), so no figure is a single timed run: ours
and its peer run in alternating rounds (ABBA order, so neither always goes first), each round
yields one ratio, and the report is the median ratio with the medians of both sides.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

Round = Callable[[], Awaitable[float]]  # one round; returns its throughput (operations per second)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def throughput(operations: int, run: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await run()
    return operations / (time.perf_counter() - started)


async def interleaved(ours: Round, peers: dict[str, Round], rounds: int) -> dict[str, Any]:
    """`rounds` rounds of ours and every peer, alternating who goes first."""
    samples: dict[str, list[float]] = {"ours": [], **{name: [] for name in peers}}
    contenders: list[tuple[str, Round]] = [("ours", ours), *peers.items()]
    for n in range(rounds):
        for name, run in contenders if n % 2 == 0 else list(reversed(contenders)):
            samples[name].append(await run())
    result: dict[str, Any] = {
        "rounds": rounds,
        "ours_per_second_median": round(statistics.median(samples["ours"]), 1),
    }
    for name in peers:
        ratios = [a / b for a, b in zip(samples["ours"], samples[name], strict=True)]
        result[f"{name}_per_second_median"] = round(statistics.median(samples[name]), 1)
        result[f"ratio_to_{name}_median"] = round(statistics.median(ratios), 3)
        result[f"ratio_to_{name}_rounds"] = [round(r, 3) for r in ratios]
    return result


def latency_summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "count": len(samples_ms),
        "p50_ms": round(percentile(samples_ms, 50), 2),
        "p99_ms": round(percentile(samples_ms, 99), 2),
        "max_ms": round(max(samples_ms), 2),
        "mean_ms": round(statistics.fmean(samples_ms), 2),
    }

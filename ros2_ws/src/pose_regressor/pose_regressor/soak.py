"""Soak checks for long runs of the localizer: memory growth and latency stability (ROS-free).

`pose-regressor eval-node --loop --duration D` samples the node process's resident memory once a
second and, for every pose, its end-to-end latency. `soak_report` compares the first window after
the warm-up with the last window of the run:

* RSS growth: median RSS of the last window over the median of the first, in percent;
* latency p99 change: p99 of the last window over the p99 of the first, in percent (end-to-end
  latency: the pose's receive time minus the replay's publish time of the set's last image);
* the node is still alive at the end; no set was dropped.

Windows and warm-up are one minute each (`SoakLimits`), shortened to a quarter of the run for runs
shorter than four minutes, so a 60 s run in CI compares 15-30 s with 45-60 s.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SoakLimits:
    max_rss_growth_pct: float = 5.0
    max_p99_change_pct: float = 20.0
    window_s: float = 60.0
    warmup_s: float = 60.0

    def scaled(self, duration_s: float) -> tuple[float, float]:
        """(warm-up, window) for a run of `duration_s` seconds."""
        quarter = duration_s / 4
        return min(self.warmup_s, quarter), min(self.window_s, quarter)


def rss_bytes(pid: int) -> int | None:
    """Resident set size of process `pid` (Linux /proc), or None if it cannot be read (gone, not Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class RssSampler:
    """Samples a process's RSS every `period_s` on a daemon thread: (monotonic s, bytes) pairs."""

    def __init__(self, pid: int, period_s: float = 1.0) -> None:
        self.pid = pid
        self.period_s = period_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, int]]:
        """Stops sampling; safe before `start()` (a run that failed at start-up) and twice."""
        self._stop.set()
        if self._thread.ident is not None:  # started: join; never started: nothing to join
            self._thread.join(timeout=5)
        return self.samples

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_bytes(self.pid)
            if value is not None:
                self.samples.append((time.monotonic(), value))
            self._stop.wait(self.period_s)


def _window(times: np.ndarray, start: float, end: float) -> np.ndarray:
    return (times >= start) & (times < end)


def soak_report(
    rss: list[tuple[float, int]],
    latencies: list[tuple[float, float]],
    start_s: float,
    end_s: float,
    dropped_sets: int,
    node_alive: bool,
    limits: SoakLimits = SoakLimits(),
) -> dict[str, Any]:
    """Soak figures and pass/fail checks.

    `rss`: (monotonic s, bytes) samples of the node; `latencies`: (receive monotonic s, latency ms)
    per pose; `start_s`/`end_s`: when the replay started and ended (monotonic s).
    """
    duration = end_s - start_s
    warmup, window = limits.scaled(duration)
    first = (start_s + warmup, start_s + warmup + window)
    last = (end_s - window, end_s)
    rss_t = np.array([t for t, _ in rss], dtype=float)
    rss_v = np.array([v for _, v in rss], dtype=float) / 2**20
    lat_t = np.array([t for t, _ in latencies], dtype=float)
    lat_v = np.array([v for _, v in latencies], dtype=float)

    def median_in(values: np.ndarray, times: np.ndarray, span: tuple[float, float]) -> float:
        chosen = values[_window(times, *span)]
        return float(np.median(chosen)) if len(chosen) else float("nan")

    def p99_in(span: tuple[float, float]) -> float:
        chosen = lat_v[_window(lat_t, *span)]
        return float(np.percentile(chosen, 99)) if len(chosen) else float("nan")

    rss_first, rss_last = median_in(rss_v, rss_t, first), median_in(rss_v, rss_t, last)
    p99_first, p99_last = p99_in(first), p99_in(last)
    p50_first, p50_last = median_in(lat_v, lat_t, first), median_in(lat_v, lat_t, last)
    rss_growth = 100 * (rss_last - rss_first) / rss_first
    p99_change = 100 * (p99_last - p99_first) / p99_first
    checks = {
        "node_alive": bool(node_alive),
        "rss_growth_ok": bool(rss_growth < limits.max_rss_growth_pct),
        "latency_p99_stable": bool(abs(p99_change) <= limits.max_p99_change_pct),
        "no_dropped_sets": dropped_sets == 0,
    }
    return {
        "duration_s": duration,
        "warmup_s": warmup,
        "window_s": window,
        "rss_mb_first_window": rss_first,
        "rss_mb_last_window": rss_last,
        "rss_mb_max": float(rss_v.max()) if len(rss_v) else float("nan"),
        "rss_growth_pct": rss_growth,
        "e2e_latency_ms_p99_first_window": p99_first,
        "e2e_latency_ms_p99_last_window": p99_last,
        "latency_p99_change_pct": p99_change,
        "e2e_latency_ms_p50_first_window": p50_first,
        "e2e_latency_ms_p50_last_window": p50_last,
        # Deprecated aliases (the same end-to-end figures, named before the node's own
        # set-to-pose time was told apart from them).
        "latency_ms_p99_first_window": p99_first,
        "latency_ms_p99_last_window": p99_last,
        "latency_ms_p50_first_window": p50_first,
        "latency_ms_p50_last_window": p50_last,
        "dropped_sets": dropped_sets,
        "limits": {
            "max_rss_growth_pct": limits.max_rss_growth_pct,
            "max_p99_change_pct": limits.max_p99_change_pct,
        },
        "checks": checks,
        "passed": all(checks.values()),
    }


def soak_series(
    rss: list[tuple[float, int]], latencies: list[tuple[float, float]], start_s: float, bin_s: float
) -> dict[str, np.ndarray]:
    """Per-bin RSS (MB) and latency p50/p99 (ms) over the run, for the soak plot."""
    if not latencies:
        return {
            "t": np.zeros(0),
            "p50": np.zeros(0),
            "p99": np.zeros(0),
            "rss_t": np.zeros(0),
            "rss": np.zeros(0),
        }
    lat_t = np.array([t for t, _ in latencies]) - start_s
    lat_v = np.array([v for _, v in latencies])
    edges = np.arange(0.0, lat_t.max() + bin_s, bin_s)
    centers, p50, p99 = [], [], []
    for lo in edges:
        chosen = lat_v[(lat_t >= lo) & (lat_t < lo + bin_s)]
        if len(chosen):
            centers.append(lo + bin_s / 2)
            p50.append(np.percentile(chosen, 50))
            p99.append(np.percentile(chosen, 99))
    return {
        "t": np.array(centers),
        "p50": np.array(p50),
        "p99": np.array(p99),
        "rss_t": np.array([t for t, _ in rss]) - start_s,
        "rss": np.array([v for _, v in rss]) / 2**20,
    }

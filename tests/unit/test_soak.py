"""Soak figures: windows, RSS growth and latency stability on constructed samples."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from pose_regressor.soak import RssSampler, SoakLimits, rss_bytes, soak_report, soak_series


def _run(rss_mb: list[float], latency_ms: list[float], duration: float) -> dict[str, object]:
    rss_t = np.linspace(0, duration, len(rss_mb), endpoint=False)
    lat_t = np.linspace(0, duration, len(latency_ms), endpoint=False)
    rss = [(float(t), int(v * 2**20)) for t, v in zip(rss_t, rss_mb, strict=True)]
    lat = [(float(t), v) for t, v in zip(lat_t, latency_ms, strict=True)]
    return soak_report(rss, lat, 0.0, duration, dropped_sets=0, node_alive=True)


def test_windows_are_a_minute_or_a_quarter_of_short_runs() -> None:
    assert SoakLimits().scaled(600) == (60, 60)
    assert SoakLimits().scaled(60) == (15, 15)


def test_flat_run_passes_with_zero_growth() -> None:
    report = _run([100.0] * 600, [5.0] * 18000, 600)
    assert report["rss_growth_pct"] == 0 and report["latency_p99_change_pct"] == 0
    assert report["passed"] is True


def test_rss_growth_compares_the_first_window_after_warmup_with_the_last() -> None:
    # 90 MB during the warm-up minute, then a linear leak from 100 to 110 MB over the remaining 540 s
    rss = [90.0] * 60 + list(np.linspace(100, 110, 540))
    report = _run(rss, [5.0] * 6000, 600)
    first = float(np.median(np.linspace(100, 110, 540)[:60]))
    last = float(np.median(np.linspace(100, 110, 540)[-60:]))
    assert report["rss_growth_pct"] == pytest.approx(100 * (last - first) / first)
    assert report["rss_growth_pct"] > 5 and report["checks"]["rss_growth_ok"] is False  # type: ignore[index]
    assert report["passed"] is False


def test_latency_p99_change_flags_a_growing_tail() -> None:
    rng = np.random.default_rng(0)
    base = list(rng.uniform(4, 6, 6000))
    grown = base[:5000] + list(rng.uniform(4, 9, 1000))  # last 100 s: tail 50% longer
    assert _run([100.0] * 600, base, 600)["checks"]["latency_p99_stable"] is True  # type: ignore[index]
    report = _run([100.0] * 600, grown, 600)
    assert report["latency_p99_change_pct"] == pytest.approx(100 * (8.95 - 5.98) / 5.98, abs=5)
    assert report["checks"]["latency_p99_stable"] is False  # type: ignore[index]


def test_dropped_sets_and_a_dead_node_fail() -> None:
    rss, lat = [(0.0, 2**20), (59.0, 2**20)], [(1.0, 5.0), (59.0, 5.0)]
    assert soak_report(rss, lat, 0, 60, dropped_sets=3, node_alive=True)["passed"] is False
    assert soak_report(rss, lat, 0, 60, dropped_sets=0, node_alive=False)["passed"] is False


def test_series_bins_latency_and_keeps_rss_samples() -> None:
    lat = [(10.0 + t, float(t % 10)) for t in range(30)]
    series = soak_series([(10.0, 2**20), (40.0, 2**21)], lat, start_s=10.0, bin_s=10.0)
    assert series["t"].tolist() == [5.0, 15.0, 25.0]
    assert series["p50"].tolist() == [4.5, 4.5, 4.5]
    assert series["rss"].tolist() == [1.0, 2.0] and series["rss_t"].tolist() == [0.0, 30.0]


def test_rss_of_this_process_is_sampled() -> None:
    own = rss_bytes(os.getpid())
    assert own is not None and own > 10 * 2**20
    assert rss_bytes(2**22 + 12345) is None  # no such process
    sampler = RssSampler(os.getpid(), period_s=0.01).start()
    time.sleep(0.1)
    samples = sampler.stop()
    assert len(samples) >= 3 and all(v > 0 for _, v in samples)

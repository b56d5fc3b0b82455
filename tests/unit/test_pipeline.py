"""The ROS-free localizer pipeline: synchronization -> one-slot mailbox -> worker -> estimates."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pose_regressor.bundle import load_bundle, preprocess
from pose_regressor.engines import load_engine
from pose_regressor.mailbox import LatestMailbox, MailboxWorker
from pose_regressor.params import LocalizerParams, ParameterError
from pose_regressor.pipeline import (
    ERROR,
    OK,
    WARN,
    LocalizationResult,
    LocalizerPipeline,
    LogThrottle,
    PipelineConfig,
)
from pose_regressor.stats import LatencyWindow, RateMeter
from tests.unit.bundle_fixtures import make_bundle


class PoseFromPixels:
    """A stand-in engine with known answers: translation = mean pixel value of each camera, masks
    scale the samples, so the covariance follows the mask spread. `delay` simulates a slow engine."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None, nan_on: int | None = None) -> None:
        self.delay, self.fail_on, self.nan_on, self.calls = delay, fail_on, nan_on, 0

    def infer(self, images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        value = float(images[..., 0].mean())
        if self.fail_on == int(value):
            raise RuntimeError("engine exploded")
        s = masks.shape[0]
        t = np.tile([value, 0.0, 0.0], (s, 1)) + 0.01 * masks[:, :3]
        q = np.tile([0.0, 0.0, 0.0, 1.0], (s, 1))
        if self.nan_on == int(value):
            t[0, 0] = np.nan
        return t, q


def make(engine: PoseFromPixels, cameras: int = 2, **overrides: object) -> tuple[LocalizerPipeline, list]:
    results: list[LocalizationResult] = []
    errors: list[str] = []
    config = PipelineConfig(
        camera_names=tuple(f"c{i}" for i in range(cameras)),
        hidden_dim=16,
        dropout=0.2,
        mc_samples=8,
        **overrides,  # type: ignore[arg-type]
    )
    pipe = LocalizerPipeline(config, engine, results.append, errors.append)
    return pipe, [results, errors]


def image(value: int) -> np.ndarray:
    return np.full((6, 8, 3), value, dtype=np.uint8)


def wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert condition()


def test_each_synchronized_set_gives_one_estimate_with_its_stamp() -> None:
    pipe, (results, errors) = make(PoseFromPixels())
    pipe.start()
    try:
        for k in range(5):
            stamp = 1_000_000_000 + k * 100_000_000
            assert not pipe.add_image(0, stamp, image(10 * k))
            assert pipe.add_image(1, stamp + 2_000_000, image(10 * k))
            wait_for(lambda k=k: len(results) == k + 1)
    finally:
        pipe.stop()
    assert [r.stamp_ns for r in results] == [1_000_000_000 + k * 100_000_000 for k in range(5)]
    np.testing.assert_allclose([r.estimate.translation[0] for r in results], [0, 10, 20, 30, 40], atol=0.02)
    assert all(np.all(np.linalg.eigvalsh(r.estimate.covariance) > 0) for r in results)
    assert pipe.dropped_sets == 0 and not errors


def test_busy_engine_drops_old_sets_instead_of_queueing() -> None:
    pipe, (results, _) = make(PoseFromPixels(delay=0.05), cameras=1)
    pipe.start()
    try:
        for k in range(40):  # 400 Hz into a 20 Hz engine
            pipe.add_image(0, 1_000_000_000 + k * 2_500_000, image(k))
            time.sleep(0.0025)
        wait_for(lambda: not pipe.worker.busy and pipe.mailbox.take(timeout=0) is None)
    finally:
        pipe.stop()
    assert pipe.dropped_sets > 20
    assert len(results) + pipe.dropped_sets <= 40
    # The newest set always gets through; latency stays about one engine period.
    assert results[-1].stamp_ns >= 1_000_000_000 + 37 * 2_500_000
    assert max(r.latency_s for r in results) < 0.2


def test_engine_failure_and_nan_are_reported_and_the_next_set_is_processed() -> None:
    pipe, (results, errors) = make(PoseFromPixels(fail_on=7, nan_on=9), cameras=1)
    pipe.start()
    try:
        for k, value in enumerate([7, 9, 3]):
            pipe.add_image(0, 1_000_000_000 + k * 100_000_000, image(value))
            time.sleep(0.05)
        wait_for(lambda: len(results) == 1)
    finally:
        pipe.stop()
    assert results[0].estimate.translation[0] == pytest.approx(3, abs=0.02)
    assert len(errors) == 2 and "engine exploded" in errors[0] and "non-finite" in errors[1]
    assert pipe.engine_errors == 1 and pipe.nonfinite_outputs == 1


def test_diagnostics_levels() -> None:
    now = [100.0]
    results: list[LocalizationResult] = []
    config = PipelineConfig(("a", "b"), 16, 0.2, mc_samples=1, camera_timeout_s=1.0)
    pipe = LocalizerPipeline(config, PoseFromPixels(), results.append, clock=lambda: now[0])
    assert pipe.diagnostics().level == ERROR  # nothing yet
    pipe.add_image(0, 1, image(1))
    pipe.add_image(1, 1, image(1))
    assert pipe.diagnostics().level == OK
    now[0] += 0.5
    pipe.add_image(0, 2, image(1))
    now[0] += 0.8  # b silent for 1.3 s, a for 0.8 s
    snapshot = pipe.diagnostics()
    assert snapshot.level == WARN and "b" in snapshot.message and "input_rate_hz/a" in snapshot.values
    now[0] += 5.0
    assert pipe.diagnostics().level == ERROR


def test_mailbox_replaces_and_worker_survives_errors() -> None:
    box: LatestMailbox[int] = LatestMailbox()
    assert not box.put(1) and box.put(2) and box.replaced == 1
    assert box.take(0) == 2 and box.take(0) is None
    seen: list[int] = []
    failures: list[int] = []
    gate = threading.Event()

    def handle(item: int) -> None:
        if item == 3:
            raise ValueError("bad")
        seen.append(item)
        gate.set()

    worker = MailboxWorker(box, handle, lambda exc, item: failures.append(item))
    worker.start()
    box.put(3)
    wait_for(lambda: failures == [3])
    box.put(4)
    wait_for(gate.is_set)
    worker.stop()
    assert seen == [4]


def test_rate_and_latency_windows() -> None:
    meter = RateMeter(window_s=2.0)
    for k in range(21):
        meter.tick(10.0 + k * 0.1)
    assert meter.rate(12.0) == pytest.approx(10.0, rel=0.05)
    assert meter.rate(20.0) == 0.0
    window = LatencyWindow(size=100)
    for ms in range(1, 101):
        window.add(ms / 1000)
    assert window.percentile_ms(50) == pytest.approx(50.5)
    assert window.percentile_ms(99) == pytest.approx(99.01)


def test_parameters_are_validated_with_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"\x08")
    params = LocalizerParams.from_values(
        {"bundle": str(tmp_path), "camera_topics": ["/a/image_raw", "/b/image_raw"]}
    )
    assert params.camera_topics == ("/a/image_raw", "/b/image_raw") and params.transport_for(1) == "raw"
    cases = {
        "bundle": ({}, "'bundle' is required"),
        "missing": ({"bundle": str(tmp_path / "nope")}, "nope does not exist"),
        "file": ({"bundle": str(tmp_path / "model.onnx")}, "model.onnx is not a directory"),
        "range": ({"bundle": str(tmp_path), "mc_samples": 0}, "'mc_samples' must be in [1, 256]"),
        "type": ({"bundle": str(tmp_path), "sync_slop": "fast"}, "'sync_slop' must be a number"),
        "choice": ({"bundle": str(tmp_path), "backend": "cuda"}, "'backend' must be one of auto, tensorrt"),
        "unknown": ({"bundle": str(tmp_path), "sync": 1.0}, "unknown parameter(s) sync"),
        "transport": (
            {
                "bundle": str(tmp_path),
                "camera_topics": ["/a", "/b", "/c"],
                "image_transport": ["raw", "compressed"],
            },
            "give one or one per camera topic",
        ),
        "topic": ({"bundle": str(tmp_path), "camera_topics": ["front"]}, "not an absolute topic name"),
    }
    for name, (values, message) in cases.items():
        with pytest.raises(ParameterError) as info:
            LocalizerParams.from_values(values)
        assert message in str(info.value), name
        assert "\n" not in str(info.value)


# ------------------------------------------------------------------ fault reporting
class RaisingOn:
    """A real engine (ONNX Runtime on a small bundle) that raises on the calls listed in
    `failures` (1-based call number -> exception) and answers every other call itself."""

    def __init__(self, engine: Any, failures: dict[int, Exception]) -> None:
        self.engine, self.failures, self.calls = engine, failures, 0

    def infer(self, images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        if self.calls in self.failures:
            raise self.failures[self.calls]
        return self.engine.infer(images, masks)  # type: ignore[no-any-return]


def test_engine_exception_is_logged_once_with_context_throttled_and_the_next_set_retried(
    tmp_path: Path,
) -> None:
    bundle = load_bundle(make_bundle(tmp_path / "bundle").path)
    failures: dict[int, Exception] = {
        1: RuntimeError("CUDA error: device lost (code 999)"),
        2: RuntimeError("CUDA error: device lost (code 998)"),  # same kind: only numbers differ
        4: ValueError("bad input"),  # another kind: reported at once
        6: RuntimeError("CUDA error: device lost (code 997)"),  # same kind, after the interval
    }
    engine = RaisingOn(load_engine(bundle, "onnxruntime", threads=1), failures)
    now = [100.0]
    results: list[LocalizationResult] = []
    errors: list[str] = []
    config = PipelineConfig(
        tuple(bundle.camera_names), bundle.hidden_dim, bundle.dropout, mc_samples=4, report_interval_s=10.0
    )
    pipe = LocalizerPipeline(
        config,
        engine,
        results.append,
        errors.append,
        clock=lambda: now[0],
        engine_name="onnxruntime cpu fp32",
        prepare=lambda images: preprocess(images, bundle),
    )
    stamps = [1_700_000_000_000_000_000 + k * 100_000_000 for k in range(7)]
    pipe.start()
    try:
        for k, stamp in enumerate(stamps):
            if k == 5:
                now[0] += 11.0  # past the report interval
            for camera in range(bundle.num_cameras):
                pipe.add_image(camera, stamp, np.full((12, 16, 3), 40 + k, dtype=np.uint8))
            wait_for(lambda k=k: pipe.worker.processed == k + 1)
    finally:
        pipe.stop()
    # Sets 1, 2, 4 and 6 failed; every following set was tried and published (stamps 3, 5, 7).
    assert [r.stamp_ns for r in results] == [stamps[2], stamps[4], stamps[6]]
    assert all(np.all(np.isfinite(r.estimate.translation)) for r in results)
    assert pipe.engine_errors == 4 and pipe.published == 3
    # Reported: the first of a kind with its whole context, the second kind at once, and the
    # first kind again after the interval with the number of failures not logged in between.
    assert len(errors) == 3, errors
    first = errors[0]
    assert "set stamped 1700000000.000000000 s" in first
    assert "cameras front, rear" in first and "engine onnxruntime cpu fp32" in first
    assert "RuntimeError: CUDA error: device lost (code 999)" in first
    assert "raised at test_pipeline.py:" in first and "in infer" in first
    assert "the next set will be tried" in first and "not logged" not in first
    assert "ValueError: bad input" in errors[1] and "1700000000.300000000 s" in errors[1]
    assert "(code 997)" in errors[2] and "(1 more like this since the last report, not logged)" in errors[2]
    snapshot = pipe.diagnostics()
    assert snapshot.level == ERROR and "device lost" in snapshot.message
    assert snapshot.values["engine_errors"] == "4" and snapshot.values["published"] == "3"


def test_rejected_images_are_all_counted_but_reported_once_per_kind_and_interval() -> None:
    now = [0.0]
    config = PipelineConfig(("a", "b"), 16, 0.2, mc_samples=1, report_interval_s=5.0)
    pipe = LocalizerPipeline(config, PoseFromPixels(), lambda result: None, clock=lambda: now[0])
    lines = [pipe.reject_image(f"camera a: bad encoding #{k}", ("decode", 0)) for k in range(200)]
    assert lines[0] == "camera a: bad encoding #0" and lines[1:] == [None] * 199
    assert pipe.reject_image("camera b: no stamp", ("stamp", 1)) == "camera b: no stamp"  # other kind
    now[0] += 5.0
    again = pipe.reject_image("camera a: bad encoding #200", ("decode", 0))
    assert again == "camera a: bad encoding #200 (199 more like this since the last report, not logged)"
    assert pipe.rejected_images == 202
    snapshot = pipe.diagnostics()
    assert snapshot.values["rejected_images"] == "202" and snapshot.values["sync_resets"] == "0"


def test_log_throttle_bounds_its_memory() -> None:
    throttle = LogThrottle(60.0, clock=lambda: 0.0)
    for k in range(3000):
        assert throttle.check(k) == 0  # every new key is reported
    assert throttle.check(2999) is None
    assert len(throttle._keys) <= 1024

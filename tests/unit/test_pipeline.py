"""The ROS-free localizer pipeline: synchronization -> one-slot mailbox -> worker -> estimates."""

from __future__ import annotations

import math
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pose_regressor.bundle import load_bundle, preprocess
from pose_regressor.distance_prior import DistancePrior
from pose_regressor.engines import load_engine
from pose_regressor.mailbox import LatestMailbox, MailboxWorker
from pose_regressor.pipeline import (
    ERROR,
    OK,
    WARN,
    LocalizationResult,
    LocalizerPipeline,
    LogThrottle,
    PipelineConfig,
    uncertainty_reason,
)
from pose_regressor.stats import LatencyWindow, RateMeter
from pose_regressor.uncertainty import PoseEstimate, dropout_masks
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


# ------------------------------------------------------------------ unsynchronized cameras
SECOND = 1_000_000_000
HOURS_2 = 7200 * SECOND
# what the WARN says when "left" of ("front", "left") stops: which camera, and what it costs
STOPPED_LEFT = (
    "camera(s) stopped: left; no pose until every camera sends again (a pose needs a set of all 2; "
    "missing_camera: black localizes without them)"
)


class FakeClocks:
    """A wall (monotonic) clock and a node clock, moved by hand; `rate` is node s per wall s."""

    def __init__(self, wall: float = 100.0, node: float = 1000.0) -> None:
        self.wall, self.node = wall, node

    def advance(self, wall_s: float, rate: float = 1.0) -> None:
        self.wall += wall_s
        self.node += wall_s * rate


def clocked(
    names: tuple[str, ...], clocks: FakeClocks, engine: Any = None, **overrides: Any
) -> tuple[LocalizerPipeline, list[LocalizationResult], list[str]]:
    results: list[LocalizationResult] = []
    errors: list[str] = []
    settings: dict[str, Any] = {"mc_samples": 8, "sync_slop_s": 0.01, "camera_timeout_s": 1.0, **overrides}
    config = PipelineConfig(names, 16, 0.2, **settings)
    pipe = LocalizerPipeline(
        config,
        engine or PoseFromPixels(),
        results.append,
        errors.append,
        clock=lambda: clocks.wall,
        node_clock=lambda: clocks.node,
    )
    return pipe, results, errors


def feed(
    pipe: LocalizerPipeline,
    clocks: FakeClocks,
    offsets_ns: list[int] | list[int | None],
    steps: int,
    first_stamp: int = 1_700_000_000 * SECOND,
    period_s: float = 0.1,
    rate: float = 1.0,
) -> int:
    """`steps` frames from every camera at 1 / `period_s` Hz, camera i stamped `offsets_ns[i]`
    off the common capture time (None: camera i is silent), all arriving together; returns the
    sets formed."""
    formed = 0
    for k in range(steps):
        capture = first_stamp + k * round(period_s * SECOND)
        for camera, offset in enumerate(offsets_ns):
            if offset is not None:
                formed += pipe.add_image(camera, capture + offset, image(k % 200))
        clocks.advance(period_s, rate)
    return formed


@pytest.mark.parametrize(
    ("offset_ns", "expected"),
    [
        (50_000_000, "camera left stamps are 50.0 ms after front"),
        (-50_000_000, "camera left stamps are 50.0 ms before front"),
        (HOURS_2, "camera left stamps are 7200.000 s after front"),  # a clock stepped by 2 h
    ],
)
def test_no_set_warn_names_the_camera_whose_stamps_are_off(offset_ns: int, expected: str) -> None:
    clocks = FakeClocks()
    pipe, _, _ = clocked(("front", "left"), clocks)
    assert feed(pipe, clocks, [0, offset_ns], steps=5) == 0
    assert pipe.diagnostics().level == OK  # 0.5 s without a set: within camera_timeout_s
    assert feed(pipe, clocks, [0, offset_ns], steps=18, first_stamp=1_700_000_001 * SECOND) == 0
    snapshot = pipe.diagnostics()
    assert snapshot.level == WARN
    assert snapshot.message == f"no synchronized camera set for 2.3 s: {expected} (sync_slop 10.0 ms)"
    assert snapshot.values["stamp_offset_ms/left"] == f"{offset_ns / 1e6:.1f}"
    assert snapshot.values["stamp_offset_ms/front"] == "0.0"
    assert snapshot.values["last_set_age_s"] == "never"


def test_at_half_a_period_the_offset_follows_arrival_not_the_nearest_stamp() -> None:
    # At 10 Hz a +50 ms camera is also 50 ms before the reference's next frame; frames that
    # arrive together are the pair, so the sign stays right whichever camera arrives first.
    clocks = FakeClocks()
    pipe, _, _ = clocked(("front", "left"), clocks)
    for k in range(20):
        stamp = 1_700_000_000 * SECOND + k * 100_000_000
        order = [(1, stamp + 50_000_000), (0, stamp)] if k % 2 else [(0, stamp), (1, stamp + 50_000_000)]
        for camera, camera_stamp in order:
            pipe.add_image(camera, camera_stamp, image(1))
            clocks.advance(0.001)
        clocks.advance(0.098)
    snapshot = pipe.diagnostics()
    assert "camera left stamps are 50.0 ms after front" in snapshot.message
    assert snapshot.values["stamp_offset_ms/left"] == "50.0"


def test_no_set_warn_blames_the_reference_camera_when_all_others_agree() -> None:
    clocks = FakeClocks()
    names = ("front", "left", "back", "right")
    pipe, _, _ = clocked(names, clocks)
    # front's stamps 50 ms early: the other three are 49..51 ms "after" it, but agree among themselves.
    feed(pipe, clocks, [0, 50_000_000, 51_000_000, 49_000_000], steps=15)
    snapshot = pipe.diagnostics()
    assert snapshot.level == WARN
    assert "camera front stamps are 50.0 ms before left, back, right (sync_slop 10.0 ms)" in snapshot.message
    # Only one camera off: that one is named, not the reference.
    clocks = FakeClocks()
    pipe, _, _ = clocked(names, clocks)
    feed(pipe, clocks, [0, 0, HOURS_2, 2_000_000], steps=15)
    message = pipe.diagnostics().message
    assert message.endswith(": camera back stamps are 7200.000 s after front (sync_slop 10.0 ms)"), message
    # Two cameras off by different amounts: both named.
    clocks = FakeClocks()
    pipe, _, _ = clocked(("front", "left", "right"), clocks)
    feed(pipe, clocks, [0, 30_000_000, -80_000_000], steps=15)
    message = pipe.diagnostics().message
    assert (
        "camera left stamps are 30.0 ms after front; camera right stamps are 80.0 ms before front" in message
    )
    # Each within the slop of the reference, but 16 ms apart from each other.
    clocks = FakeClocks()
    pipe, _, _ = clocked(("front", "left", "right"), clocks)
    feed(pipe, clocks, [0, 8_000_000, -8_000_000], steps=15)
    message = pipe.diagnostics().message
    assert "camera stamps spread 16.0 ms (offsets from front: left +8.0 ms, right -8.0 ms)" in message


def test_no_warn_while_sets_form_and_the_age_counts_from_the_last_set() -> None:
    clocks = FakeClocks()
    pipe, _, _ = clocked(("front", "left", "right"), clocks)
    assert feed(pipe, clocks, [0, 3_000_000, -4_000_000], steps=40) == 40
    snapshot = pipe.diagnostics()
    assert (snapshot.level, snapshot.message) == (OK, "localizing")
    assert snapshot.values["last_set_age_s"] == "0.10"
    assert (
        snapshot.values["stamp_offset_ms/left"] == "3.0"
        and snapshot.values["stamp_offset_ms/right"] == "-4.0"
    )
    # Then right's clock steps: the age counts from the last set, not from the first image.
    feed(pipe, clocks, [0, 3_000_000, HOURS_2], steps=8, first_stamp=1_700_000_010 * SECOND)
    assert pipe.diagnostics().level == OK  # 0.9 s since the last set
    feed(pipe, clocks, [0, 3_000_000, HOURS_2], steps=5, first_stamp=1_700_000_011 * SECOND)
    snapshot = pipe.diagnostics()
    assert (
        snapshot.level == WARN
        and "for 1.4 s: camera right stamps are 7200.000 s after front" in snapshot.message
    )
    assert snapshot.values["last_set_age_s"] == "1.40"
    # One camera alone always forms sets.
    clocks = FakeClocks()
    pipe, _, _ = clocked(("front",), clocks)
    feed(pipe, clocks, [0], steps=30)
    assert pipe.diagnostics().level == OK


def test_diagnostics_levels_rank_no_set_between_errors_and_uncertainty() -> None:
    clocks = FakeClocks()
    # fail_on=5: the set whose images are all 5 raises; max_position_std=0: every pose is uncertain.
    pipe, results, errors = clocked(
        ("front", "left"), clocks, PoseFromPixels(fail_on=5), max_position_std=0.0
    )
    pipe.start()
    try:
        pipe.add_image(0, 10 * SECOND, image(1))
        pipe.add_image(1, 10 * SECOND, image(1))
        wait_for(lambda: len(results) == 1)
        snapshot = pipe.diagnostics()
        assert snapshot.level == WARN and snapshot.message.startswith("pose uncertain: ")  # the lowest WARN
        clocks.advance(0.1)
        pipe.add_image(0, 11 * SECOND, image(5))
        pipe.add_image(1, 11 * SECOND, image(5))
        wait_for(lambda: pipe.engine_errors == 1)
        # Stamps off by 50 ms from now on: no set for 2 s, while the failure is recent (< 5 s).
        feed(pipe, clocks, [0, 50_000_000], steps=20, first_stamp=12 * SECOND)
        snapshot = pipe.diagnostics()
        assert snapshot.level == ERROR and "inference failed" in snapshot.message
        feed(pipe, clocks, [0, 50_000_000], steps=40, first_stamp=14 * SECOND)  # failure 6 s old
        snapshot = pipe.diagnostics()
        assert snapshot.level == WARN and snapshot.message.startswith("no synchronized camera set for 6.0 s")
        clocks.advance(1.5)  # left stops: a stopped camera explains the missing sets
        for k in range(5):
            pipe.add_image(0, 20 * SECOND + k * 100_000_000, image(1))
        assert pipe.diagnostics().message == STOPPED_LEFT
        clocks.advance(5.0)
        snapshot = pipe.diagnostics()
        assert snapshot.level == ERROR and snapshot.message.startswith("no images from any camera")
    finally:
        pipe.stop()
    assert len(errors) == 1


def test_timeouts_follow_the_node_clock_in_a_slowed_sim_time_replay() -> None:
    clocks = FakeClocks()
    pipe, _, _ = clocked(("front", "left"), clocks)
    # Replay at 0.1x: a frame pair every 1 s of wall time is one every 0.1 s of bag time.
    assert feed(pipe, clocks, [0, 0], steps=10, period_s=1.0, rate=0.1) == 10
    assert pipe.diagnostics().level == OK
    clocks.advance(5.0, rate=0.1)  # 5 s wall, 0.5 s sim: the replay is just slow
    snapshot = pipe.diagnostics()
    assert (snapshot.level, snapshot.message) == (OK, "localizing"), snapshot.message
    clocks.advance(6.0, rate=0.1)  # 1.1 s of sim time without a frame: stopped
    snapshot = pipe.diagnostics()
    assert snapshot.level == ERROR and snapshot.message.startswith("no images from any camera")
    # The same gap judged on the wall clock would have been a false alarm.
    wall = FakeClocks()
    wall_pipe = LocalizerPipeline(pipe.config, PoseFromPixels(), lambda result: None, clock=lambda: wall.wall)
    feed(wall_pipe, wall, [0, 0], steps=10, period_s=1.0, rate=0.1)
    wall.advance(5.0, rate=0.1)
    assert wall_pipe.diagnostics().level == ERROR


def test_a_node_clock_jumping_back_restarts_the_timing_without_false_alarms() -> None:
    clocks = FakeClocks(node=5000.0)
    pipe, _, _ = clocked(("front", "left"), clocks)
    assert feed(pipe, clocks, [0, 0], steps=20) == 20
    clocks.node = 10.0  # the bag loops: sim time restarts
    snapshot = pipe.diagnostics()
    assert (snapshot.level, snapshot.message) == (OK, "localizing")
    assert snapshot.values["last_set_age_s"] == "0.00" and snapshot.values["node_clock_jumps_back"] == "1"
    # The loop's frames restart their stamps too: sets form again, no warning.
    assert feed(pipe, clocks, [0, 0], steps=20, first_stamp=SECOND) == 20
    assert pipe.diagnostics().level == OK
    # Jumps back while frames arrive (each image reads the clock) are no alarm either.
    clocks.node = 1.0
    assert feed(pipe, clocks, [0, 0], steps=5, first_stamp=SECOND) == 5
    snapshot = pipe.diagnostics()
    assert snapshot.level == OK and float(snapshot.values["last_set_age_s"]) >= 0
    # A camera that really stops after the jump is still reported, one timeout later.
    clocks.node = 0.5
    for k in range(15):
        pipe.add_image(0, 5 * SECOND + k * 100_000_000, image(1))
        clocks.advance(0.1)
    assert pipe.diagnostics().message == STOPPED_LEFT
    assert pipe.node_clock_jumps_back == 3


# ------------------------------------------------------------------ reconfigure, restart
class RecordingEngine(PoseFromPixels):
    def __init__(self) -> None:
        super().__init__()
        self.mask_shapes: list[tuple[int, ...]] = []

    def infer(self, images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.mask_shapes.append(masks.shape)
        return super().infer(images, masks)


def test_reconfigure_changes_the_mask_count_the_slop_and_the_seed() -> None:
    clocks = FakeClocks()
    engine = RecordingEngine()
    pipe, results, _ = clocked(("front", "left"), clocks, engine)
    pipe.start()
    try:
        feed(pipe, clocks, [0, 0], steps=1)
        wait_for(lambda: len(results) == 1)
        pipe.reconfigure(mc_samples=3)
        feed(pipe, clocks, [0, 0], steps=1, first_stamp=2 * SECOND)
        wait_for(lambda: len(results) == 2)
        pipe.reconfigure(mc_samples=1)  # one deterministic pass: the mask of ones
        feed(pipe, clocks, [0, 0], steps=1, first_stamp=3 * SECOND)
        wait_for(lambda: len(results) == 3)
        assert engine.mask_shapes == [(8, 16), (3, 16), (1, 16)]
        assert pipe.diagnostics().values["mc_samples"] == "1"
        # left 50 ms off: no set with a 10 ms slop, sets at once with 100 ms.
        assert feed(pipe, clocks, [0, 50_000_000], steps=3, first_stamp=4 * SECOND) == 0
        pipe.reconfigure(sync_slop_s=0.1)
        assert pipe.sync.slop_ns == 100_000_000 and pipe.config.sync_slop_s == 0.1
        assert feed(pipe, clocks, [0, 50_000_000], steps=3, first_stamp=5 * SECOND) == 3
        # Those sets drew no masks (mc_samples 1); once they are through, a new seed restarts the draws.
        wait_for(lambda: len(results) + pipe.dropped_sets == 6 and not pipe.worker.busy)
        pipe.reconfigure(seed=7, mc_samples=8)
        expected = dropout_masks(8, 16, 0.2, np.random.default_rng(7))
        np.testing.assert_array_equal(pipe.masks(), expected)
        pipe.reconfigure(camera_timeout_s=10.0, max_position_std=float("inf"), max_rotation_std=0.05)
        clocks.advance(5.0)
        diagnostics = pipe.diagnostics()
        assert diagnostics.level == OK  # 5 s of silence is within the new timeout
        assert (diagnostics.values["max_position_std_m"], diagnostics.values["max_rotation_std_deg"]) == (
            "inf",
            "2.86479",
        )
    finally:
        pipe.stop()


def test_reconfigure_refuses_unknown_fixed_and_out_of_range_settings_atomically() -> None:
    pipe, _ = make(PoseFromPixels())
    before = pipe.config
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "unknown": ({"mc_sample": 4}, "unknown pipeline setting(s) mc_sample"),
        "fixed": ({"hidden_dim": 8, "dropout": 0.5}, "dropout, hidden_dim come(s) from the model bundle"),
        "names": ({"camera_names": ("x",)}, "camera_names come(s) from the model bundle"),
        "range": ({"mc_samples": 0}, "mc_samples must be >= 1"),
        "type": ({"mc_samples": 2.5}, "mc_samples must be an integer"),
        "negative slop": ({"sync_slop_s": -0.01}, "sync_slop_s must be >= 0"),
        "nan": ({"camera_timeout_s": float("nan")}, "camera_timeout_s must be finite"),
        "bool": ({"seed": True}, "seed must be a number"),
        "mixed": ({"mc_samples": 4, "seed": -1}, "seed must be >= 0"),  # nothing of it applied
    }
    for name, (changes, message) in cases.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            pipe.reconfigure(**changes)
        assert pipe.config is before, name
    pipe.reconfigure(sync_slop_s=1, report_interval_s=2)  # ints for float settings are fine
    assert pipe.config.sync_slop_s == 1.0 and isinstance(pipe.config.sync_slop_s, float)
    assert pipe.sync.slop_ns == SECOND
    pipe.reconfigure(mc_samples=np.int64(4))  # numpy scalars from a YAML/array pipeline are numbers too
    assert pipe.config.mc_samples == 4 and type(pipe.config.mc_samples) is int


def test_stop_start_cycles_leave_no_threads_and_keep_counting() -> None:
    pipe, (results, errors) = make(PoseFromPixels())
    baseline = threading.active_count()
    for cycle in range(50):
        pipe.start()
        pipe.start()  # a second start while running does nothing
        stamp = (cycle + 1) * SECOND
        pipe.add_image(0, stamp, image(cycle))
        assert pipe.add_image(1, stamp, image(cycle))
        wait_for(lambda cycle=cycle: len(results) == cycle + 1)
        pipe.stop()
        assert threading.active_count() == baseline, cycle
    pipe.stop()  # stopping a stopped pipeline is harmless
    assert pipe.published == 50 and pipe.worker.processed == 50 and not errors
    assert [r.stamp_ns for r in results] == [(k + 1) * SECOND for k in range(50)]


def test_restart_drops_the_waiting_set_and_old_frames() -> None:
    pipe, (results, _) = make(PoseFromPixels())
    pipe.start()
    pipe.stop()
    # Stopped: a set formed now waits in the mailbox, and is dropped by the next start.
    pipe.add_image(0, SECOND, image(1))
    assert pipe.add_image(1, SECOND, image(1))
    # A frame of camera 0 left pending before the restart never pairs with camera 1's after it.
    pipe.add_image(0, 2 * SECOND, image(2))
    pipe.start()
    try:
        assert not pipe.add_image(1, 2 * SECOND, image(2))
        time.sleep(0.2)
        assert results == []
        pipe.add_image(0, 3 * SECOND, image(3))
        assert pipe.add_image(1, 3 * SECOND, image(3))
        wait_for(lambda: len(results) == 1)
    finally:
        pipe.stop()
    assert results[0].stamp_ns == 3 * SECOND


def test_mailbox_worker_restarts_and_can_be_stopped_from_its_own_handler() -> None:
    box: LatestMailbox[int] = LatestMailbox()
    seen: list[int] = []
    holder: list[MailboxWorker[int]] = []

    def handle(item: int) -> None:
        seen.append(item)
        if item < 0:
            holder[0].stop()  # from inside the worker thread: no self-join

    worker = MailboxWorker(box, handle, lambda exc, item: None)
    holder.append(worker)
    for item in (1, 2, 3):
        worker.start()
        box.put(item)
        wait_for(lambda item=item: seen[-1:] == [item])
        worker.stop()
        assert not worker.running and box.closed
    worker.start()
    box.put(-1)
    wait_for(lambda: not worker.running)
    assert seen == [1, 2, 3, -1] and worker.processed == 4
    assert box.put(5) is False and box.discard() and not box.discard()


def test_frames_lost_in_transport_warn_above_a_tenth_and_name_the_camera() -> None:
    clocks = FakeClocks()
    pipe, _, _ = clocked(("front", "left"), clocks)
    feed(pipe, clocks, [0, 0], steps=30)  # 3 s at 10 Hz
    pipe.record_lost(1, 2)  # 2 of 32: below a tenth, and too few to judge
    snapshot = pipe.diagnostics()
    assert snapshot.level == OK and snapshot.values["frames_lost/left"] == "2"
    pipe.record_lost(1, 2)  # 4 of 34
    snapshot = pipe.diagnostics()
    assert snapshot.level == WARN
    assert snapshot.message.startswith(
        "camera frames lost on the way to the node in the last 10 s: left 4 of 34; "
    )
    assert "fastdds_large_images.xml" in snapshot.message
    assert snapshot.values["frames_lost/front"] == "0" and snapshot.values["frames_lost/left"] == "4"
    # The window moves on: old losses no longer warn, the total stays.
    feed(pipe, clocks, [0, 0], steps=110, first_stamp=1_700_000_010 * SECOND)
    snapshot = pipe.diagnostics()
    assert snapshot.level == OK and snapshot.values["frames_lost/left"] == "4"
    # A stopped camera outranks losses (it explains them).
    pipe.record_lost(0, 50)
    clocks.advance(2.0)
    feed(pipe, clocks, [0], steps=1, first_stamp=1_700_000_030 * SECOND)
    assert pipe.diagnostics().message == STOPPED_LEFT


def estimate_with_stds(position_std: float, rotation_std_rad: float) -> PoseEstimate:
    covariance = np.diag([position_std**2] * 3 + [rotation_std_rad**2] * 3)
    return PoseEstimate(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]), covariance, samples=16)


def test_uncertainty_reason_names_the_std_its_limit_and_the_factor() -> None:
    assert uncertainty_reason(estimate_with_stds(0.3, 0.05), 0.5, 0.0873) is None
    assert uncertainty_reason(estimate_with_stds(0.84, 0.05), 0.5, 0.0873) == (
        "position std 0.84 m > max_position_std 0.5 m (1.7x)"
    )
    # with the bundle's distance prior: how far the estimate (at the origin) is from the training path
    prior = DistancePrior(np.array([[3.0, 4.0, 0.0], [30.0, 0.0, 0.0]]), 1.0)
    assert uncertainty_reason(estimate_with_stds(0.84, 0.05), 0.5, 0.0873, prior) == (
        "position std 0.84 m > max_position_std 0.5 m (1.7x), 5 m from the nearest training position"
    )
    assert uncertainty_reason(estimate_with_stds(0.3, 0.05), 0.5, 0.0873, prior) is None
    assert uncertainty_reason(estimate_with_stds(0.3, np.radians(7.9)), 0.5, np.radians(5.0)) == (
        "rotation std 7.9 deg > max_rotation_std 5 deg (0.0873 rad, 1.6x)"
    )
    both = uncertainty_reason(estimate_with_stds(1.0, 0.2), 0.5, 0.1)
    assert both == (
        "position std 1 m > max_position_std 0.5 m (2x); "
        "rotation std 11.5 deg > max_rotation_std 5.73 deg (0.1 rad, 2x)"
    )
    # Just above the limit the factor keeps a third digit instead of reading "1x".
    assert uncertainty_reason(estimate_with_stds(0.367, 0.05), 0.361, 0.0873) == (
        "position std 0.367 m > max_position_std 0.361 m (1.02x)"
    )
    # A limit of 0 flags everything: no factor; an infinite one never flags.
    assert uncertainty_reason(estimate_with_stds(0.01, 0.0), 0.0, 1.0) == (
        "position std 0.01 m > max_position_std 0 m"
    )
    assert uncertainty_reason(estimate_with_stds(1e6, 1e6), float("inf"), float("inf")) is None


class ScatteredPoses(PoseFromPixels):
    """PoseFromPixels whose samples also turn every which way: a rotation std near the largest a
    spread of unit quaternions gives, far above pi rad once calibrated."""

    def infer(self, images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t, _ = super().infer(images, masks)
        q = np.random.default_rng(self.calls).normal(size=(masks.shape[0], 4))
        return t, q / np.linalg.norm(q, axis=1, keepdims=True)


def test_thresholds_at_their_largest_switch_the_flag_off_whatever_the_std() -> None:
    """max_position_std 10^6 m and max_rotation_std pi rad, the parameters' largest values (as
    rclpy accepts them: 3.14159 is pi within its tolerance), never flag a pose for its std: the
    calibrated stds are unbounded (thousands of degrees for views far from training). Just below
    them the check is on. A black stand-in camera still flags its poses."""
    huge = estimate_with_stds(5e6, 60.0)  # 60 rad, about 3400 deg
    assert uncertainty_reason(huge, 1e6, math.pi) is None
    assert uncertainty_reason(huge, 1e6, 3.14159) is None
    assert uncertainty_reason(huge, 1e6 * (1 + 1e-7), math.pi * (1 + 1e-7)) is None  # rclpy's bound
    assert uncertainty_reason(huge, 999_000.0, math.pi) == (
        "position std 5e+06 m > max_position_std 9.99e+05 m (5x)"
    )
    assert uncertainty_reason(huge, 1e6, 3.1) == (
        "rotation std 3.44e+03 deg > max_rotation_std 178 deg (3.1 rad, 19x)"
    )
    clocks = FakeClocks()
    pipe, results, errors = clocked(
        ("front", "left"),
        clocks,
        ScatteredPoses(),
        covariance_scale=1e6,
        max_position_std=1e6,
        max_rotation_std=math.pi,
        missing_camera="black",
    )
    pipe.start()
    try:
        assert feed(pipe, clocks, [0, 0], steps=5) == 5
        wait_for(lambda: pipe.published + pipe.dropped_sets == 5)
        assert results and all(r.estimate.rotation_std > 10 * math.pi for r in results)
        assert all(not r.uncertain and r.uncertain_reason == "" for r in results)
        snapshot = pipe.diagnostics()
        assert (snapshot.level, snapshot.message) == (OK, "localizing")
        assert snapshot.values["uncertain_poses"] == "0"
        # left stops: each pose with its black stand-in is flagged all the same
        first = 1_700_000_001 * SECOND
        assert feed(pipe, clocks, [0, None], steps=9, first_stamp=first) == 0
        clocks.advance(0.05)
        seen = len(results)
        assert feed(pipe, clocks, [0, None], steps=5, first_stamp=first + SECOND) == 5
        wait_for(lambda: pipe.published + pipe.dropped_sets == 10)
        stood_in = results[seen:]
        assert stood_in and all(r.uncertain and r.missing_cameras == ("left",) for r in stood_in)
        assert stood_in[-1].uncertain_reason == (
            "camera left stopped: a black image in its place (missing_camera: black)"
        )
        # one step below the largest values, the same poses are flagged for their stds again
        pipe.reconfigure(max_position_std=1e6, max_rotation_std=3.1)
        seen = len(results)
        assert feed(pipe, clocks, [0, 0], steps=3, first_stamp=first + 3 * SECOND) == 3
        wait_for(lambda: pipe.published + pipe.dropped_sets == 13)
        assert results[seen:] and all(
            r.uncertain and r.uncertain_reason.startswith("rotation std ") for r in results[seen:]
        )
    finally:
        pipe.stop()
    assert errors == []


def test_uncertainty_warn_says_why_and_how_many_recent_poses_were_flagged() -> None:
    clocks = FakeClocks()
    pipe, results, _ = clocked(("front",), clocks, max_position_std=float("inf"))
    pipe.start()
    try:
        for k in range(3):
            pipe.add_image(0, (10 + k) * SECOND, image(k))
            wait_for(lambda k=k: len(results) == k + 1)
        assert pipe.diagnostics().level == OK
        assert pipe.uncertain_report(results[-1]) is None  # not flagged: nothing to log
        pipe.reconfigure(max_position_std=0.0)
        pipe.add_image(0, 13 * SECOND, image(3))
        wait_for(lambda: len(results) == 4)
    finally:
        pipe.stop()
    flagged = results[-1]
    std = flagged.estimate.position_std
    assert (
        flagged.uncertain and flagged.uncertain_reason == f"position std {std:.3g} m > max_position_std 0 m"
    )
    snapshot = pipe.diagnostics()
    assert (snapshot.level, snapshot.message) == (
        WARN,
        f"pose uncertain: {flagged.uncertain_reason}; 1 of the last 4 poses (10 s) flagged",
    )
    assert snapshot.values["uncertain_poses"] == "1"
    # The log line uses the same reason, once per report interval.
    assert pipe.uncertain_report(flagged) == f"pose uncertain: {flagged.uncertain_reason}"
    assert pipe.uncertain_report(flagged) is None
    clocks.advance(11.0)  # the window has passed: no poses counted, the log may speak again
    assert snapshot.values["uncertain_poses_recent"] == "1 of the last 4 poses (10 s) flagged"
    assert pipe.diagnostics().values["uncertain_poses_recent"] == "0 of the last 0 poses (10 s) flagged"
    assert pipe.uncertain_report(flagged) == (
        f"pose uncertain: {flagged.uncertain_reason} (1 more like this since the last report, not logged)"
    )


# ------------------------------------------------------------------ missing_camera: black
def test_a_stopped_camera_is_stood_in_for_by_black_images_and_takes_its_place_again() -> None:
    """missing_camera "black": once a camera is silent for camera_timeout_s, each frame of the
    first camera still sending completes a set with black images for the silent ones; every such
    pose is flagged uncertain, naming them. When the camera sends again, its own frames take
    their place again without a synchronizer reset. "wait" (the default) forms no set."""
    clocks = FakeClocks()
    pipe, results, errors = clocked(("front", "left", "back"), clocks, missing_camera="black")
    pipe.start()
    try:
        assert feed(pipe, clocks, [0, 0, 0], steps=5) == 5
        wait_for(lambda: pipe.published + pipe.dropped_sets == 5)
        assert results and all(not r.uncertain and r.missing_cameras == () for r in results)
        # front stops. For camera_timeout_s nothing forms: it may only be late.
        first = 1_700_000_001 * SECOND
        assert feed(pipe, clocks, [None, 0, 0], steps=9, first_stamp=first) == 0
        clocks.advance(0.05)  # 1.05 s since front's last frame
        seen = len(results)
        assert feed(pipe, clocks, [None, 0, 0], steps=10, first_stamp=first + SECOND) == 10
        wait_for(lambda: pipe.published + pipe.dropped_sets == 15)
        stood_in = results[seen:]
        assert stood_in and all(r.missing_cameras == ("front",) and r.uncertain for r in stood_in)
        assert stood_in[-1].uncertain_reason.startswith(
            "camera front stopped: a black image in its place (missing_camera: black)"
        )
        # The engine saw front black: the mean pixel value of the set is 2/3 of the others' (9).
        assert stood_in[-1].estimate.translation[0] == pytest.approx(9 * 2 / 3, abs=0.05)
        snapshot = pipe.diagnostics()
        assert snapshot.level == WARN and snapshot.message == (
            "camera(s) stopped: front; localizing with black images in their place (missing_camera: "
            "black), every such pose flagged uncertain"
        )
        assert snapshot.values["stand_in_poses"] == str(len(stood_in))
        assert snapshot.values["missing_camera"] == "black"
        # front sends again, its clock 3 ms behind: its own frames take its place, no reset.
        resets, seen = pipe.sync.resets, len(results)
        assert feed(pipe, clocks, [-3_000_000, 0, 0], steps=10, first_stamp=first + 2 * SECOND) == 10
        wait_for(lambda: pipe.published + pipe.dropped_sets == 25)
        assert results[seen:] and all(r.missing_cameras == () and not r.uncertain for r in results[seen:])
        assert pipe.sync.resets == resets
        assert pipe.diagnostics().level == OK
        # Two silent cameras: the one camera sending stands in for both.
        clocks.advance(0.05)  # off the 0.1 s grid: silence passes 1 s at the 10th frame (1.05 s)
        assert feed(pipe, clocks, [None, 0, None], steps=20, first_stamp=first + 3 * SECOND) == 11
        wait_for(lambda: pipe.published + pipe.dropped_sets == 36)
        assert results[-1].missing_cameras == ("front", "back")
        assert results[-1].uncertain_reason.startswith("cameras front, back stopped: black images in their")
        # "wait": no set without them, and the WARN says how to localize anyway.
        pipe.reconfigure(missing_camera="wait")
        assert feed(pipe, clocks, [None, 0, None], steps=5, first_stamp=first + 5 * SECOND) == 0
        assert pipe.diagnostics().message.endswith("missing_camera: black localizes without them)")
        with pytest.raises(ValueError, match="missing_camera must be one of wait, black, got 'grey'"):
            pipe.reconfigure(missing_camera="grey")
    finally:
        pipe.stop()
    assert errors == []

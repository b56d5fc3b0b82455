"""The localizer's processing pipeline, free of ROS: images in, pose estimates out.

    camera callbacks --add_image--> FrameSynchronizer --complete set--> LatestMailbox (1 slot)
        --> worker thread: stack images, draw S dropout masks, engine.infer (one batched pass),
            mean pose + calibrated 6x6 covariance --> on_result

The node (`node.py`) only converts messages and publishes; everything here is callable from
tests directly. Callbacks never wait for inference: while the engine is busy, a newer set
replaces the waiting one (counted in `dropped_sets`).

Faults never stop the pipeline, and never flood the log: a rejected image or a failed set is
counted (`rejected_images`, `engine_errors`, `nonfinite_outputs` in the diagnostics) every time,
but reported (`reject_image`'s return value, `on_error`) only the first time a problem of its
kind occurs and then at most once per `report_interval_s`, saying how many were suppressed.

Latency here is the node's own part only: `set_to_pose` (diagnostics `set_to_pose_ms_p50/p99`)
runs from the moment a synchronized set is complete in the node (its last image received,
decoded and resized) to the estimate being ready: mailbox wait, stacking, inference and the MC
estimate. DDS transport, image decoding and the subscription queues lie before it; the
end-to-end latency (`pose-regressor eval-node`'s `e2e_latency_ms_*`) includes them.

Two clocks: `clock` (monotonic, this machine) times latency and the engine; `node_clock` (the ROS
node's clock, which follows /clock under use_sim_time) times the input: a camera that stopped,
a set that never forms. A bag replayed at a tenth of real time is then judged in bag time, and
a node clock that jumps back (a bag loop) restarts that timing instead of producing negative
ages.

`start()` / `stop()` may alternate any number of times (a lifecycle node's activate /
deactivate); `reconfigure()` changes parameters while running.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
from numpy.typing import NDArray

from pose_regressor.distance_prior import DistancePrior
from pose_regressor.limits import (
    FLAG_OFF_REL_TOL,
    MAX_FLAG_POSITION_STD,
    MAX_FLAG_ROTATION_STD,
    MISSING_CAMERA_POLICIES,
)
from pose_regressor.mailbox import LatestMailbox, MailboxWorker
from pose_regressor.stats import EventCounter, LatencyWindow, RateMeter
from pose_regressor.sync import FrameSynchronizer, SyncedSet
from pose_regressor.uncertainty import CovarianceScale, PoseEstimate, dropout_masks, estimate_from_samples

if TYPE_CHECKING:  # the pipeline reads a bundle's fields; loading one is the caller's job
    from pose_regressor.bundle import ModelBundle

OK, WARN, ERROR = 0, 1, 2

# Best-effort images lost in transport: a few percent is normal jitter on a busy host; a tenth
# of a camera's frames is a misconfiguration (typically large images without a fitting DDS profile).
LOSS_WARN_FRACTION = 0.1
LOSS_WINDOW_S = 10.0
LARGE_IMAGES_HINT = (
    "images too large for the DDS defaults? use config/fastdds_large_images.xml in every process "
    "(FASTRTPS_DEFAULT_PROFILES_FILE)"
)


class Engine(Protocol):
    def infer(
        self, images: NDArray[np.uint8], masks: NDArray[np.float32]
    ) -> tuple[NDArray[Any], NDArray[Any]]: ...


class VarianceEngine(Engine, Protocol):
    """An engine of a bundle with a variance head (`InferenceEngine.infer_outputs`)."""

    def infer_outputs(self, images: NDArray[np.uint8], masks: NDArray[np.float32]) -> Any: ...


class EngineOutputError(RuntimeError):
    """The engine returned non-finite poses; nothing is published for that set."""


class LogThrottle:
    """Which of many similar log lines to emit: the first of each key, then one per `interval_s`.

    `check(key)` returns None to suppress the line, or the number of lines of that key that were
    suppressed since the last one emitted (0 the first time). Thread-safe.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[object, list[float | int]] = {}  # key -> [last emitted, suppressed since]

    def check(self, key: object) -> int | None:
        now = self._clock()
        with self._lock:
            entry = self._keys.get(key)
            if entry is None:
                if len(self._keys) >= 1024:  # keys come from messages: bound the memory
                    self._keys.clear()
                self._keys[key] = [now, 0]
                return 0
            if now - entry[0] < self.interval_s:
                entry[1] += 1
                return None
            suppressed = int(entry[1])
            entry[0], entry[1] = now, 0
            return suppressed


_VARIABLE_PARTS = re.compile(r"'[^']*'|\"[^\"]*\"|0x[0-9a-fA-F]+|\d+")


def message_kind(text: str) -> str:
    """The kind of a problem, for `LogThrottle`: `text` without numbers (stamps, sizes, addresses)
    and quoted values (an encoding name), so that varied instances of one problem share a key."""
    return _VARIABLE_PARTS.sub("#", text)


def _suppressed_note(count: int) -> str:
    return f" ({count} more like this since the last report, not logged)" if count else ""


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline needs from the bundle and the parameters."""

    camera_names: tuple[str, ...]
    hidden_dim: int
    dropout: float
    # The bundle's calibration (a number: both axis groups); `reconfigure(covariance_scale=s)`
    # with a number overrides both groups.
    covariance_scale: float | CovarianceScale = 1.0
    variance_head: bool = False  # the engine also gives log-variances (bundle.variance_head)
    sync_slop_s: float = 0.01
    mc_samples: int = 16
    seed: int = 0
    max_position_std: float = 1.0
    max_rotation_std: float = 0.35
    camera_timeout_s: float = 1.0
    report_interval_s: float = 10.0  # a repeated warning or error is logged at most this often
    # A camera silent for camera_timeout_s while others send (limits.MISSING_CAMERA_POLICIES):
    # "wait" forms no set until it sends again; "black" forms sets of the others with a black
    # image in its place (what a covered lens shows, and what a model trained with
    # augment.camera_dropout has seen), each pose flagged uncertain.
    missing_camera: str = "wait"
    # The bundle's distance prior: position variance that grows away from the training path
    distance_prior: DistancePrior | None = None


def config_for_bundle(bundle: ModelBundle, **settings: Any) -> PipelineConfig:
    """The pipeline configuration of a bundle: what it fixes (cameras, D, dropout, calibration,
    log-variance output, distance prior), with `settings` (mc_samples, seed, thresholds, ...) on top."""
    return PipelineConfig(
        camera_names=tuple(bundle.camera_names),
        hidden_dim=bundle.hidden_dim,
        dropout=bundle.dropout,
        covariance_scale=bundle.covariance_scale,
        variance_head=bundle.log_variance_output,
        distance_prior=bundle.distance_prior,
        **settings,
    )


# Settings that shape the model's input or its masks: they come from the bundle, and changing them
# means loading another bundle (a new pipeline), not reconfiguring this one.
FIXED_SETTINGS = frozenset({"camera_names", "hidden_dim", "dropout", "variance_head", "distance_prior"})

# name -> (type, lower bound, bound included): what `reconfigure` accepts.
_SETTING_RANGES: dict[str, tuple[type, float, bool]] = {
    "mc_samples": (int, 1, True),
    "seed": (int, 0, True),  # numpy's generators take non-negative seeds only
    "covariance_scale": (float, 0.0, False),
    "sync_slop_s": (float, 0.0, True),
    # 0 flags every pose uncertain (with gate_uncertain: publish nothing), as the parameters allow.
    "max_position_std": (float, 0.0, True),
    "max_rotation_std": (float, 0.0, True),
    "camera_timeout_s": (float, 0.0, False),
    "report_interval_s": (float, 0.0, True),
}


def _checked_change(name: str, value: object) -> object:
    """One `reconfigure` value, checked (ValueError naming the setting)."""
    if name == "covariance_scale":
        return _checked_scale(value)
    if name == "missing_camera":
        if value not in MISSING_CAMERA_POLICIES:
            raise ValueError(
                f"missing_camera must be one of {', '.join(MISSING_CAMERA_POLICIES)}, got {value!r}"
            )
        return value
    return _checked_setting(name, value)


def _checked_scale(value: object) -> CovarianceScale:
    """A `covariance_scale` change: a CovarianceScale as is, or a number > 0 for both axis groups
    (an override of the bundle's per-group calibration, as a single scale always was)."""
    if isinstance(value, CovarianceScale):
        return value
    return CovarianceScale.uniform(_checked_setting("covariance_scale", value))


def _checked_setting(name: str, value: object) -> float:
    """`value` for PipelineConfig field `name` as int or float (numpy scalars included), or ValueError."""
    kind, lower, inclusive = _SETTING_RANGES[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if kind is int:
        if not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        number: float = int(value)
    else:
        number = float(value)
        # inf is a legitimate "no limit" for the std thresholds; NaN is never meaningful.
        if math.isnan(number) or (
            math.isinf(number) and name not in ("max_position_std", "max_rotation_std")
        ):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if number < lower or (number == lower and not inclusive):
        bound = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be {bound} {lower:g}, got {value!r}")
    return number


def flag_check_off(threshold: float, largest: float) -> bool:
    """Whether an uncertain-flag `threshold` is at (or above) its `largest` value, within the
    tolerance rclpy accepts a parameter's bound with: that check is then switched off."""
    return threshold >= largest * (1.0 - FLAG_OFF_REL_TOL)


def uncertainty_reason(
    estimate: PoseEstimate,
    max_position_std: float,
    max_rotation_std: float,
    distance_prior: DistancePrior | None = None,
) -> str | None:
    """Why `estimate` is flagged uncertain, with the numbers, or None when it is not, e.g.
    `position std 0.84 m > max_position_std 0.5 m (1.7x)` and/or
    `rotation std 7.9 deg > max_rotation_std 5 deg (0.0873 rad, 1.6x)`. The rotation is shown in
    degrees, the threshold also in radians, as the parameter is set. With the bundle's
    `distance_prior`, the position part also says how far the estimate is from the training path
    (`, 2.1 m from the nearest training position`): the prior's share of that std.

    A threshold at its largest value (`limits.MAX_FLAG_POSITION_STD`, 10^6 m;
    `limits.MAX_FLAG_ROTATION_STD`, pi rad) or above (inf) switches its check off: the calibrated
    stds are unbounded (a rotation std of thousands of degrees on views far from training), and
    the largest value a parameter takes must mean "never flag for this std"."""
    parts = []
    position_on = not flag_check_off(max_position_std, MAX_FLAG_POSITION_STD)
    rotation_on = not flag_check_off(max_rotation_std, MAX_FLAG_ROTATION_STD)
    if position_on and estimate.position_std > max_position_std:
        away = (
            ""
            if distance_prior is None
            else f", {distance_prior.nearest_distances(estimate.translation)[0]:.3g} m from the nearest "
            "training position"
        )
        parts.append(
            f"position std {estimate.position_std:.3g} m > max_position_std {max_position_std:.3g} m"
            + _times(estimate.position_std, max_position_std, "")
            + away
        )
    if rotation_on and estimate.rotation_std > max_rotation_std:
        parts.append(
            f"rotation std {math.degrees(estimate.rotation_std):.3g} deg > max_rotation_std "
            f"{math.degrees(max_rotation_std):.3g} deg"
            + _times(estimate.rotation_std, max_rotation_std, f"{max_rotation_std:.3g} rad")
        )
    return "; ".join(parts) or None


def stand_in_note(missing: tuple[str, ...]) -> str:
    """`camera left stopped: a black image in its place` (`cameras left, back stopped: black
    images in their places`), for a set with stand-ins."""
    if len(missing) == 1:
        return f"camera {missing[0]} stopped: a black image in its place"
    return f"cameras {', '.join(missing)} stopped: black images in their places"


def _times(value: float, limit: float, prefix: str) -> str:
    """` (PREFIX, 1.7x)`: how far above the limit (no factor for a limit of 0)."""
    notes = [prefix] if prefix else []
    if limit > 0:
        ratio = value / limit
        # a third digit just above the limit, where two would print a flagged std as "1x"
        notes.append(f"{ratio:.3g}x" if ratio < 1.05 else f"{ratio:.2g}x")
    return f" ({', '.join(notes)})" if notes else ""


@dataclass(frozen=True)
class CameraFrame:
    image: NDArray[np.uint8]  # (h, w, 3) RGB as decoded; `prepare` brings the set to the input size
    received: float  # monotonic seconds
    stand_in: bool = False  # a black image in place of a stopped camera's (missing_camera: black)


@dataclass(frozen=True)
class LocalizationResult:
    stamp_ns: int  # the set's stamp (reference camera)
    estimate: PoseEstimate
    uncertain: bool
    set_to_pose_s: float  # set complete in the node -> estimate ready (no DDS, no decoding)
    infer_s: float  # engine time alone
    skew_ns: int
    uncertain_reason: str = ""  # why `uncertain` (`uncertainty_reason`); empty when it is not
    missing_cameras: tuple[str, ...] = ()  # cameras black in this set (missing_camera: black)

    @property
    def latency_s(self) -> float:
        """Deprecated name of `set_to_pose_s`."""
        return self.set_to_pose_s


@dataclass
class DiagnosticsSnapshot:
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)


class StampOffsets:
    """Each camera's header-stamp offset from the reference camera (camera 0), for diagnostics.

    Stamps of periodic cameras can be paired many ways (at 10 Hz a +50 ms offset is also -50 ms
    to the next frame), so an offset is taken between the frames that *arrived* closest together
    on this machine: cameras triggered together arrive together, whatever their stamps say. The
    last `window` pairings per camera are kept and the closest in arrival wins (the newest among
    equals). A stamp older than its camera's previous one (a bag loop) forgets everything, as the
    synchronizer does. Not thread-safe: the pipeline calls it under its timing lock.
    """

    def __init__(self, camera_count: int, window: int = 8) -> None:
        self._count = camera_count
        self._window = window
        self.reset()

    def reset(self) -> None:
        self._stamps: list[int | None] = [None] * self._count
        self._received: list[float] = [0.0] * self._count
        # (|arrival gap| s, stamp - reference stamp ns) per camera; camera 0's stays empty.
        self._pairs: list[deque[tuple[float, int]]] = [deque(maxlen=self._window) for _ in range(self._count)]

    def add(self, camera_index: int, stamp_ns: int, received: float) -> None:
        previous = self._stamps[camera_index]
        if previous is not None and stamp_ns < previous:
            self.reset()
        self._stamps[camera_index] = stamp_ns
        self._received[camera_index] = received
        if camera_index == 0:
            for other in range(1, self._count):
                stamp = self._stamps[other]
                if stamp is not None:
                    gap = abs(received - self._received[other])
                    self._pairs[other].append((gap, stamp - stamp_ns))
            return
        reference = self._stamps[0]
        if reference is not None:
            gap = abs(received - self._received[0])
            self._pairs[camera_index].append((gap, stamp_ns - reference))

    def offset_ns(self, camera_index: int) -> int | None:
        """Stamp of `camera_index` minus the reference camera's (ns); None while unknown."""
        if camera_index == 0:
            return 0 if self._stamps[0] is not None else None
        pairs = self._pairs[camera_index]
        if pairs:
            return min(reversed(pairs), key=lambda pair: pair[0])[1]
        stamp, reference = self._stamps[camera_index], self._stamps[0]
        return None if stamp is None or reference is None else stamp - reference


def _span(ns: float) -> str:
    """A stamp difference for people: milliseconds below a second, seconds (hours of clock step
    stay readable: "7200.000 s") above."""
    size = abs(ns)
    return f"{size / 1e6:.1f} ms" if size < 1e9 else f"{size / 1e9:.3f} s"


def _direction(ns: float) -> str:
    return "after" if ns > 0 else "before"


def _signed(ns: float) -> str:
    return ("+" if ns >= 0 else "-") + _span(ns)


def unsynchronized_cause(names: tuple[str, ...], offsets: list[int | None], slop_ns: int) -> str:
    """Why the cameras `names` (the first is the reference) form no set, from their stamp
    `offsets` against the reference (ns, None where unknown): the camera(s) whose stamps are off."""
    reference = names[0]
    others = [
        (name, offset) for name, offset in zip(names[1:], offsets[1:], strict=True) if offset is not None
    ]
    off = [(name, offset) for name, offset in others if abs(offset) > slop_ns]
    if len(names) >= 3 and len(off) == len(names) - 1:
        # Every other camera is off by the same amount (within the slop): they agree with each
        # other, so the reference camera is the odd one out.
        shifts = [offset for _, offset in off]
        if max(shifts) - min(shifts) <= slop_ns:
            mean = -sum(shifts) / len(shifts)  # the reference's stamps relative to the others
            return f"camera {reference} stamps are {_span(mean)} {_direction(mean)} " + ", ".join(
                name for name, _ in off
            )
    if off:
        return "; ".join(
            f"camera {name} stamps are {_span(offset)} {_direction(offset)} {reference}"
            for name, offset in off
        )
    listing = ", ".join(f"{name} {_signed(offset)}" for name, offset in others)
    if others:
        spread = max(0, *(o for _, o in others)) - min(0, *(o for _, o in others))
        if spread > slop_ns:  # each camera is near the reference, but not near each other
            return f"camera stamps spread {_span(spread)} (offsets from {reference}: {listing})"
        return (
            f"stamps lie within the slop (offsets from {reference}: {listing}), but frames are not "
            "newer than the last set's: repeated or non-advancing stamps?"
        )
    return "frames are not newer than the last set's: repeated or non-advancing stamps?"


class LocalizerPipeline:
    """See the module docstring. Call `start()` before feeding images and `stop()` at the end."""

    def __init__(
        self,
        config: PipelineConfig,
        engine: Engine,
        on_result: Callable[[LocalizationResult], None],
        on_error: Callable[[str], None] = lambda message: None,
        clock: Callable[[], float] = time.monotonic,
        engine_name: str = "",
        prepare: Callable[[list[NDArray[np.uint8]]], NDArray[np.uint8]] = np.stack,
        node_clock: Callable[[], float] | None = None,
    ) -> None:
        """`clock`: monotonic seconds for latency and engine time. `node_clock`: seconds on the
        ROS node's clock (sim-time aware; default `clock`) for camera timeouts."""
        self.config = config
        self.engine = engine
        self.engine_name = engine_name
        self._on_result = on_result
        self._on_error = on_error
        self._clock = clock
        self._node_clock = clock if node_clock is None else node_clock
        self._prepare = prepare
        count = len(config.camera_names)
        self.sync: FrameSynchronizer[CameraFrame] = FrameSynchronizer(count, round(config.sync_slop_s * 1e9))
        self.mailbox: LatestMailbox[SyncedSet[CameraFrame]] = LatestMailbox()
        self.worker = MailboxWorker(self.mailbox, self._process, self._failed)
        self._rng = np.random.default_rng(config.seed)
        self._ones = np.ones((1, config.hidden_dim), dtype=np.float32)
        self.camera_rates = [RateMeter() for _ in range(count)]
        self.frames_received = [EventCounter(LOSS_WINDOW_S) for _ in range(count)]
        self.frames_lost = [EventCounter(LOSS_WINDOW_S) for _ in range(count)]
        self.output_rate = RateMeter()
        self.set_rate = RateMeter()
        self.set_to_pose = LatencyWindow()  # set complete in the node -> estimate ready
        self.infer_time = LatencyWindow()
        self.skew = LatencyWindow()
        self._lock = threading.Lock()
        self.published = 0
        self.engine_errors = 0
        self.nonfinite_outputs = 0
        self.uncertain = 0
        self.stand_in_sets = 0  # poses made with black images for stopped cameras
        # Poses and flagged poses over the last LOSS_WINDOW_S: the share in the uncertainty WARN.
        self.recent_poses = EventCounter(LOSS_WINDOW_S)
        self.recent_uncertain = EventCounter(LOSS_WINDOW_S)
        self.rejected_images = 0
        self._last_error: tuple[float, str] | None = None
        self._last_estimate: PoseEstimate | None = None
        self._reject_log = LogThrottle(config.report_interval_s, clock)
        self._error_log = LogThrottle(config.report_interval_s, clock)
        self._uncertain_log = LogThrottle(config.report_interval_s, clock)
        self._lifecycle_lock = threading.Lock()
        # Input timing on the node clock, guarded by `_timing_lock` (the clock is read under it,
        # so readings from two threads are seen in order and a jump back is a real one).
        self._timing_lock = threading.Lock()
        self._arrivals: list[float | None] = [None] * count
        self._standing_in: set[int] = set()  # cameras whose place black images take now
        self._first_image_at: float | None = None
        self._last_set_at: float | None = None
        self._node_last: float | None = None
        self.node_clock_jumps_back = 0
        self._offsets = StampOffsets(count)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Starts the worker; does nothing while it runs. After a `stop()` this is a fresh start:
        frames offered before it never pair with new ones, and input timing starts over (a
        pause is not a stopped camera). Counters carry on."""
        with self._lifecycle_lock:
            if self.worker.running:
                return
            self.sync.reset()
            self.mailbox.discard()
            with self._timing_lock:
                self._reset_timing()
                self._offsets.reset()
            self.worker.start()

    def stop(self) -> None:
        """Stops the worker (waiting for the set in hand) and drops the set waiting for it."""
        with self._lifecycle_lock:
            self.worker.stop()
            self.mailbox.discard()

    def check_settings(self, **changes: Any) -> None:
        """Raises the ValueError `reconfigure(**changes)` would raise, changing nothing."""
        self._checked_changes(changes)

    def reconfigure(self, **changes: Any) -> None:
        """Replaces PipelineConfig fields at runtime (e.g. `mc_samples=32, sync_slop_s=0.02`).

        All changes are checked before any is applied, then applied together: the worker reads
        the config once per set, so a set never mixes old and new values. A new `sync_slop_s`
        applies to the next frame offered, a new `seed` restarts the mask generator.

        Raises:
            ValueError: an unknown name, a value out of range, or a setting fixed by the bundle
                (camera_names, hidden_dim, dropout).
        """
        checked = self._checked_changes(changes)
        with self._lock:
            old = self.config
            new = dataclasses.replace(old, **checked)
            if new.sync_slop_s != old.sync_slop_s:
                self.sync.set_slop_ns(round(new.sync_slop_s * 1e9))
            if new.seed != old.seed:
                self._rng = np.random.default_rng(new.seed)
            if new.report_interval_s != old.report_interval_s:
                self._reject_log.interval_s = new.report_interval_s
                self._error_log.interval_s = new.report_interval_s
            self.config = new

    @staticmethod
    def _checked_changes(changes: dict[str, Any]) -> dict[str, Any]:
        known = {f.name for f in dataclasses.fields(PipelineConfig)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(
                f"unknown pipeline setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known - FIXED_SETTINGS))}"
            )
        fixed = sorted(set(changes) & FIXED_SETTINGS)
        if fixed:
            raise ValueError(f"{', '.join(fixed)} come(s) from the model bundle and cannot change at runtime")
        return {name: _checked_change(name, value) for name, value in changes.items()}

    # ------------------------------------------------------------------ input
    def add_image(self, camera_index: int, stamp_ns: int, image: NDArray[np.uint8]) -> bool:
        """One camera's decoded RGB image. True if it completed a synchronized set.

        With `missing_camera` "black", a frame of the first camera still sending also brings a
        black image, with its stamp, for every camera silent for `camera_timeout_s`; a camera
        that sends again takes its own place from its next frame on."""
        now = self._clock()
        stand_ins: list[int] = []
        returned = False
        # The default ("wait", no stand-ins left from "black") adds nothing to the per-frame path.
        if self.config.missing_camera == "black" or self._standing_in:
            with self._timing_lock:
                stand_ins = self._stand_ins_for(camera_index, self._read_node_clock())
                returned = camera_index in self._standing_in
                self._standing_in.discard(camera_index)
                self._standing_in.update(stand_ins)
        if returned:  # its own stamps start afresh, not as a time jump that clears every camera
            self.sync.forget_camera(camera_index)
        synced = self.sync.add(camera_index, stamp_ns, CameraFrame(image, now))  # checks the index
        for index in stand_ins:
            black = CameraFrame(np.zeros_like(image), now, stand_in=True)
            synced = self.sync.add(index, stamp_ns, black) or synced
        self.camera_rates[camera_index].tick(now)
        self.frames_received[camera_index].add(now)
        with self._timing_lock:
            node_now = self._read_node_clock()
            if self._first_image_at is None:
                self._first_image_at = node_now
            self._arrivals[camera_index] = node_now
            if synced is not None:
                self._last_set_at = node_now
            self._offsets.add(camera_index, stamp_ns, now)
        if synced is None:
            return False
        self.set_rate.tick(now)
        self.mailbox.put(synced)
        return True

    def _stand_ins_for(self, camera_index: int, node_now: float) -> list[int]:
        """The cameras a frame of `camera_index` brings black images for (call under
        `_timing_lock`): with `missing_camera` "black", those silent for `camera_timeout_s` (a
        camera never heard from counts from the first image), when `camera_index` is the first
        camera still sending, so that each set gets its stand-ins once."""
        cfg = self.config
        if cfg.missing_camera != "black" or self._first_image_at is None:
            return []
        first = self._first_image_at
        silent = [
            index
            for index, arrived in enumerate(self._arrivals)
            if index != camera_index
            and node_now - (first if arrived is None else arrived) > cfg.camera_timeout_s
        ]
        sending = [index for index in range(len(self._arrivals)) if index not in silent]
        if not silent or camera_index != min(sending):
            return []
        return silent

    def _reset_timing(self) -> None:
        self._arrivals = [None] * len(self._arrivals)
        self._standing_in = set()
        self._first_image_at = None
        self._last_set_at = None
        self._node_last = None

    def _read_node_clock(self) -> float:
        """The node clock's time; call under `_timing_lock`.

        A reading earlier than the last one (sim time restarted by a bag loop) moves every
        recorded time to now: ages never go negative, and every camera gets one
        `camera_timeout_s` to show it is alive in the new epoch before it counts as stopped.
        """
        now = self._node_clock()
        if self._node_last is not None and now < self._node_last:
            self.node_clock_jumps_back += 1
            self._arrivals = [None if at is None else now for at in self._arrivals]
            if self._first_image_at is not None:
                self._first_image_at = now
            if self._last_set_at is not None:
                self._last_set_at = now
        self._node_last = now
        return now

    def record_lost(self, camera_index: int, count: int) -> None:
        """`count` frames of one camera that the middleware saw go missing on the way (the DDS
        reader's sample-lost count: gaps in the writer's sequence numbers)."""
        self.frames_lost[camera_index].add(self._clock(), count)

    def _transport_losses(self, now: float) -> list[tuple[str, int, int]]:
        """(camera, lost, sent) over the loss window for each camera losing a noticeable share."""
        losing = []
        for name, received, lost in zip(
            self.config.camera_names, self.frames_received, self.frames_lost, strict=True
        ):
            recent_lost = lost.recent(now)
            sent = recent_lost + received.recent(now)
            if recent_lost >= 3 and recent_lost >= LOSS_WARN_FRACTION * sent:
                losing.append((name, recent_lost, sent))
        return losing

    def uncertain_report(self, result: LocalizationResult) -> str | None:
        """The line to log for a flagged pose (None: not flagged, or one flagged for the same kind of
        reason, a large std or the same cameras standing in black, was logged less than
        `report_interval_s` ago; the suppressed ones are counted in the next line)."""
        if not result.uncertain:
            return None
        # A camera standing in black is news of its own, not one more large std.
        suppressed = self._uncertain_log.check(result.missing_cameras or "std")
        if suppressed is None:
            return None
        return f"pose uncertain: {result.uncertain_reason}" + _suppressed_note(suppressed)

    def _uncertain_share(self, now: float) -> str:
        """`3 of the last 40 poses (10 s) flagged`."""
        return (
            f"{self.recent_uncertain.recent(now)} of the last {self.recent_poses.recent(now)} poses "
            f"({LOSS_WINDOW_S:g} s) flagged"
        )

    def reject_image(self, reason: str, kind: object = None) -> str | None:
        """Counts an image that could not be used (bad encoding, size, stamp...).

        Returns the line to log, or None while the same `kind` of problem (default: `reason`)
        was reported less than `report_interval_s` ago.
        """
        with self._lock:
            self.rejected_images += 1
            self._last_error = (self._clock(), reason)
        suppressed = self._reject_log.check(reason if kind is None else kind)
        if suppressed is None:
            return None
        return reason + _suppressed_note(suppressed)

    # ------------------------------------------------------------------ worker
    def masks(self, config: PipelineConfig | None = None) -> NDArray[np.float32]:
        """The dropout masks [S, D] for one set (`config`: the one the set is processed with)."""
        cfg = self.config if config is None else config
        if cfg.mc_samples <= 1:
            return self._ones
        return dropout_masks(cfg.mc_samples, cfg.hidden_dim, cfg.dropout, self._rng)

    def _process(self, synced: SyncedSet[CameraFrame]) -> None:
        cfg = self.config  # once per set: a concurrent reconfigure() applies from the next set
        completed = max(frame.received for frame in synced.frames)
        images = self._prepare([frame.image for frame in synced.frames])
        started = self._clock()
        log_variance = None
        if cfg.variance_head:
            outputs = cast(VarianceEngine, self.engine).infer_outputs(images, self.masks(cfg))
            t, q, log_variance = outputs.translation, outputs.rotation, outputs.log_variance
        else:
            t, q = self.engine.infer(images, self.masks(cfg))
        infer_s = self._clock() - started
        t = np.asarray(t, dtype=np.float64)
        q = np.asarray(q, dtype=np.float64)
        finite = np.all(np.isfinite(t)) and np.all(np.isfinite(q))
        if not (finite and (log_variance is None or np.all(np.isfinite(log_variance)))):
            with self._lock:
                self.nonfinite_outputs += 1
            raise EngineOutputError("engine returned non-finite poses (NaN or inf); nothing published")
        estimate = estimate_from_samples(
            t, q, cfg.covariance_scale, log_variances=log_variance, distance_prior=cfg.distance_prior
        )
        missing = tuple(
            name for name, frame in zip(cfg.camera_names, synced.frames, strict=True) if frame.stand_in
        )
        reasons = [
            *([f"{stand_in_note(missing)} (missing_camera: black)"] if missing else []),
            *filter(
                None,
                [
                    uncertainty_reason(
                        estimate, cfg.max_position_std, cfg.max_rotation_std, cfg.distance_prior
                    )
                ],
            ),
        ]
        uncertain = bool(reasons)
        done = self._clock()
        result = LocalizationResult(
            synced.stamp_ns,
            estimate,
            uncertain,
            done - completed,
            infer_s,
            synced.skew_ns,
            "; ".join(reasons),
            missing,
        )
        self.recent_poses.add(done)
        if uncertain:
            self.recent_uncertain.add(done)
        self.set_to_pose.add(result.set_to_pose_s)
        self.infer_time.add(infer_s)
        self.skew.add(synced.skew_ns / 1e9)
        self.output_rate.tick(done)
        with self._lock:
            self._last_estimate = estimate
            self.published += 1
            self.uncertain += int(uncertain)
            self.stand_in_sets += int(bool(missing))
        self._on_result(result)

    def _failed(self, exc: BaseException, synced: SyncedSet[CameraFrame]) -> None:
        """A set that raised: counted every time, reported once per kind of failure and interval.

        The report names the set (stamp, cameras), the engine and the exception; the worker goes
        on with the next set (`MailboxWorker`), so a transient failure costs one set only.
        """
        what = f"{type(exc).__name__}: {exc}"
        stamp = synced.stamp_ns
        frames = traceback.extract_tb(exc.__traceback__)
        where = ""
        if frames:  # the innermost frame: enough to find the cause without a multi-line traceback
            where = f" (raised at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})"
        message = (
            f"inference failed for the set stamped {stamp // 1_000_000_000}.{stamp % 1_000_000_000:09d} s "
            f"(cameras {', '.join(self.config.camera_names)}"
            + (f", engine {self.engine_name}" if self.engine_name else "")
            + f"): {what}{where}; the next set will be tried"
        )
        with self._lock:
            if not isinstance(exc, EngineOutputError):  # non-finite outputs are counted in _process
                self.engine_errors += 1
            self._last_error = (self._clock(), message)
        suppressed = self._error_log.check(message_kind(what))
        if suppressed is not None:
            self._on_error(message + _suppressed_note(suppressed))

    # ------------------------------------------------------------------ diagnostics
    @property
    def dropped_sets(self) -> int:
        return self.mailbox.replaced

    def diagnostics(self) -> DiagnosticsSnapshot:
        """Level and values for /diagnostics: rates, skew, set-to-pose time, drops, uncertainty, faults.

        Levels, most severe first: ERROR no images from any camera; ERROR inference failing;
        WARN camera(s) stopped; WARN no synchronized set although every camera delivers (names
        the camera whose stamps are off); WARN frames lost in transport; WARN pose uncertainty;
        WARN other recent problem; OK.
        """
        now = self._clock()
        cfg = self.config
        with self._timing_lock:
            node_now = self._read_node_clock()
            arrivals = list(self._arrivals)
            last_set = self._last_set_at
            since = last_set if last_set is not None else self._first_image_at
            offsets = [self._offsets.offset_ns(index) for index in range(len(cfg.camera_names))]
        values: dict[str, str] = {}
        stopped = []
        for name, meter, arrived in zip(cfg.camera_names, self.camera_rates, arrivals, strict=True):
            values[f"input_rate_hz/{name}"] = f"{meter.rate(now):.2f}"
            if arrived is None or node_now - arrived > cfg.camera_timeout_s:
                stopped.append(name)
        for name, offset in zip(cfg.camera_names, offsets, strict=True):
            values[f"stamp_offset_ms/{name}"] = "nan" if offset is None else f"{offset / 1e6:.1f}"
        for name, lost in zip(cfg.camera_names, self.frames_lost, strict=True):
            values[f"frames_lost/{name}"] = str(lost.total)
        values["last_set_age_s"] = "never" if last_set is None else f"{node_now - last_set:.2f}"
        values["node_clock_jumps_back"] = str(self.node_clock_jumps_back)
        values["set_rate_hz"] = f"{self.set_rate.rate(now):.2f}"
        values["output_rate_hz"] = f"{self.output_rate.rate(now):.2f}"
        # Not end-to-end: from the set's completion in the node (see the module docstring).
        values["set_to_pose_ms_p50"] = f"{self.set_to_pose.percentile_ms(50):.2f}"
        values["set_to_pose_ms_p99"] = f"{self.set_to_pose.percentile_ms(99):.2f}"
        values["engine_ms_p50"] = f"{self.infer_time.percentile_ms(50):.2f}"
        values["engine_ms_p99"] = f"{self.infer_time.percentile_ms(99):.2f}"
        values["sync_skew_ms_p50"] = f"{self.skew.percentile_ms(50):.2f}"
        values["dropped_sets"] = str(self.dropped_sets)
        values["unsynchronized_frames"] = str(self.sync.replaced + self.sync.stale)
        values["sync_resets"] = str(self.sync.resets)
        values["published"] = str(self.published)
        values["rejected_images"] = str(self.rejected_images)
        values["engine_errors"] = str(self.engine_errors)
        values["nonfinite_outputs"] = str(self.nonfinite_outputs)
        values["engine"] = self.engine_name
        values["mc_samples"] = str(cfg.mc_samples)
        estimate = self._last_estimate
        if estimate is not None:
            values["position_std_m"] = f"{estimate.position_std:.3f}"
            values["rotation_std_deg"] = f"{np.degrees(estimate.rotation_std):.2f}"
        # the thresholds in force (a parameter of 0 shows as 0, these as the bundle's values)
        values["max_position_std_m"] = f"{cfg.max_position_std:.6g}"
        values["max_rotation_std_deg"] = f"{np.degrees(cfg.max_rotation_std):.6g}"
        values["uncertain_poses"] = str(self.uncertain)
        values["stand_in_poses"] = str(self.stand_in_sets)
        values["missing_camera"] = cfg.missing_camera
        values["uncertain_poses_recent"] = self._uncertain_share(now)
        recent_error = self._last_error is not None and now - self._last_error[0] < 5.0
        if len(stopped) == len(cfg.camera_names):
            return DiagnosticsSnapshot(
                ERROR, f"no images from any camera for {cfg.camera_timeout_s:g} s", values
            )
        if recent_error and self._last_error is not None and "inference failed" in self._last_error[1]:
            return DiagnosticsSnapshot(ERROR, self._last_error[1], values)
        if stopped and cfg.missing_camera == "black":
            return DiagnosticsSnapshot(
                WARN,
                f"camera(s) stopped: {', '.join(stopped)}; localizing with black images in their place "
                "(missing_camera: black), every such pose flagged uncertain",
                values,
            )
        if stopped:
            # say what it costs: an operator reading "stopped: left" may expect poses from the rest
            return DiagnosticsSnapshot(
                WARN,
                f"camera(s) stopped: {', '.join(stopped)}; no pose until every camera sends again "
                f"(a pose needs a set of all {len(cfg.camera_names)}; missing_camera: black localizes "
                "without them)",
                values,
            )
        # Every camera delivers (none stopped, so `since` is set), yet no set forms: stamps that
        # disagree by more than the slop (a clock stepped, an offset misconfigured). An old
        # estimate's uncertainty is not the news then.
        if since is not None and node_now - since > cfg.camera_timeout_s:
            cause = unsynchronized_cause(cfg.camera_names, offsets, round(cfg.sync_slop_s * 1e9))
            return DiagnosticsSnapshot(
                WARN,
                f"no synchronized camera set for {node_now - since:.1f} s: {cause} "
                f"(sync_slop {cfg.sync_slop_s * 1e3:.1f} ms)",
                values,
            )
        losing = self._transport_losses(now)
        if losing:
            shares = ", ".join(f"{name} {lost} of {sent}" for name, lost, sent in losing)
            return DiagnosticsSnapshot(
                WARN,
                f"camera frames lost on the way to the node in the last {LOSS_WINDOW_S:g} s: {shares}; "
                + LARGE_IMAGES_HINT,
                values,
            )
        reason = (
            uncertainty_reason(estimate, cfg.max_position_std, cfg.max_rotation_std, cfg.distance_prior)
            if estimate is not None
            else None
        )
        if reason is not None:
            return DiagnosticsSnapshot(
                WARN, f"pose uncertain: {reason}; {self._uncertain_share(now)}", values
            )
        if recent_error and self._last_error is not None:
            return DiagnosticsSnapshot(WARN, self._last_error[1], values)
        return DiagnosticsSnapshot(OK, "localizing", values)

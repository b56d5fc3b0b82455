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
"""

from __future__ import annotations

import re
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from pose_regressor.mailbox import LatestMailbox, MailboxWorker
from pose_regressor.stats import LatencyWindow, RateMeter
from pose_regressor.sync import FrameSynchronizer, SyncedSet
from pose_regressor.uncertainty import PoseEstimate, dropout_masks, estimate_from_samples

OK, WARN, ERROR = 0, 1, 2


class Engine(Protocol):
    def infer(
        self, images: NDArray[np.uint8], masks: NDArray[np.float32]
    ) -> tuple[NDArray[Any], NDArray[Any]]: ...


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
    covariance_scale: float = 1.0
    sync_slop_s: float = 0.01
    mc_samples: int = 16
    seed: int = 0
    max_position_std: float = 1.0
    max_rotation_std: float = 0.35
    camera_timeout_s: float = 1.0
    report_interval_s: float = 10.0  # a repeated warning or error is logged at most this often


@dataclass(frozen=True)
class CameraFrame:
    image: NDArray[np.uint8]  # (h, w, 3) RGB as decoded; `prepare` brings the set to the input size
    received: float  # monotonic seconds


@dataclass(frozen=True)
class LocalizationResult:
    stamp_ns: int  # the set's stamp (reference camera)
    estimate: PoseEstimate
    uncertain: bool
    latency_s: float  # set complete -> estimate ready
    infer_s: float  # engine time alone
    skew_ns: int


@dataclass
class DiagnosticsSnapshot:
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)


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
    ) -> None:
        self.config = config
        self.engine = engine
        self.engine_name = engine_name
        self._on_result = on_result
        self._on_error = on_error
        self._clock = clock
        self._prepare = prepare
        count = len(config.camera_names)
        self.sync: FrameSynchronizer[CameraFrame] = FrameSynchronizer(count, round(config.sync_slop_s * 1e9))
        self.mailbox: LatestMailbox[SyncedSet[CameraFrame]] = LatestMailbox()
        self.worker = MailboxWorker(self.mailbox, self._process, self._failed)
        self._rng = np.random.default_rng(config.seed)
        self._ones = np.ones((1, config.hidden_dim), dtype=np.float32)
        self.camera_rates = [RateMeter() for _ in range(count)]
        self.output_rate = RateMeter()
        self.set_rate = RateMeter()
        self.latency = LatencyWindow()
        self.infer_time = LatencyWindow()
        self.skew = LatencyWindow()
        self._lock = threading.Lock()
        self.published = 0
        self.engine_errors = 0
        self.nonfinite_outputs = 0
        self.uncertain = 0
        self.rejected_images = 0
        self._last_error: tuple[float, str] | None = None
        self._last_estimate: PoseEstimate | None = None
        self._reject_log = LogThrottle(config.report_interval_s, clock)
        self._error_log = LogThrottle(config.report_interval_s, clock)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    # ------------------------------------------------------------------ input
    def add_image(self, camera_index: int, stamp_ns: int, image: NDArray[np.uint8]) -> bool:
        """One camera's decoded RGB image. True if it completed a synchronized set."""
        now = self._clock()
        self.camera_rates[camera_index].tick(now)
        synced = self.sync.add(camera_index, stamp_ns, CameraFrame(image, now))
        if synced is None:
            return False
        self.set_rate.tick(now)
        self.mailbox.put(synced)
        return True

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
    def masks(self) -> NDArray[np.float32]:
        if self.config.mc_samples <= 1:
            return self._ones
        return dropout_masks(self.config.mc_samples, self.config.hidden_dim, self.config.dropout, self._rng)

    def _process(self, synced: SyncedSet[CameraFrame]) -> None:
        completed = max(frame.received for frame in synced.frames)
        images = self._prepare([frame.image for frame in synced.frames])
        started = self._clock()
        t, q = self.engine.infer(images, self.masks())
        infer_s = self._clock() - started
        t = np.asarray(t, dtype=np.float64)
        q = np.asarray(q, dtype=np.float64)
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(q))):
            with self._lock:
                self.nonfinite_outputs += 1
            raise EngineOutputError("engine returned non-finite poses (NaN or inf); nothing published")
        estimate = estimate_from_samples(t, q, self.config.covariance_scale)
        uncertain = (
            estimate.position_std > self.config.max_position_std
            or estimate.rotation_std > self.config.max_rotation_std
        )
        done = self._clock()
        result = LocalizationResult(
            synced.stamp_ns, estimate, uncertain, done - completed, infer_s, synced.skew_ns
        )
        self.latency.add(result.latency_s)
        self.infer_time.add(infer_s)
        self.skew.add(synced.skew_ns / 1e9)
        self.output_rate.tick(done)
        with self._lock:
            self._last_estimate = estimate
            self.published += 1
            self.uncertain += int(uncertain)
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
        """Level and values for /diagnostics: rates, skew, latency, drops, uncertainty, faults."""
        now = self._clock()
        cfg = self.config
        values: dict[str, str] = {}
        stopped = []
        for name, meter in zip(cfg.camera_names, self.camera_rates, strict=True):
            values[f"input_rate_hz/{name}"] = f"{meter.rate(now):.2f}"
            last = meter.last()
            if last is None or now - last > cfg.camera_timeout_s:
                stopped.append(name)
        values["set_rate_hz"] = f"{self.set_rate.rate(now):.2f}"
        values["output_rate_hz"] = f"{self.output_rate.rate(now):.2f}"
        values["latency_ms_p50"] = f"{self.latency.percentile_ms(50):.2f}"
        values["latency_ms_p99"] = f"{self.latency.percentile_ms(99):.2f}"
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
        values["uncertain_poses"] = str(self.uncertain)
        recent_error = self._last_error is not None and now - self._last_error[0] < 5.0
        if len(stopped) == len(cfg.camera_names):
            return DiagnosticsSnapshot(
                ERROR, f"no images from any camera for {cfg.camera_timeout_s:g} s", values
            )
        if recent_error and self._last_error is not None and "inference failed" in self._last_error[1]:
            return DiagnosticsSnapshot(ERROR, self._last_error[1], values)
        if stopped:
            return DiagnosticsSnapshot(WARN, f"camera(s) stopped: {', '.join(stopped)}", values)
        if estimate is not None and (
            estimate.position_std > cfg.max_position_std or estimate.rotation_std > cfg.max_rotation_std
        ):
            return DiagnosticsSnapshot(
                WARN, "pose uncertainty above max_position_std / max_rotation_std", values
            )
        if recent_error and self._last_error is not None:
            return DiagnosticsSnapshot(WARN, self._last_error[1], values)
        return DiagnosticsSnapshot(OK, "localizing", values)

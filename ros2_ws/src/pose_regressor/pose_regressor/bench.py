"""`pose-regressor bench`: the cost of one camera set on an engine; what MC dropout and fusion add.

ROS-free.

Each measured frame is the robot's path without ROS: ``preprocess`` (`pose_regressor.bundle.preprocess`
of random camera-size images, bundle camera width x height, into a reused input buffer), ``infer``
(`InferenceEngine.infer_outputs`, with the log_variance output of a variance head),
``postprocess`` (`pose_regressor.uncertainty.estimate_from_samples`);
``total`` is the whole frame. Dropout masks are drawn before the clock starts. Rows:

* ``deterministic``: one pass with the mask of ones (S = 1);
* ``mc``: our MC dropout, one backbone pass and S masks on the head (S = ``mc_samples``);
* ``naive``: the Bayesian-PoseNet baseline that dropout throughout the network would need: S full
  forward passes, timed as S separate ``infer`` calls with S = 1 each, then the same postprocess;
* ``compare``: the ``--compare`` bundle's ``mc`` row (e.g. a T=1 bundle of the same backbone), at
  ``mc_samples`` when given, else at that bundle's own ``mc_samples`` (what the node runs for it).

A bundle without dropout (``dropout: 0``: `export --ensemble-covariance heads`, or a recipe with
``model.covariance: heads`` such as the synthetic-scene default) has no MC samples: its ``mc`` row
runs its S = ``mc_samples`` rows (1 for one model, K for an ensemble or a model of K heads), S may
be 1, and there is no ``naive`` row (``naive_over_ours`` is None).

Ratios come from the medians (p50) of the same run: ``mc_cost_ratio`` = total(mc) / total(deterministic),
``naive_over_ours`` = total(naive) / total(mc), ``compare_ratio`` = total(mc) / total(compare mc).
Measurements are interleaved and warm: every repetition runs each row once, in a fresh random
(seeded) order, so that load changes on a shared machine hit all rows alike; and each measured
frame comes after a short idle pause (``settle_s``, 50 ms) and an unmeasured priming frame of the
same row (one pass), so that every row is timed in the steady state of a robot running one model
at camera rate. Without them, a row that follows the other bundle's engine finds the other model's
weights in the CPU caches and ONNX Runtime's other intra-op thread pool still spinning (for more
than 5 ms, less than 50 ms, after its last run): on the 2-core machine that made ``compare`` and
whichever rows followed it up to 1.9x slower.

Bounds (checked before anything is allocated; each is one clear error): S in [2, `MAX_MC_SAMPLES`]
(the bundle's own limit; [1, `MAX_MC_SAMPLES`] without dropout) and, for an ensemble bundle, an S
the node takes (`ModelBundle.samples_problem`: a multiple of its K members, exactly K without
dropout), repeats in [1, `MAX_REPEATS`],
warmup in [0, `MAX_WARMUP`], onnxruntime threads in [0, `MAX_THREADS`], settle_s in
[0, `MAX_SETTLE_S`], and the random camera images of one set (the bundle's camera sizes) at most
`MAX_IMAGE_BYTES`. A run that takes longer than `PROGRESS_EVERY_S` reports its progress on stderr
every `PROGRESS_EVERY_S` seconds.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pose_regressor.bundle import MAX_MC_SAMPLES, ModelBundle, load_bundle, preprocess
from pose_regressor.engines import InferenceEngine, load_engine
from pose_regressor.files import atomic_write_text, json_text
from pose_regressor.uncertainty import dropout_masks, estimate_from_samples

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_REPEATS",
    "MAX_SETTLE_S",
    "MAX_THREADS",
    "MAX_WARMUP",
    "STAGES",
    "BenchResult",
    "BenchRow",
    "format_table",
    "run_bench",
    "write_json",
]

STAGES = ("preprocess", "infer", "postprocess", "total")
IMAGE_POOL = 3  # distinct random camera sets per row, cycled (fewer when the cameras are large)
SETTLE_S = 0.05  # idle pause before each row's priming frame (lets other thread pools stop spinning)

# Upper bounds of the arguments (S is bounded by pose_regressor.bundle.MAX_MC_SAMPLES).
MAX_REPEATS = 10_000  # measured repetitions
MAX_WARMUP = 1_000  # unmeasured repetitions first
MAX_THREADS = 256  # onnxruntime intra-op threads (0: its default, one per physical core)
MAX_SETTLE_S = 10.0  # idle seconds before each row's priming frame
MAX_IMAGE_BYTES = 1 << 30  # random camera images of one set (each row keeps up to IMAGE_POOL sets)
PROGRESS_EVERY_S = 5.0  # a longer run reports its progress on stderr this often


@dataclass(frozen=True)
class BenchRow:
    """One measured configuration: ``stats[stage] = (p50 ms, p99 ms)`` for every stage in `STAGES`."""

    name: str
    bundle: str
    backend: str
    cameras: int
    samples: int
    passes: int
    stats: dict[str, tuple[float, float]]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bundle": self.bundle,
            "backend": self.backend,
            "T": self.cameras,
            "S": self.samples,
            "forward_passes": self.passes,
            **{f"{stage}_ms": {"p50": p50, "p99": p99} for stage, (p50, p99) in self.stats.items()},
        }


@dataclass(frozen=True)
class BenchResult:
    rows: list[BenchRow]
    mc_cost_ratio: float
    naive_over_ours: float | None  # None: a bundle without dropout has no MC samples to run as passes
    compare_ratio: float | None
    settings: dict[str, Any] = field(default_factory=dict)

    def row(self, name: str) -> BenchRow:
        return next(r for r in self.rows if r.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "mc_cost_ratio": self.mc_cost_ratio,
            "naive_over_ours": self.naive_over_ours,
            "compare_ratio": self.compare_ratio,
            "rows": [r.to_json() for r in self.rows],
            "settings": dict(self.settings),
        }


class _Case:
    """One row's frame function and its samples (nanoseconds per stage)."""

    def __init__(
        self,
        name: str,
        engine: InferenceEngine,
        samples: int,
        naive: bool,
        pools: int,
        rng: np.random.Generator,
    ) -> None:
        bundle = engine.bundle
        self.name, self.engine, self.bundle, self.samples, self.naive = name, engine, bundle, samples, naive
        self.images = [
            [rng.integers(0, 256, (c.height, c.width, 3), dtype=np.uint8) for c in bundle.cameras]
            for _ in range(_image_pool(bundle))
        ]
        if samples == 1 and not naive:
            self.masks = [engine.deterministic_mask()] * pools
        else:
            self.masks = [
                dropout_masks(samples, bundle.hidden_dim, bundle.dropout, rng) for _ in range(pools)
            ]
        self.buffer = np.empty(bundle.images_shape, dtype=np.uint8)
        self.ns: dict[str, list[int]] = {stage: [] for stage in STAGES}

    def prime(self, repetition: int) -> None:
        """An unmeasured frame (one pass) that brings this row's engine and buffers back into cache."""
        masks = self.masks[repetition % len(self.masks)]
        x = preprocess(self.images[repetition % len(self.images)], self.bundle, out=self.buffer)
        out = self.engine.infer_outputs(x, masks[:1] if self.naive else masks)
        estimate_from_samples(
            out.translation,
            out.rotation,
            self.bundle.covariance_scale,
            log_variances=out.log_variance,
            distance_prior=self.bundle.distance_prior,
        )

    def frame(self, repetition: int, record: bool) -> None:
        images = self.images[repetition % len(self.images)]
        masks = self.masks[repetition % len(self.masks)]
        clock = time.perf_counter_ns
        t0 = clock()
        x = preprocess(images, self.bundle, out=self.buffer)
        t1 = clock()
        if self.naive:
            parts = [self.engine.infer_outputs(x, masks[i : i + 1]) for i in range(masks.shape[0])]
            t = np.concatenate([p.translation for p in parts])
            q = np.concatenate([p.rotation for p in parts])
            variances = [p.log_variance for p in parts if p.log_variance is not None]
            lv = np.concatenate(variances) if variances else None
        else:
            out = self.engine.infer_outputs(x, masks)
            t, q, lv = out.translation, out.rotation, out.log_variance
        t2 = clock()
        estimate_from_samples(
            t, q, self.bundle.covariance_scale, log_variances=lv, distance_prior=self.bundle.distance_prior
        )
        t3 = clock()
        if record:
            for stage, value in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                self.ns[stage].append(value)

    def row(self) -> BenchRow:
        stats = {}
        for stage, values in self.ns.items():
            p50, p99 = np.percentile(np.asarray(values, dtype=np.float64) / 1e6, [50, 99])
            stats[stage] = (float(p50), float(p99))
        return BenchRow(
            name=self.name,
            bundle=str(self.bundle.path),
            backend=str(self.engine.describe()),
            cameras=self.bundle.num_cameras,
            samples=self.samples,
            passes=self.samples if self.naive else 1,
            stats=stats,
        )


def _set_bytes(bundle: ModelBundle) -> int:
    """Bytes of one random camera set at the bundle's camera sizes."""
    return sum(c.width * c.height * 3 for c in bundle.cameras)


def _image_pool(bundle: ModelBundle) -> int:
    """Random camera sets per row: IMAGE_POOL, fewer where they would exceed MAX_IMAGE_BYTES."""
    return max(1, min(IMAGE_POOL, MAX_IMAGE_BYTES // _set_bytes(bundle)))


def _check_images(bundle: ModelBundle) -> None:
    size = _set_bytes(bundle)
    if size > MAX_IMAGE_BYTES:
        cams = ", ".join(f"{c.name} {c.width}x{c.height}" for c in bundle.cameras)
        raise ValueError(
            f"{bundle.yaml_path}: one camera set ({cams}) takes {size} bytes; bench generates at most "
            f"{MAX_IMAGE_BYTES} bytes of images per set"
        )


def _check_arguments(
    samples: int, repeats: int, warmup: int, settle_s: float, options: dict[str, Any], dropout: bool = True
) -> None:
    """One ValueError naming the first argument outside its documented range."""
    # With dropout S >= 2, or there is no MC cost to measure; without, S is its rows, 1 or more.
    least, why = (2, " to measure MC-dropout cost") if dropout else (1, "")
    if not least <= samples <= MAX_MC_SAMPLES:
        raise ValueError(f"mc_samples must be >= {least}{why} and <= {MAX_MC_SAMPLES}, got {samples}")
    if not 1 <= repeats <= MAX_REPEATS or not 0 <= warmup <= MAX_WARMUP:
        raise ValueError(
            f"repeats must be >= 1 and <= {MAX_REPEATS}, warmup >= 0 and <= {MAX_WARMUP}; "
            f"got {repeats} and {warmup}"
        )
    if not 0.0 <= settle_s <= MAX_SETTLE_S:  # also refuses NaN
        raise ValueError(f"settle_s must be in [0, {MAX_SETTLE_S:g}] seconds, got {settle_s}")
    threads = options.get("threads")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= MAX_THREADS
    ):
        raise ValueError(f"threads must be an integer in [0, {MAX_THREADS}] (0: default), got {threads!r}")


def _check_samples(bundle: ModelBundle, samples: int) -> None:
    """The node's own refusal (`ModelBundle.samples_problem`): an ensemble's S that skips members or,
    without dropout, repeats them. Timing it would report a cost no robot can have."""
    problem = bundle.samples_problem(samples)
    if problem is not None:
        raise ValueError(f"mc_samples: {problem}")


class _StderrProgress:
    """Progress on stderr for long runs: nothing for the first PROGRESS_EVERY_S, then a line that often."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.next_report = self.started + PROGRESS_EVERY_S

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now < self.next_report or done >= total:
            return
        self.next_report = now + PROGRESS_EVERY_S
        elapsed = now - self.started
        left = elapsed / done * (total - done)
        print(
            f"bench: {done}/{total} repetitions ({100 * done // total}%), {elapsed:.0f} s, "
            f"about {left:.0f} s left",
            file=sys.stderr,
            flush=True,
        )


def _engine(bundle: ModelBundle, backend: str, samples: int, options: dict[str, Any]) -> InferenceEngine:
    options = dict(options)
    if backend == "tensorrt" and samples > bundle.mc_samples:
        options.setdefault("max_samples", samples)  # the plan's profile must reach S
    return load_engine(bundle, backend, **options)


def run_bench(
    bundle: ModelBundle | str | Path,
    backend: str = "auto",
    mc_samples: int | None = None,
    repeats: int = 50,
    warmup: int = 5,
    compare: ModelBundle | str | Path | None = None,
    engine_options: dict[str, Any] | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    settle_s: float = SETTLE_S,
    quiet: bool = False,
) -> BenchResult:
    """Benchmark `bundle` (and `compare`) on `backend`; see the module docstring for rows and ratios.

    mc_samples: S of the ``mc`` and ``naive`` rows (default: the bundle's ``mc_samples``).
    engine_options: keyword options of the engine (e.g. ``threads`` for onnxruntime).
    progress: called as ``progress(done, total)`` after each repetition; by default a run longer
        than `PROGRESS_EVERY_S` prints a progress line on stderr that often (``quiet``: never).
    settle_s: idle seconds before each row's priming frame.

    Raises:
        ValueError: an argument outside its range (see the module docstring), or a bundle whose
            camera images would take more than `MAX_IMAGE_BYTES` per set.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    options = dict(engine_options or {})
    main = bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)
    samples = main.mc_samples if mc_samples is None else mc_samples
    with_dropout = main.dropout > 0
    _check_arguments(samples, repeats, warmup, settle_s, options, with_dropout)
    _check_samples(main, samples)
    _check_images(main)
    other = None
    other_samples = samples
    if compare is not None:
        other = compare if isinstance(compare, ModelBundle) else load_bundle(compare)
        other_samples = other.mc_samples if mc_samples is None else mc_samples
        try:
            _check_arguments(other_samples, repeats, warmup, settle_s, options, other.dropout > 0)
            _check_samples(other, other_samples)
        except ValueError as exc:  # S fits the bundle but not the one it is compared with
            raise ValueError(f"the --compare bundle {other.path}: {exc}") from None
        _check_images(other)
    if progress is None and not quiet:
        progress = _StderrProgress()
    load_before = _load_average()
    rng = np.random.default_rng(seed)
    pools = min(8, warmup + repeats)
    engine = _engine(main, backend, samples, options)
    cases = [
        _Case("deterministic", engine, 1, False, pools, rng),
        _Case("mc", engine, samples, False, pools, rng),
    ]
    if with_dropout:
        cases.append(_Case("naive", engine, samples, True, pools, rng))
    if other is not None:
        other_engine = _engine(other, backend, other_samples, options)
        cases.append(_Case("compare", other_engine, other_samples, False, pools, rng))
    total = warmup + repeats
    shuffle = np.random.default_rng(seed + 1)
    for repetition in range(total):
        for index in shuffle.permutation(len(cases)):
            if settle_s > 0:
                time.sleep(settle_s)
            cases[index].prime(repetition)
            cases[index].frame(repetition, record=repetition >= warmup)
        if progress is not None:
            progress(repetition + 1, total)
    rows = [case.row() for case in cases]
    p50 = {row.name: row.stats["total"][0] for row in rows}
    return BenchResult(
        rows=rows,
        mc_cost_ratio=p50["mc"] / p50["deterministic"],
        naive_over_ours=p50["naive"] / p50["mc"] if "naive" in p50 else None,
        compare_ratio=p50["mc"] / p50["compare"] if "compare" in p50 else None,
        settings={
            "bundle": str(main.path),
            "compare": str(other.path) if other is not None else None,
            "backend": backend,
            "engine": str(engine.describe()),
            "engine_choice": engine.chosen_because,
            "mc_samples": samples,
            "repeats": repeats,
            "warmup": warmup,
            "settle_s": settle_s,
            "engine_options": {k: str(v) for k, v in options.items()},
            "load_average_before": load_before,
            "load_average_after": _load_average(),
            "cpu_count": os.cpu_count(),
        },
    )


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none): the machine may be shared."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def format_table(result: BenchResult) -> str:
    """The rows as a fixed-width table (ms, p50 / p99), the engine and why it was chosen, the ratios."""
    header = ["row", "backend", "T", "S", "passes", *(f"{stage} p50/p99" for stage in STAGES)]
    lines = [header]
    for row in result.rows:
        cells = [row.name, row.backend, str(row.cameras), str(row.samples), str(row.passes)]
        cells += [f"{row.stats[stage][0]:.2f} / {row.stats[stage][1]:.2f}" for stage in STAGES]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    s = result.row("mc").samples
    text.append("")
    engine, choice = result.settings.get("engine"), result.settings.get("engine_choice")
    if engine is not None:
        text.append(f"engine: {engine} ({choice})" if choice else f"engine: {engine}")
    load = result.settings.get("load_average_before")
    note = f"; load average before {load[0]:.2f} (1 min) on {os.cpu_count()} CPUs" if load else ""
    text.append(
        f"times in ms (p50 / p99 over {result.settings.get('repeats')} interleaved repetitions{note})"
    )
    text.append(f"MC cost          total(S={s}) / total(S=1):                 {result.mc_cost_ratio:.3f}x")
    if result.naive_over_ours is not None:
        text.append(
            f"naive over ours  {s} passes of S=1 / one pass with S={s}:     {result.naive_over_ours:.2f}x"
        )
    else:
        text.append("naive over ours  none: the bundle has no dropout, so no MC samples to run as passes")
    if result.compare_ratio is not None:
        other = result.row("compare")
        mine = result.row("mc").cameras
        text.append(
            f"compare          total(T={mine}, S={s}) / total(T={other.cameras}, S={other.samples} bundle "
            f"{other.bundle}): {result.compare_ratio:.3f}x"
        )
    return "\n".join(text)


def write_json(result: BenchResult, path: str | Path) -> Path:
    """Write `result` as JSON (keys mc_cost_ratio, naive_over_ours, compare_ratio, rows, settings),
    atomically: a temporary file beside `path`, renamed over it (removed if anything fails)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, json_text(result.to_json()))
    return target

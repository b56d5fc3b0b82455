"""`pose-train synth`: render a synthetic scene into a dataset folder and optionally a ROS 2 bag.

Every size, rate and count has an upper bound (the `MAX_*` / `MIN_*` constants below), checked by
`check_synth_config` before anything is written. The dataset and the bag are written into hidden
`.NAME.partial-PID` siblings and renamed into place only when complete: a failed or interrupted run
leaves nothing behind, and with `overwrite` the previous output stays until the new one is whole.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from pose_regressor.bagio import RigBagWriter
from pose_regressor.files import publish, remove_path, staged_bag, staging_sibling
from pose_regressor.rig import Rig
from pose_regressor_training.data.folder import (
    SPLITS,
    FrameRecord,
    image_path,
    write_frames,
    write_metadata,
)
from pose_regressor_training.stop_signals import (
    leave_stop_signals_to_parent,
    stop_signals_deferred,
    stop_signals_remembered,
)
from pose_regressor_training.synth.conditions import MOVED_BOX_INDEX, Condition, Region, with_moved_box
from pose_regressor_training.synth.movable import place_boxes
from pose_regressor_training.synth.render import Lighting, RigRenderer
from pose_regressor_training.synth.scene import Box, Scene, SceneConfig
from pose_regressor_training.synth.trajectory import TrajectoryError, generate_trajectory

FRAMES_PER_TRAJECTORY = 100
FIRST_STAMP_NS = 1_700_000_000 * 1_000_000_000  # a realistic wall-clock epoch, not zero
GAP_BETWEEN_TRAJECTORIES_S = 2.0

# Bounds of the settings (each is one clear error, before anything is written).
MIN_FRAMES, MAX_FRAMES = 3, 1_000_000  # --frames, over all splits (one trajectory per split at least)
MAX_FRAMES_PER_TRAJECTORY = 100_000  # --frames-per-trajectory
MIN_FPS, MAX_FPS = 0.1, 1000.0  # --fps (Hz)
# --frames-per-trajectory / --fps: planning a trajectory costs time and memory in proportion to
# its length (about 1 s for 1000 s of flight), so one lasts at most this long.
MAX_TRAJECTORY_S = 1000.0
MAX_IMAGE_SIDE = 2048  # a camera's width and height (px): ray casting needs ~0.6 kB per pixel and worker
MAX_CAMERAS = 16  # cameras of the rig (the bundle's limit)
MAX_LIGHTING = 10.0  # --lighting
MAX_NOISE_STD = 255.0  # --noise-std (8-bit levels)
MAX_WORKERS = 256  # --workers
MAX_SEED = 2**32 - 1  # --seed, --scene-seed
MAX_BAG_IMAGE_BYTES = 4 << 30  # the --bag split's images, held in memory until the bag is written
# Trajectories planned per trajectory kept when a region constrains them (--exclude-region,
# --inside-region): a 2 s path stays inside a third of the room about one time in ten.
MAX_REGION_TRIES = 2000


@dataclass(frozen=True)
class SynthConfig:
    out: Path
    rig: Rig
    trajectory: str = "drone"
    frames: int = 1000
    fps: float = 10.0
    # Shorter trajectories spread the same number of frames over more of the room (more starting
    # points, heights, headings and tilts); consecutive frames of one path are nearly alike.
    frames_per_trajectory: int = FRAMES_PER_TRAJECTORY
    seed: int = 0
    scene: SceneConfig = field(default_factory=SceneConfig)
    lighting_strength: float = 1.0  # 0 disables the per-frame lighting variation
    noise_std: float = 0.0  # Gaussian sensor noise, 8-bit levels
    bag: Path | None = None
    bag_split: str = "test"  # a split name or "all"
    workers: int = 0  # 0: one per CPU core
    overwrite: bool = False
    progress: bool = True
    condition: Condition = field(default_factory=Condition)  # what the images show (nominal: as trained)
    exclude_region: Region | None = None  # train and val trajectories stay out of it
    inside_region: Region | None = None  # every trajectory stays inside it
    only_split: str | None = None  # every trajectory in this split (a test set), instead of 80/10/10
    movable_box: float = 0.0  # share of train trajectories in which one box stands elsewhere (movable.py)


@dataclass(frozen=True)
class SynthSummary:
    frames_per_split: dict[str, int]
    trajectories_per_split: dict[str, int]
    images_written: int
    bag_messages: int
    seconds: float
    moved_box_trajectories: int = 0  # train trajectories whose movable box stood elsewhere

    @property
    def frames_per_second(self) -> float:
        return sum(self.frames_per_split.values()) / max(self.seconds, 1e-9)


@dataclass(frozen=True)
class _FrameJob:
    index: int
    translation: NDArray[np.float64]
    quat_xyzw: NDArray[np.float64]
    lighting: Lighting | None
    keep_images: bool
    box: Box | None = None  # where the movable box stands instead of at home (None: at home)


def check_synth_config(cfg: SynthConfig) -> None:
    """ValueError naming the first setting outside its documented range (NaN and inf included)."""

    def within(name: str, value: float, low: float, high: float, unit: str = "") -> None:
        # ints compare exactly (a huge one does not convert to float); floats also refuse NaN and inf
        if (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
            raise ValueError(f"{name} must be in [{_fmt(low)}, {_fmt(high)}]{unit}, got {value}")

    within("--fps", cfg.fps, MIN_FPS, MAX_FPS, " Hz")
    within("--frames", cfg.frames, MIN_FRAMES, MAX_FRAMES)
    within("--frames-per-trajectory", cfg.frames_per_trajectory, 1, MAX_FRAMES_PER_TRAJECTORY)
    duration = min(cfg.frames_per_trajectory, cfg.frames) / cfg.fps
    if duration > MAX_TRAJECTORY_S:
        raise ValueError(
            f"a trajectory of {min(cfg.frames_per_trajectory, cfg.frames)} frames at {cfg.fps:g} Hz lasts "
            f"{duration:g} s; at most {MAX_TRAJECTORY_S:g} s (lower --frames-per-trajectory or raise --fps)"
        )
    within("--lighting", cfg.lighting_strength, 0.0, MAX_LIGHTING)
    within("--noise-std", cfg.noise_std, 0.0, MAX_NOISE_STD)
    within("--workers", cfg.workers, 0, MAX_WORKERS)
    within("--seed", cfg.seed, 0, MAX_SEED)
    within("--scene-seed", cfg.scene.seed, 0, MAX_SEED)
    if cfg.exclude_region is not None and cfg.inside_region is not None:
        raise ValueError("--exclude-region and --inside-region cannot be combined")
    within("--movable-box", cfg.movable_box, 0.0, 1.0)
    if cfg.movable_box > 0 and cfg.condition.name == "box_moved":
        raise ValueError(
            "--movable-box (training data) and --condition box_moved (a test set) cannot be combined"
        )
    if cfg.only_split is not None and cfg.only_split not in SPLITS:
        raise ValueError(f"--only-split must be one of {', '.join(SPLITS)}, got {cfg.only_split!r}")
    covered = cfg.condition.covers
    if covered is not None and covered not in cfg.rig.names:
        raise ValueError(
            f"--covered-camera {covered!r} is not a camera of the rig ({', '.join(cfg.rig.names)})"
        )
    if len(cfg.rig.cameras) > MAX_CAMERAS:
        raise ValueError(f"the rig has {len(cfg.rig.cameras)} cameras; at most {MAX_CAMERAS}")
    for cam in cfg.rig.cameras:
        size = (cam.intrinsics.width, cam.intrinsics.height)
        if not all(1 <= side <= MAX_IMAGE_SIDE for side in size):
            raise ValueError(
                f"camera {cam.name} is {size[0]}x{size[1]} px; "
                f"width and height must be in [1, {MAX_IMAGE_SIDE}]"
            )


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def split_trajectories(count: int, rng: np.random.Generator) -> list[str]:
    """About 80/10/10 train/val/test by whole trajectories; at least one of each when count >= 3."""
    if count < 3:
        raise ValueError("need at least 3 trajectories (one per split)")
    n_test = max(1, round(0.1 * count))
    n_val = max(1, round(0.1 * count))
    labels = ["test"] * n_test + ["val"] * n_val + ["train"] * (count - n_test - n_val)
    return [labels[i] for i in rng.permutation(count)]


def plan_frames(
    cfg: SynthConfig, scene: Scene, rng: np.random.Generator, progress: bool = False
) -> list[FrameRecord]:
    """Trajectories, their splits and stamps: `cfg.frames` frames in total, about
    `cfg.frames_per_trajectory` per trajectory (`progress`: a progress bar over the trajectories)."""
    if cfg.frames_per_trajectory < 1:
        raise ValueError(f"frames per trajectory must be >= 1, got {cfg.frames_per_trajectory}")
    wanted = math.ceil(cfg.frames / cfg.frames_per_trajectory)
    # Three at least where the trajectories are shared among train, val and test; one split alone
    # takes the trajectories asked for (one video of --frames frames, say).
    n_traj = wanted if cfg.only_split is not None else max(3, wanted)
    if cfg.frames < n_traj:
        raise ValueError(f"--frames must be at least {n_traj}")
    lengths = np.full(n_traj, cfg.frames // n_traj)
    lengths[: cfg.frames % n_traj] += 1
    # Drawn in any case: the same seed, the same paths (where there are three trajectories or more).
    splits = split_trajectories(max(3, n_traj), rng)[:n_traj]
    if cfg.only_split is not None:
        splits = [cfg.only_split] * n_traj
    frames: list[FrameRecord] = []
    start_ns = FIRST_STAMP_NS
    period_ns = round(1e9 / cfg.fps)
    # A context manager: an interruption closes the bar at once, not after the error is printed.
    with tqdm(total=n_traj, unit="trajectory", desc="planning", disable=not progress, leave=False) as bar:
        for seq, (length, split) in enumerate(zip(lengths, splits, strict=True)):
            translations, quats = _trajectory_for(cfg, split, scene, int(length), rng)
            for i in range(int(length)):
                frames.append(
                    FrameRecord(len(frames), seq, split, start_ns + i * period_ns, translations[i], quats[i])
                )
            start_ns += int(length) * period_ns + round(GAP_BETWEEN_TRAJECTORIES_S * 1e9)
            bar.update()
    return frames


def _trajectory_for(
    cfg: SynthConfig, split: str, scene: Scene, length: int, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """One trajectory of `split` that keeps to the dataset's region constraint (if any)."""
    if cfg.inside_region is not None:
        region, wanted_inside, what = cfg.inside_region, True, "stays inside"
    elif cfg.exclude_region is not None and split != "test":
        region, wanted_inside, what = cfg.exclude_region, False, "stays out of"
    else:
        return generate_trajectory(scene, cfg.trajectory, length, cfg.fps, rng)
    for _ in range(MAX_REGION_TRIES):
        translations, quats = generate_trajectory(scene, cfg.trajectory, length, cfg.fps, rng)
        inside = region.contains(translations)
        if np.all(inside) if wanted_inside else not np.any(inside):
            return translations, quats
    raise TrajectoryError(
        f"no {split} trajectory of {length} frames {what} the region {region} after {MAX_REGION_TRIES} "
        "tries (a smaller region or shorter trajectories: --frames-per-trajectory)"
    )


# Set in the parent before the worker pool forks, so the scene's textures are shared copy-on-write.
_RENDERER: RigRenderer | None = None
_OUT: Path | None = None
_NOISE: tuple[float, int] = (0.0, 0)
_CONDITION = Condition()
_MOVED: dict[Box, RigRenderer] = {}  # per worker: renderers of the scene with the movable box placed
MAX_MOVED_RENDERERS = 4  # a trajectory's frames come in a few consecutive batches


def _renderer_for(box: Box | None) -> RigRenderer:
    assert _RENDERER is not None
    if box is None:
        return _RENDERER
    if box not in _MOVED:
        if len(_MOVED) >= MAX_MOVED_RENDERERS:
            _MOVED.clear()
        _MOVED[box] = RigRenderer(Scene(with_moved_box(_RENDERER.scene.config, box)), _RENDERER.rig)
    return _MOVED[box]


def _render_jobs(jobs: list[_FrameJob]) -> list[tuple[int, list[NDArray[np.uint8]] | None]]:
    assert _RENDERER is not None and _OUT is not None
    noise_std, seed = _NOISE
    results = []
    for job in jobs:
        rng = np.random.default_rng([seed, job.index])  # same noise whatever worker renders the frame
        views = _renderer_for(job.box).render(
            job.translation,
            job.quat_xyzw,
            job.lighting,
            noise_std,
            rng,
            light_gain=_CONDITION.light_gain,
            covered=_CONDITION.covers,
        )
        for cam, view in zip(_RENDERER.rig.cameras, views, strict=True):
            bgr = cv2.cvtColor(view.image, cv2.COLOR_RGB2BGR)
            # Encoded here and written by Python: a full disk is then an OSError with its errno
            # (cv2.imwrite only returns False, after libpng has printed its own errors).
            ok, png = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            if not ok:
                raise OSError(f"could not encode image {cam.name}/{job.index:06d}.png")
            image_path(_OUT, cam.name, job.index).write_bytes(png.tobytes())
        results.append((job.index, [v.image for v in views] if job.keep_images else None))
    return results


def _batches(jobs: list[_FrameJob], size: int) -> Iterator[list[_FrameJob]]:
    for start in range(0, len(jobs), size):
        yield jobs[start : start + size]


def _check_outputs(cfg: SynthConfig) -> None:
    """Refuse outputs that exist (unless `overwrite`) before anything is rendered or written."""
    if cfg.out.exists() and not cfg.out.is_dir():
        raise FileExistsError(f"{cfg.out} exists and is not a folder")
    if cfg.out.is_dir() and any(cfg.out.iterdir()) and not cfg.overwrite:
        raise FileExistsError(f"{cfg.out} exists and is not empty; use --overwrite to replace it")
    if cfg.bag is not None and cfg.bag.exists() and not cfg.overwrite:
        raise FileExistsError(f"bag {cfg.bag} exists; use --overwrite to replace it")


def render_dataset(cfg: SynthConfig) -> SynthSummary:
    """Renders the whole dataset (and bag) described by `cfg`; returns counts and timing.

    Both are written into hidden `.NAME.partial-PID` siblings, renamed into place once complete;
    on any failure or interruption those are removed and existing outputs are left as they were.
    """
    if cfg.bag_split not in (*SPLITS, "all"):
        raise ValueError(f"bag split must be one of {', '.join(SPLITS)} or all, got {cfg.bag_split!r}")
    check_synth_config(cfg)
    _check_outputs(cfg)
    out = cfg.out.absolute()
    if cfg.bag is not None and cfg.bag.absolute() == out:
        raise ValueError(f"--bag {cfg.bag} and --out {cfg.out} must be different paths")
    staging = staging_sibling(out)
    bag_inside = cfg.bag is not None and out in cfg.bag.absolute().parents
    bag_staging: Path | None = None
    bag_holder: Path | None = None
    if cfg.bag is not None:
        # A bag inside the dataset folder travels with it; any other bag has a staging folder.
        if bag_inside:
            bag_staging = staging / cfg.bag.absolute().relative_to(out)
        else:
            bag_holder, bag_staging = staged_bag(cfg.bag)
    existed = out.is_dir() and any(out.iterdir())
    try:
        for path in (staging, bag_staging, bag_holder):
            if path is not None:
                remove_path(path)  # left by an earlier killed run of a process with the same id
        staging.mkdir(parents=True)
        if bag_staging is not None:
            bag_staging.parent.mkdir(parents=True, exist_ok=True)
        try:
            summary = _render(cfg, staging, bag_staging)
            if cfg.bag is not None and bag_staging is not None and not bag_inside:
                publish(bag_staging, cfg.bag)
            publish(staging, out)
        except OSError as exc:
            what = f"the dataset {cfg.out}" + (f" or the bag {cfg.bag}" if cfg.bag is not None else "")
            kept = "; the existing output is unchanged" if existed else ""
            raise OSError(
                f"could not write {what}: {exc.strerror or exc}; the partial output was removed{kept}"
            ) from None
        return summary
    finally:
        for path in (staging, bag_staging, bag_holder):
            if path is not None and (path.exists() or path.is_symlink()):  # failed, interrupted, or emptied
                remove_path(path)


def _render(cfg: SynthConfig, out: Path, bag_path: Path | None) -> SynthSummary:
    """Renders into `out` (and the bag into `bag_path`); see `render_dataset`."""
    global _RENDERER, _OUT, _NOISE, _CONDITION
    started = time.perf_counter()
    for cam in cfg.rig.cameras:
        (out / "images" / cam.name).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    scene = Scene(cfg.scene)
    frames = plan_frames(cfg, scene, rng, cfg.progress)
    # Drawn for every planned frame, before a condition leaves any out: the frames kept have the
    # light (and, by index, the noise) of the same frames in the nominal dataset.
    lightings = [
        Lighting.random(rng, cfg.lighting_strength) if cfg.lighting_strength > 0 else None for _ in frames
    ]
    kept = cfg.condition.keeps(np.array([f.translation for f in frames]).reshape(-1, 3))
    frames = [f for f, keep in zip(frames, kept, strict=True) if keep]
    lightings = [light for light, keep in zip(lightings, kept, strict=True) if keep]
    in_bag = {f.index for f in frames if cfg.bag is not None and cfg.bag_split in ("all", f.split)}
    bag_bytes = len(in_bag) * sum(c.intrinsics.width * c.intrinsics.height * 3 for c in cfg.rig.cameras)
    if bag_bytes > MAX_BAG_IMAGE_BYTES:
        raise ValueError(
            f"the bag's {len(in_bag)} camera sets ({cfg.bag_split}) would hold {bag_bytes} bytes of images "
            f"in memory; at most {MAX_BAG_IMAGE_BYTES} (fewer --frames, smaller images or another --split)"
        )
    placed = place_boxes(frames, cfg.scene, cfg.movable_box, cfg.seed) if cfg.movable_box > 0 else {}
    jobs = [
        _FrameJob(f.index, f.translation, f.quat_xyzw, lighting, f.index in in_bag, placed.get(f.sequence))
        for f, lighting in zip(frames, lightings, strict=True)
    ]
    # Planned in the scene as trained, rendered in the scene of the condition (a box moved).
    seen = scene if cfg.condition.name != "box_moved" else Scene(cfg.condition.render_scene(cfg.scene))
    _RENDERER, _OUT, _NOISE = RigRenderer(seen, cfg.rig), out, (cfg.noise_std, cfg.seed)
    _CONDITION = cfg.condition
    workers = cfg.workers or os.cpu_count() or 1
    bag_images: dict[int, list[NDArray[np.uint8]]] = {}
    batches = list(_batches(jobs, 8))
    pool: ProcessPoolExecutor | None = None
    progress: tqdm[Any] | None = None
    remembered = ExitStack()
    try:  # everything from the bar on: an interruption closes the bar and the pool at once
        # The bar's first line says rendering began. A stop landing right after it, before this
        # try held the bar, left it open, and its last line came after the one-line message.
        with stop_signals_deferred():
            progress = bar = tqdm(total=len(jobs), unit="frame", desc="rendering", disable=not cfg.progress)
        stops = remembered.enter_context(stop_signals_remembered())
        results_iter: Iterator[list[tuple[int, list[NDArray[np.uint8]] | None]]]
        if workers == 1:
            results_iter = map(_render_jobs, batches)
        else:
            with stop_signals_deferred():  # map() forks the workers as it submits the batches
                pool = ProcessPoolExecutor(
                    workers,
                    mp_context=multiprocessing.get_context("fork"),
                    initializer=leave_stop_signals_to_parent,
                )
                results_iter = pool.map(_render_jobs, batches)
        for results in results_iter:
            stops.raise_if_any()  # a stop whose KeyboardInterrupt Python dropped in a callback
            for index, images in results:
                if images is not None:
                    bag_images[index] = images
            bar.update(len(results))
    finally:
        if progress is not None:
            progress.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # after a failure: no queued batch runs
        _RENDERER = _OUT = None
        _CONDITION = Condition()
        _MOVED.clear()
        remembered.close()

    bag_messages = 0
    if bag_path is not None:
        with RigBagWriter(bag_path, cfg.rig.names, custom_data=_bag_custom_data(cfg)) as bag:
            for f in frames:
                if f.index in bag_images:
                    bag.write_set(f.stamp_ns, bag_images[f.index])
                    bag.write_ground_truth(f.stamp_ns, f.translation, f.quat_xyzw)
            bag_messages = bag.message_count

    counts = {s: sum(f.split == s for f in frames) for s in SPLITS}
    trajectories = {s: len({f.sequence for f in frames if f.split == s}) for s in SPLITS}
    provenance = {
        "generator": "pose-train synth",
        "trajectory": cfg.trajectory,
        "seed": cfg.seed,
        "scene_seed": cfg.scene.seed,
        "lighting_strength": cfg.lighting_strength,
        "noise_std": cfg.noise_std,
        "trajectories": trajectories,
        "frames_per_trajectory": cfg.frames_per_trajectory,
        "bag": str(cfg.bag) if cfg.bag is not None else None,
        "bag_split": cfg.bag_split if cfg.bag is not None else None,
        "condition": cfg.condition.describe(),
        **_movable_provenance(cfg, placed),
        **_region_provenance(cfg),
    }
    write_frames(out, frames)
    write_metadata(out, cfg.rig, cfg.fps, counts, provenance)
    return SynthSummary(
        counts,
        trajectories,
        len(frames) * len(cfg.rig.cameras),
        bag_messages,
        time.perf_counter() - started,
        len(placed),
    )


def _movable_provenance(cfg: SynthConfig, placed: dict[int, Box]) -> dict[str, object]:
    """dataset.yaml's record of --movable-box (nothing without it)."""
    if cfg.movable_box <= 0:
        return {}
    return {
        "movable_box": {
            "share": cfg.movable_box,
            "index": MOVED_BOX_INDEX,
            "moved_train_trajectories": len(placed),
            "places": {int(seq): [list(b.lo), list(b.hi)] for seq, b in sorted(placed.items())},
        }
    }


def _region_provenance(cfg: SynthConfig) -> dict[str, object]:
    """dataset.yaml's record of a region constraint (nothing without one)."""
    record: dict[str, object] = {}
    if cfg.exclude_region is not None:
        record["exclude_region"] = str(cfg.exclude_region)  # from train and val
    if cfg.inside_region is not None:
        record["inside_region"] = str(cfg.inside_region)  # every split
    if cfg.only_split is not None:
        record["only_split"] = cfg.only_split
    return record


def _bag_custom_data(cfg: SynthConfig) -> dict[str, str]:
    """The bag's metadata.yaml `custom_data`: the condition and region the images were rendered under."""
    data = {f"synth.condition.{key}": str(value) for key, value in cfg.condition.describe().items()}
    data.update({f"synth.{key}": str(value) for key, value in _region_provenance(cfg).items()})
    return data

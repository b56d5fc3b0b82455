"""`pose-train synth`: render a synthetic scene into a dataset folder and optionally a ROS 2 bag."""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from pose_regressor.bagio import RigBagWriter
from pose_regressor.rig import Rig
from pose_regressor_training.data.folder import (
    SPLITS,
    FrameRecord,
    image_path,
    write_frames,
    write_metadata,
)
from pose_regressor_training.synth.render import Lighting, RigRenderer
from pose_regressor_training.synth.scene import Scene, SceneConfig
from pose_regressor_training.synth.trajectory import generate_trajectory

FRAMES_PER_TRAJECTORY = 100
FIRST_STAMP_NS = 1_700_000_000 * 1_000_000_000  # a realistic wall-clock epoch, not zero
GAP_BETWEEN_TRAJECTORIES_S = 2.0


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


@dataclass(frozen=True)
class SynthSummary:
    frames_per_split: dict[str, int]
    trajectories_per_split: dict[str, int]
    images_written: int
    bag_messages: int
    seconds: float

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


def split_trajectories(count: int, rng: np.random.Generator) -> list[str]:
    """About 80/10/10 train/val/test by whole trajectories; at least one of each when count >= 3."""
    if count < 3:
        raise ValueError("need at least 3 trajectories (one per split)")
    n_test = max(1, round(0.1 * count))
    n_val = max(1, round(0.1 * count))
    labels = ["test"] * n_test + ["val"] * n_val + ["train"] * (count - n_test - n_val)
    return [labels[i] for i in rng.permutation(count)]


def plan_frames(cfg: SynthConfig, scene: Scene, rng: np.random.Generator) -> list[FrameRecord]:
    """Trajectories, their splits and stamps: `cfg.frames` frames in total, about
    `cfg.frames_per_trajectory` per trajectory."""
    if cfg.frames_per_trajectory < 1:
        raise ValueError(f"frames per trajectory must be >= 1, got {cfg.frames_per_trajectory}")
    n_traj = max(3, math.ceil(cfg.frames / cfg.frames_per_trajectory))
    if cfg.frames < n_traj:
        raise ValueError(f"--frames must be at least {n_traj}")
    lengths = np.full(n_traj, cfg.frames // n_traj)
    lengths[: cfg.frames % n_traj] += 1
    splits = split_trajectories(n_traj, rng)
    frames: list[FrameRecord] = []
    start_ns = FIRST_STAMP_NS
    period_ns = round(1e9 / cfg.fps)
    for seq, (length, split) in enumerate(zip(lengths, splits, strict=True)):
        translations, quats = generate_trajectory(scene, cfg.trajectory, int(length), cfg.fps, rng)
        for i in range(int(length)):
            frames.append(
                FrameRecord(len(frames), seq, split, start_ns + i * period_ns, translations[i], quats[i])
            )
        start_ns += int(length) * period_ns + round(GAP_BETWEEN_TRAJECTORIES_S * 1e9)
    return frames


# Set in the parent before the worker pool forks, so the scene's textures are shared copy-on-write.
_RENDERER: RigRenderer | None = None
_OUT: Path | None = None
_NOISE: tuple[float, int] = (0.0, 0)


def _render_jobs(jobs: list[_FrameJob]) -> list[tuple[int, list[NDArray[np.uint8]] | None]]:
    assert _RENDERER is not None and _OUT is not None
    noise_std, seed = _NOISE
    results = []
    for job in jobs:
        rng = np.random.default_rng([seed, job.index])  # same noise whatever worker renders the frame
        views = _RENDERER.render(job.translation, job.quat_xyzw, job.lighting, noise_std, rng)
        for cam, view in zip(_RENDERER.rig.cameras, views, strict=True):
            bgr = cv2.cvtColor(view.image, cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(
                str(image_path(_OUT, cam.name, job.index)), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1]
            ):
                raise OSError(f"could not write {image_path(_OUT, cam.name, job.index)}")
        results.append((job.index, [v.image for v in views] if job.keep_images else None))
    return results


def _batches(jobs: list[_FrameJob], size: int) -> Iterator[list[_FrameJob]]:
    for start in range(0, len(jobs), size):
        yield jobs[start : start + size]


def _prepare_outputs(cfg: SynthConfig) -> None:
    if cfg.out.exists() and any(cfg.out.iterdir()):
        if not cfg.overwrite:
            raise FileExistsError(f"{cfg.out} exists and is not empty; use --overwrite to replace it")
        shutil.rmtree(cfg.out)
    if cfg.bag is not None and cfg.bag.exists():
        if not cfg.overwrite:
            raise FileExistsError(f"bag {cfg.bag} exists; use --overwrite to replace it")
        shutil.rmtree(cfg.bag) if cfg.bag.is_dir() else cfg.bag.unlink()
    for cam in cfg.rig.cameras:
        (cfg.out / "images" / cam.name).mkdir(parents=True, exist_ok=True)


def render_dataset(cfg: SynthConfig) -> SynthSummary:
    """Renders the whole dataset (and bag) described by `cfg`; returns counts and timing."""
    global _RENDERER, _OUT, _NOISE
    if cfg.bag_split not in (*SPLITS, "all"):
        raise ValueError(f"bag split must be one of {', '.join(SPLITS)} or all, got {cfg.bag_split!r}")
    started = time.perf_counter()
    _prepare_outputs(cfg)
    rng = np.random.default_rng(cfg.seed)
    scene = Scene(cfg.scene)
    frames = plan_frames(cfg, scene, rng)
    in_bag = {f.index for f in frames if cfg.bag is not None and cfg.bag_split in ("all", f.split)}
    jobs = [
        _FrameJob(
            f.index,
            f.translation,
            f.quat_xyzw,
            Lighting.random(rng, cfg.lighting_strength) if cfg.lighting_strength > 0 else None,
            f.index in in_bag,
        )
        for f in frames
    ]
    _RENDERER, _OUT, _NOISE = RigRenderer(scene, cfg.rig), cfg.out, (cfg.noise_std, cfg.seed)
    workers = cfg.workers or os.cpu_count() or 1
    bag_images: dict[int, list[NDArray[np.uint8]]] = {}
    progress = tqdm(total=len(jobs), unit="frame", desc="rendering", disable=not cfg.progress)
    batches = list(_batches(jobs, 8))
    if workers == 1:
        results_iter: Iterator[list[tuple[int, list[NDArray[np.uint8]] | None]]] = map(_render_jobs, batches)
        pool = None
    else:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        results_iter = pool.map(_render_jobs, batches)
    try:
        for results in results_iter:
            for index, images in results:
                if images is not None:
                    bag_images[index] = images
            progress.update(len(results))
    finally:
        progress.close()
        if pool is not None:
            pool.shutdown()
        _RENDERER = _OUT = None

    bag_messages = 0
    if cfg.bag is not None:
        with RigBagWriter(cfg.bag, cfg.rig.names) as bag:
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
    }
    write_frames(cfg.out, frames)
    write_metadata(cfg.out, cfg.rig, cfg.fps, counts, provenance)
    return SynthSummary(
        counts, trajectories, len(frames) * len(cfg.rig.cameras), bag_messages, time.perf_counter() - started
    )

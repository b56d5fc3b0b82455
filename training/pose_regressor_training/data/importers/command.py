"""The `pose-train import` arguments and handler (registered by `pose_regressor_training.cli`).

Nothing here or in the readers and the writer imports torch, so an import takes about a second.
Every bound is checked before anything is read.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from pose_regressor.arguments import output_folder
from pose_regressor_training.data.block_split import DEFAULT_SPLIT_BLOCKS, DEFAULT_TEST_EVERY, SplitPolicy
from pose_regressor_training.data.importers.common import SCALE_RANGE, check_distortion

FORMATS = ("colmap", "nerfstudio", "tum")
MAX_BLOCKS = 100_000  # --split-blocks
MAX_DT_S = 60.0  # --max-time-diff
MAX_FPS = 1000.0  # --fps
DESCRIPTION = (
    "Import camera poses and images from another tool as a dataset folder of a one-camera rig (the "
    "camera at base_link looking along base +x). colmap: a sparse model folder (cameras and images, .bin "
    "or .txt; or a project or sparse folder holding models 0, 1, ...: the largest). nerfstudio: "
    "transforms.json or its folder (instant-ngp too). tum: a folder with groundtruth.txt and rgb.txt. "
    "Frames in time/name order are cut into --split-blocks contiguous blocks; every --test-every-th "
    "block is test, the block after each test block val, the rest train (defaults: 20 blocks, every "
    "5th: 65/15/20, so val holds three stretches of the path to calibrate the covariance on)."
)


class _Within:
    """An argparse type: a number in (0, high], or in [low, high] with `low`."""

    def __init__(self, high: float, low: float | None = None) -> None:
        self.high = high
        self.low = low

    def __call__(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        # the comparisons are False for nan, and the bounds exclude the infinities
        if self.low is None and not 0 < value <= self.high:
            raise argparse.ArgumentTypeError(f"must be > 0 and at most {self.high:g}, got {text}")
        if self.low is not None and not self.low <= value <= self.high:
            raise argparse.ArgumentTypeError(f"must be from {self.low:g} to {self.high:g}, got {text}")
        return value


class _Count:
    """An argparse type: an integer in [1, high]."""

    def __init__(self, high: int) -> None:
        self.high = high

    def __call__(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not 1 <= value <= self.high:
            raise argparse.ArgumentTypeError(f"must be from 1 to {self.high}, got {text}")
        return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def add_split_arguments(p: argparse.ArgumentParser) -> None:
    """--split-blocks, --test-every and --val (`import`, and `from-bag --split blocks`)."""
    p.add_argument(
        "--split-blocks",
        type=_Count(MAX_BLOCKS),
        default=None,
        metavar="N",
        help=f"contiguous blocks the frames are cut into (default {DEFAULT_SPLIT_BLOCKS}, or one per frame "
        f"for fewer frames; at most {MAX_BLOCKS})",
    )
    p.add_argument(
        "--test-every",
        type=_Count(MAX_BLOCKS),
        default=DEFAULT_TEST_EVERY,
        metavar="K",
        help=f"every K-th block is test (default {DEFAULT_TEST_EVERY})",
    )
    p.add_argument(
        "--val",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the block after each test block is val (default: on)",
    )


def split_policy(args: argparse.Namespace) -> SplitPolicy:
    return SplitPolicy(args.split_blocks, args.test_every, args.val)


def add_import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=FORMATS, help="input format")
    p.add_argument("source", type=Path, help="COLMAP model folder, transforms.json (or folder), TUM folder")
    p.add_argument("--out", type=output_folder, required=True, help="dataset folder to create")
    p.add_argument(
        "--images", type=Path, help="colmap: image folder (default: an images/ folder near the model)"
    )
    p.add_argument("--camera-id", type=int, help="colmap: keep only the images of this camera")
    p.add_argument(
        "--intrinsics",
        nargs=4,
        type=_finite,
        metavar=("FX", "FY", "CX", "CY"),
        help="tum (required): pixels at the images' size; Freiburg: fr1 517.3 516.5 318.6 255.3, "
        "fr2 520.9 521.0 325.1 249.7, fr3 535.4 539.2 320.1 247.6",
    )
    p.add_argument(
        "--distortion",
        nargs=5,
        type=_finite,
        metavar=("K1", "K2", "P1", "P2", "K3"),
        help="tum: plumb_bob distortion to record (fr1 0.2624 -0.9531 -0.0054 0.0026 1.1633); not applied",
    )
    p.add_argument(
        "--max-time-diff",
        "--max-dt",  # its first name
        dest="max_dt",
        type=_Within(MAX_DT_S),
        default=0.02,
        help="tum: largest time from an image to its nearest ground-truth pose (s, default 0.02, at most "
        f"{MAX_DT_S:g}); the pose is interpolated between the two around the image",
    )
    scale = p.add_mutually_exclusive_group()
    scale.add_argument(
        "--scale",
        type=_Within(SCALE_RANGE[1], SCALE_RANGE[0]),
        metavar="S",
        help=f"metres per unit of the input poses ({SCALE_RANGE[0]:g} to {SCALE_RANGE[1]:g})",
    )
    scale.add_argument(
        "--scale-from",
        nargs=3,
        metavar=("NAME_A", "NAME_B", "DISTANCE_M"),
        help="scale so that images NAME_A and NAME_B are DISTANCE_M metres apart (distance and scale "
        f"{SCALE_RANGE[0]:g} to {SCALE_RANGE[1]:g}; neither option: the poses keep the input's units)",
    )
    add_split_arguments(p)
    p.add_argument(
        "--fps",
        type=_Within(MAX_FPS),
        default=30.0,
        help="colmap, nerfstudio: frame rate of the synthetic stamps (the files have no times; default 30)",
    )
    p.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out frames whose image file does not exist (counted, and named in dataset.yaml); "
        "without it a missing image stops the import before anything is written",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_import(args: argparse.Namespace) -> int:
    from pose_regressor.rig import PLUMB_BOB_COEFFICIENTS, LensDistortion
    from pose_regressor_training.data.importers.colmap import read_colmap
    from pose_regressor_training.data.importers.nerfstudio import read_transforms
    from pose_regressor_training.data.importers.tum import read_tum
    from pose_regressor_training.data.importers.writer import ImportSettings, write_import

    only = {
        "--images": ("colmap", args.images),
        "--camera-id": ("colmap", args.camera_id),
        "--intrinsics": ("tum", args.intrinsics),
        "--distortion": ("tum", args.distortion),
    }
    for option, (fmt, value) in only.items():
        if value is not None and args.format != fmt:
            raise ValueError(f"{option} is for the {fmt} format only")
    scale_from = None
    if args.scale_from is not None:
        name_a, name_b, distance = args.scale_from
        try:
            scale_from = (name_a, name_b, _Within(SCALE_RANGE[1], SCALE_RANGE[0])(distance))
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"--scale-from DISTANCE_M {exc}") from None
    if args.format == "colmap":
        track = read_colmap(args.source, args.images, args.camera_id)
    elif args.format == "nerfstudio":
        track = read_transforms(args.source)
    else:
        if args.intrinsics is None:
            raise ValueError("tum needs --intrinsics FX FY CX CY (see pose-train import --help)")
        distortion = None
        if args.distortion is not None:
            coefficients = dict(zip(PLUMB_BOB_COEFFICIENTS, args.distortion, strict=True))
            distortion = check_distortion(LensDistortion.from_coefficients(coefficients), "--distortion")
        track = read_tum(args.source, *args.intrinsics, max_dt_s=args.max_dt, distortion=distortion)
    settings = ImportSettings(
        out=args.out,
        scale=args.scale,
        scale_from=scale_from,
        split=split_policy(args),
        fps=args.fps,
        overwrite=args.overwrite,
        progress=not args.quiet,
        skip_missing=args.skip_missing,
    )
    summary = write_import(track, settings)
    intr = summary.camera
    print(f"dataset: {args.out}  (1 camera: camera, {intr.width}x{intr.height}, from {track.source})")
    for note in summary.notes:
        print(f"  {note}")
    for split, count in summary.frames_per_split.items():
        print(f"  {split:5s} {count:6d} frames")
    if summary.skipped_missing:
        skipped = summary.skipped_missing
        shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        print(
            f"  left out {len(skipped)} frames whose image does not exist ({shown}; "
            "all named in dataset.yaml's provenance)"
        )
    if track.distortion is not None:
        shown = ", ".join(
            f"{k} {v:g}" for k, v in zip(PLUMB_BOB_COEFFICIENTS, track.distortion.coefficients, strict=True)
        )
        print(f"  lens distortion recorded in dataset.yaml (plumb_bob {shown}); images are not undistorted")
    if summary.metric:
        print(f"  scale: {summary.scale:.6g} m per input unit")
    else:
        print("  no --scale or --scale-from: positions are in the input's own units, not metres")
    print(f"imported {sum(summary.frames_per_split.values())} frames in {summary.seconds:.1f} s")
    return 0

"""`pose-train`: the training-side command line (subcommands are added as they land)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pose_regressor.rig import PRESETS, Rig, RigError, load_rig
from pose_regressor_training.errors import TrainingError
from pose_regressor_training.synth.scene import SceneConfig
from pose_regressor_training.synth.trajectory import KINDS, TrajectoryError
from pose_regressor_training.train_cli import add_build_engine, add_eval, add_export, add_fit


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _add_synth(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "synth",
        help="render the synthetic indoor scene into a dataset folder and/or a ROS 2 bag",
        description="Render the synthetic 8 m x 6 m x 3 m room along random collision-free trajectories. "
        "Frames are split about 80/10/10 into train/val/test by whole trajectories.",
    )
    p.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    p.add_argument("--rig", default="quad", help=f"camera rig: {', '.join(PRESETS)} or a rig YAML file")
    p.add_argument("--trajectory", choices=KINDS, default="drone", help="drone: 6-DoF; ground: planar")
    p.add_argument("--frames", type=_positive_int, default=1000, help="total frames over all splits")
    p.add_argument("--width", type=_positive_int, default=160, help="image width per camera (px)")
    p.add_argument("--height", type=_positive_int, default=120, help="image height per camera (px)")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the trajectories (Hz)")
    p.add_argument(
        "--frames-per-trajectory",
        type=_positive_int,
        default=100,
        help="frames of one trajectory (fewer: more, shorter trajectories cover more of the room)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of trajectories, lighting and noise")
    p.add_argument(
        "--scene-seed",
        type=int,
        default=0,
        help="seed of the scene's textures (keep it fixed so that datasets and bags share one scene)",
    )
    p.add_argument(
        "--lighting",
        type=_non_negative_float,
        default=1.0,
        help="strength of the per-frame brightness/contrast/gamma variation (0: none)",
    )
    p.add_argument(
        "--noise-std", type=_non_negative_float, default=0.0, help="sensor noise std (8-bit levels)"
    )
    p.add_argument("--bag", type=Path, help="also write a ROS 2 bag (MCAP) with images and ground truth")
    p.add_argument(
        "--split",
        default="test",
        choices=("train", "val", "test", "all"),
        help="which frames go into the bag (default: test)",
    )
    p.add_argument("--workers", type=int, default=0, help="render processes (0: one per CPU core)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder or --bag")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from pose_regressor_training.synth.generate import SynthConfig, render_dataset

    if args.fps <= 0:
        raise ValueError("--fps must be positive")
    cfg = SynthConfig(
        out=args.out,
        rig=load_rig(args.rig, args.width, args.height),
        trajectory=args.trajectory,
        frames=args.frames,
        fps=args.fps,
        frames_per_trajectory=args.frames_per_trajectory,
        seed=args.seed,
        scene=SceneConfig(seed=args.scene_seed),
        lighting_strength=args.lighting,
        noise_std=args.noise_std,
        bag=args.bag,
        bag_split=args.split,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    summary = render_dataset(cfg)
    cams = cfg.rig.cameras
    print(
        f"dataset: {cfg.out}  ({len(cams)} camera(s): {', '.join(cfg.rig.names)}, "
        f"{cams[0].intrinsics.width}x{cams[0].intrinsics.height})"
    )
    for split, count in summary.frames_per_split.items():
        print(f"  {split:5s} {count:6d} frames in {summary.trajectories_per_split[split]:3d} trajectories")
    print(f"  images written: {summary.images_written}")
    if cfg.bag is not None:
        print(f"bag: {cfg.bag}  ({summary.bag_messages} messages, split: {cfg.bag_split})")
    print(
        f"rendered {sum(summary.frames_per_split.values())} frames in {summary.seconds:.1f} s "
        f"({summary.frames_per_second:.1f} frames/s)"
    )
    return 0


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT, e.g. 160x120, got {text}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"width and height must be positive, got {text}")
    return width, height


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _add_from_bag(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "from-bag",
        help="turn a ROS 2 bag (images + ground-truth poses) into a dataset folder",
        description="Group the camera images of a ROS 2 bag (MCAP or sqlite3) into synchronized sets by "
        "header stamp, interpolate the ground truth (T_map_base) at each set's stamp and write a dataset "
        "folder. Camera topic k is rig camera k; the first is the reference camera.",
    )
    p.add_argument("--bag", type=Path, required=True, help="bag folder, .mcap or .db3 file")
    p.add_argument(
        "--camera-topics",
        nargs="+",
        required=True,
        metavar="TOPIC",
        help="sensor_msgs/Image or CompressedImage topics, one per rig camera, in rig order",
    )
    p.add_argument(
        "--gt-topic",
        required=True,
        help="ground truth: PoseStamped, PoseWithCovarianceStamped, Odometry or TransformStamped",
    )
    p.add_argument("--rig", type=Path, required=True, help="rig YAML describing the cameras as recorded")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    p.add_argument(
        "--slop-ms", type=_non_negative_float, default=5.0, help="largest stamp spread within a set (ms)"
    )
    p.add_argument(
        "--max-gt-gap-ms",
        type=_positive_float,
        default=200.0,
        help="drop sets whose bracketing ground-truth messages are further apart (ms)",
    )
    p.add_argument("--split", choices=("train", "val", "test"), default="train", help="split of all frames")
    p.add_argument("--size", type=_size, metavar="WxH", help="resize the written images (default: keep)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_from_bag)


def _run_from_bag(args: argparse.Namespace) -> int:
    from pose_regressor_training.data.from_bag import FromBagConfig, convert_bag

    cfg = FromBagConfig(
        bag=args.bag,
        camera_topics=tuple(args.camera_topics),
        gt_topic=args.gt_topic,
        rig=Rig.from_yaml(args.rig),
        out=args.out,
        slop_ns=round(args.slop_ms * 1e6),
        max_gt_gap_ns=round(args.max_gt_gap_ms * 1e6),
        split=args.split,
        size=args.size,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    summary = convert_bag(cfg)
    cams = cfg.rig.cameras
    width, height = cfg.size or (cams[0].intrinsics.width, cams[0].intrinsics.height)
    print(f"dataset: {cfg.out}  ({len(cams)} camera(s): {', '.join(cfg.rig.names)}, {width}x{height})")
    rows = [
        (f"sets written ({cfg.split}):", summary.sets_written, ""),
        ("dropped outside GT range:", summary.dropped_outside_gt, ""),
        ("dropped across GT gaps:", summary.dropped_gt_gap, ""),
        (
            "unsynchronized frames:",
            summary.unsynchronized_frames,
            f" (of {summary.camera_frames} camera frames)",
        ),
    ]
    for label, count, note in rows:
        print(f"  {label:<26}{count:6d}{note}")
    if summary.stamp_resets:
        print(f"  stamps went backwards {summary.stamp_resets} time(s); the synchronizer restarted each time")
    print(f"read {summary.camera_frames} frames and {summary.gt_messages} poses in {summary.seconds:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pose-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(sub)
    _add_from_bag(sub)
    add_fit(sub)
    add_eval(sub)
    add_export(sub)
    add_build_engine(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (RigError, TrajectoryError, TrainingError, FileExistsError, ValueError, OSError) as exc:
        print(f"pose-train {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pose-train {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

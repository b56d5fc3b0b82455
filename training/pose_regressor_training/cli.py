"""`pose-train`: the training-side command line: synth, import, from-bag, to-bag, fit, error-head,
eval-checkpoint, export, build-engine."""

from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from pose_regressor.arguments import output_folder
from pose_regressor.rig import PRESETS, Rig, RigError, load_rig
from pose_regressor_training.cpu_threads import choose_openmp_waiting
from pose_regressor_training.data.block_split import DEFAULT_TEST_EVERY
from pose_regressor_training.data.importers.command import (
    DESCRIPTION,
    add_import_arguments,
    add_split_arguments,
    run_import,
    split_policy,
)
from pose_regressor_training.error_head_command import add_error_head
from pose_regressor_training.errors import TrainingError
from pose_regressor_training.model_commands import add_build_engine, add_eval, add_export, add_fit
from pose_regressor_training.stop_signals import sigterm_as_interrupt
from pose_regressor_training.synth.conditions import CONDITIONS, Condition, Region
from pose_regressor_training.synth.scene import SceneConfig
from pose_regressor_training.synth.trajectory import KINDS, TrajectoryError


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block): `pose-train synth: error: argument
    --fps: ... (see pose-train synth --help)`, exit 2. Subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _add_synth(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "synth",
        help="render the synthetic indoor scene into a dataset folder and/or a ROS 2 bag",
        description="Render the synthetic 8 m x 6 m x 3 m room along random collision-free trajectories. "
        "Frames are split about 80/10/10 into train/val/test by whole trajectories.",
    )
    p.add_argument("--out", type=output_folder, required=True, help="dataset folder to create")
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
    p.add_argument(
        "--condition",
        choices=CONDITIONS,
        default="nominal",
        help="unfamiliar views for testing: the same trajectories rendered dark (lights_off), "
        "overexposed, with one camera covered (camera_covered) or one box moved (box_moved)",
    )
    p.add_argument("--covered-camera", default="front", help="the camera camera_covered blacks out")
    p.add_argument(
        "--exclude-region",
        type=_region,
        metavar="AXIS>M",
        help="keep train and val trajectories out of this part of the room, e.g. x>1.5 (test may enter)",
    )
    p.add_argument(
        "--inside-region",
        type=_region,
        metavar="AXIS>M",
        help="keep every trajectory inside this part of the room, e.g. x>1.5 "
        "(a test set for --exclude-region)",
    )
    p.add_argument(
        "--only-split",
        choices=("train", "val", "test"),
        help="put every trajectory into this split (e.g. a test-only dataset) instead of 80/10/10",
    )
    p.add_argument(
        "--movable-box",
        type=_non_negative_float,
        default=0.0,
        metavar="SHARE",
        help="training data for a room that changes: in this share of the train trajectories (0 to 1) "
        "the 1 m floor box stands at a random place (never where --condition box_moved puts it)",
    )
    p.add_argument("--workers", type=int, default=0, help="render processes (0: one per CPU core)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder or --bag")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_synth)


def _region(text: str) -> Region:
    try:
        return Region.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run_synth(args: argparse.Namespace) -> int:
    from pose_regressor_training.synth.generate import MAX_IMAGE_SIDE, SynthConfig, render_dataset

    for name, side in (("--width", args.width), ("--height", args.height)):
        if side > MAX_IMAGE_SIDE:  # checked before a preset rig is built at that size
            raise ValueError(f"{name} must be in [1, {MAX_IMAGE_SIDE}], got {side}")
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
        condition=Condition(args.condition, args.covered_camera),
        exclude_region=args.exclude_region,
        inside_region=args.inside_region,
        only_split=args.only_split,
        movable_box=args.movable_box,
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
    if cfg.condition.name != "nominal":
        covered = f" ({cfg.condition.covers})" if cfg.condition.covers else ""
        print(f"  condition: {cfg.condition.name}{covered}")
    if summary.moved_box_trajectories:
        print(
            f"  movable box: elsewhere in {summary.moved_box_trajectories} of "
            f"{summary.trajectories_per_split['train']} train trajectories"
        )
    if cfg.bag is not None:
        print(f"bag: {cfg.bag}  ({summary.bag_messages} messages, split: {cfg.bag_split})")
    print(
        f"rendered {sum(summary.frames_per_split.values())} frames in {summary.seconds:.1f} s "
        f"({summary.frames_per_second:.1f} frames/s)"
    )
    return 0


# `from-bag` ranges; the same as pose_regressor_training.data.from_bag's MAX_* (kept here so that
# building the parser does not import the converter; a test checks that they agree).
FROM_BAG_MAX_SLOP_MS = 60_000.0  # a minute
FROM_BAG_MAX_GT_GAP_MS = 3_600_000.0  # an hour
FROM_BAG_MAX_SIZE_SIDE = 16384  # px: the largest image side the node accepts


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT, e.g. 160x120, got {text}") from None
    if not (1 <= width <= FROM_BAG_MAX_SIZE_SIDE and 1 <= height <= FROM_BAG_MAX_SIZE_SIDE):
        raise argparse.ArgumentTypeError(
            f"width and height must each be from 1 to {FROM_BAG_MAX_SIZE_SIDE}, got {text}"
        )
    return width, height


class _Milliseconds:
    """An argparse type: a finite number of ms, from 0 (or above 0 with `low_open`) to `high`."""

    def __init__(self, low_open: bool, high: float) -> None:
        self.low_open = low_open
        self.high = high
        self.shown = f"{'> 0 and at most' if low_open else 'from 0 to'} {high:.0f} ms"

    def __call__(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {self.shown}, got {text!r}") from None
        # the comparisons are False for nan, and the bounds exclude the infinities
        if not ((value > 0 if self.low_open else value >= 0) and value <= self.high):
            raise argparse.ArgumentTypeError(f"must be {self.shown}, got {text}")
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
    p.add_argument("--out", type=output_folder, required=True, help="dataset folder to create")
    p.add_argument(
        "--slop-ms",
        type=_Milliseconds(False, FROM_BAG_MAX_SLOP_MS),
        default=5.0,
        help=f"largest stamp spread within a set (ms, 0 to {FROM_BAG_MAX_SLOP_MS:.0f})",
    )
    p.add_argument(
        "--max-gt-gap-ms",
        type=_Milliseconds(True, FROM_BAG_MAX_GT_GAP_MS),
        default=200.0,
        help="drop sets whose bracketing ground-truth messages are further apart "
        f"(ms, > 0 and at most {FROM_BAG_MAX_GT_GAP_MS:.0f})",
    )
    p.add_argument(
        "--split",
        choices=("blocks", "train", "val", "test"),
        default="blocks",
        help="blocks (default): cut the recording into train, val and test stretches as `import` does "
        "(--split-blocks, --test-every, --val); train, val or test: every set in that split (a bag a split)",
    )
    add_split_arguments(p)
    p.add_argument(
        "--size",
        type=_size,
        metavar="WxH",
        help=f"resize the written images, 1 to {FROM_BAG_MAX_SIZE_SIDE} a side (default: keep)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_from_bag)


def _run_from_bag(args: argparse.Namespace) -> int:
    if args.split != "blocks" and (
        args.split_blocks is not None or args.test_every != DEFAULT_TEST_EVERY or not args.val
    ):
        raise ValueError(
            f"--split-blocks, --test-every and --no-val apply to --split blocks, not --split {args.split}"
        )
    if args.bag.exists():  # a damaged bag is one line in a second, before the converter's imports (torch)
        from pose_regressor.bagio import open_bag

        open_bag(args.bag).close()
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
        blocks=split_policy(args),
        size=args.size,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    summary = convert_bag(cfg)
    cams = cfg.rig.cameras
    width, height = cfg.size or (cams[0].intrinsics.width, cams[0].intrinsics.height)
    print(f"dataset: {cfg.out}  ({len(cams)} camera(s): {', '.join(cfg.rig.names)}, {width}x{height})")
    per_split = ", ".join(f"{k} {n}" for k, n in summary.frames_per_split.items())
    rows = [
        ("sets written:", summary.sets_written, f" ({per_split})"),
        ("dropped outside GT range:", summary.dropped_outside_gt, ""),
        ("dropped across GT gaps:", summary.dropped_gt_gap, ""),
        (
            "unsynchronized frames:",
            summary.unsynchronized_frames,
            f" (of {summary.camera_frames} camera frames)",
        ),
    ]
    if summary.corrupt_records or summary.unreadable_records:
        rows += [
            ("corrupt records skipped:", summary.corrupt_records, ""),
            (
                "unreadable records:",
                summary.unreadable_records,
                f" ({summary.read_error})" if summary.read_error else " (missing from a damaged chunk)",
            ),
        ]
    for label, count, note in rows:
        print(f"  {label:<26}{count:6d}{note}")
    if summary.stamp_resets:
        print(f"  stamps went backwards {summary.stamp_resets} time(s); the synchronizer restarted each time")
    print(f"read {summary.camera_frames} frames and {summary.gt_messages} poses in {summary.seconds:.1f} s")
    return 0


def _add_to_bag(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "to-bag",
        help="write one split of a dataset folder as a ROS 2 bag (the topics of synth --bag)",
        description="Writes the camera sets of one split of a dataset folder (synth, from-bag or import) "
        "into a ROS 2 bag with the topics pose-train synth --bag writes: /<camera>/image_raw "
        "(sensor_msgs/Image, rgb8) per rig camera and /ground_truth/pose (PoseStamped, T_map_base), "
        "stamped with the frames' stamp_ns, to replay to the node with pose-regressor eval-node.",
    )
    p.add_argument("--data", type=Path, required=True, help="the dataset folder")
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--out", type=output_folder, required=True, help="the bag to write (a folder)")
    p.add_argument(
        "--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out bag")
    p.set_defaults(handler=_run_to_bag)


def _run_to_bag(args: argparse.Namespace) -> int:
    from pose_regressor_training.data.to_bag import ToBagConfig, folder_to_bag

    summary = folder_to_bag(ToBagConfig(args.data, args.out, args.split, args.storage, args.overwrite))
    print(
        f"to-bag: wrote {summary.sets} {args.split} camera sets of {args.data} ({len(summary.cameras)} "
        f"camera(s): {', '.join(summary.cameras)}; {summary.messages} messages) to {args.out} "
        f"in {summary.seconds:.1f} s"
    )
    return 0


def _add_import(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "import",
        help="turn a COLMAP model, a transforms.json or a TUM RGB-D sequence into a dataset folder",
        description=DESCRIPTION,  # the command module is light: readers and writer load when it runs
    )
    add_import_arguments(p)
    p.set_defaults(handler=run_import)


def build_parser() -> argparse.ArgumentParser:
    # Typed as the base class: the subcommand parsers are made of the parser's own class at run time.
    parser: argparse.ArgumentParser = OneLineParser(prog="pose-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(sub)
    _add_from_bag(sub)
    _add_import(sub)
    _add_to_bag(sub)
    add_fit(sub)
    add_error_head(sub)
    add_eval(sub)
    add_export(sub)
    add_build_engine(sub)
    return parser


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line as `main` runs it; exits 2 with one line on a bad one.

    argparse gives a list positional (fit's key=value overrides) only the words before the first
    option after them, so `fit --out RUN data.root=D --quiet optim.epochs=2` left optim.epochs=2
    "unrecognized". Such later key=value words are overrides too; anything else left over is still
    an error."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        overrides = getattr(args, "overrides", None)
        if overrides is None or any(word.startswith("-") or "=" not in word for word in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*overrides, *extra]
    return args


# `eval` sounded like `pose-regressor evaluate` (now eval-node), which scores the running node on a bag.
DEPRECATED_COMMANDS = {"eval": "eval-checkpoint"}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand. Any bad input is one line on stderr and exit 2; Ctrl-C (130) and
    SIGTERM (143) stop it cleanly (what a command was writing is removed) with one line too."""
    choose_openmp_waiting()  # before anything imports torch (cpu_threads.py says why)
    try:
        args = parse_arguments(argv)
    except KeyboardInterrupt:  # Ctrl-C while the parser's modules load: one line, as for a command
        print("pose-train: interrupted (SIGINT)", file=sys.stderr)
        return 130
    from pose_regressor.image_decode import quiet_codec_logs

    quiet_codec_logs()  # an unreadable image is one error line of ours, not OpenCV's WARN first
    if args.command in DEPRECATED_COMMANDS:
        new = DEPRECATED_COMMANDS[args.command]
        print(
            f"pose-train {args.command} is deprecated: use pose-train {new} (same arguments)", file=sys.stderr
        )
        args.command = new
    with sigterm_as_interrupt() as termination:
        try:
            return int(args.handler(args))
        except (RigError, TrajectoryError, TrainingError, FileExistsError, ValueError, OSError) as exc:
            print(f"pose-train {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except RecursionError:
            print(f"pose-train {args.command}: error: an input file is nested too deeply", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            name = signal.Signals(termination.signal_number).name
            print(f"pose-train {args.command}: interrupted ({name})", file=sys.stderr)
            return termination.exit_status


if __name__ == "__main__":
    sys.exit(main())

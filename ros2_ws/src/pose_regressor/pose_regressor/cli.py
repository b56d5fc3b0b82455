"""`pose-regressor`: run the localizer, replay bags, evaluate the node on a bag (eval-node) or a bundle on a
dataset folder (eval-folder), bench engines."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pose_regressor.arguments import bounded_float, output_folder
from pose_regressor.limits import (
    BACKENDS,
    MAX_DURATION_S,
    MAX_MC_SAMPLES,
    MAX_RATE,
    MAX_START_DELAY_S,
    MIN_DELIVERY_RATIO,
    MIN_RATE,
    MIN_SKIP_EMPTY_S,
)

if TYPE_CHECKING:
    from pose_regressor.replay import StopFlag


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run the localizer node (what `ros2 launch pose_regressor localize.launch.py` starts)",
        description="Runs the localizer with a params YAML in the `/**: ros__parameters:` form "
        "(config/localize.yaml). Extra ROS arguments may follow `--ros-args` (e.g. -r __ns:=/robot1).",
    )
    p.add_argument("--params", type=Path, help="params YAML (node_name: ros__parameters: ...)")
    p.add_argument("--bundle", type=Path, help="model bundle (overrides the params file)")
    p.add_argument("--camera-topics", nargs="+", help="camera topics (override the params file)")
    p.add_argument("--use-sim-time", action="store_true", help="follow /clock")
    p.set_defaults(handler=_run)


def ros_string(value: object) -> str:
    """`value` as a YAML double-quoted string: ROS parses `-p name:=VALUE` as YAML, so an unquoted
    path such as `models #1`, `a: b`, `123` or `on` would arrive cut, as a mapping, an int or a bool.
    JSON strings are YAML double-quoted scalars, and any character survives their escapes."""
    return json.dumps(str(value), ensure_ascii=False)


def ros_arguments(args: argparse.Namespace, extra: Sequence[str]) -> list[str]:
    """The ROS command line equivalent to `pose-regressor run`'s options."""
    ros: list[str] = ["--ros-args"]
    if args.params is not None:
        if not args.params.is_file():
            raise FileNotFoundError(f"params file {args.params} does not exist")
        ros += ["--params-file", str(args.params)]
    if args.bundle is not None:
        ros += ["-p", f"bundle:={ros_string(args.bundle)}"]
    if args.camera_topics:
        ros += ["-p", f"camera_topics:=[{','.join(ros_string(t) for t in args.camera_topics)}]"]
    if args.use_sim_time:
        ros += ["-p", "use_sim_time:=true"]
    extra = list(extra)
    if extra and extra[0] == "--ros-args":
        extra = extra[1:]
    return ros + extra


def params_file_problem(path: Path) -> str | None:
    """Why rcl could not use the params file `path` (None: it can), as one line.

    rcl reports a YAML error in two lines of its own and a C source location; checking first
    gives the user the node's usual single `cannot configure:` line instead."""
    import yaml

    from pose_regressor.files import YamlFileError, read_yaml

    try:
        data = read_yaml(path, "the params file")
        # rcl's parser refuses anchors and aliases ("Will not support aliasing"), PyYAML takes them.
        text = path.read_text(encoding="utf-8")
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            return f"the params file {path} uses YAML aliases (*name), which ROS 2 cannot read"
    except YamlFileError as exc:
        return str(exc)
    except OSError as exc:  # changed since read_yaml read it
        return f"cannot read the params file {path}: {exc.strerror or exc}"
    if not isinstance(data, dict):
        shown = repr(data)[:40]
        return f"the params file {path} must map node names (e.g. '/**:') to ros__parameters, got {shown}"
    return None


def _run(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from pose_regressor.node import NODE_NAME
    from pose_regressor.node import main as node_main

    problem = params_file_problem(args.params) if args.params is not None and args.params.is_file() else None
    if problem is not None:
        print(f"[ERROR] [{NODE_NAME}]: cannot configure: {problem}", file=sys.stderr)
        return 1
    return node_main(["pose-regressor", *ros_arguments(args, extra)])


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer from {low} to {high}, got {text!r}"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, got {text}")
        return value

    return parse


def _rate_argument(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument(
        "--rate",
        type=bounded_float(MIN_RATE, MAX_RATE),
        default=1.0,
        help=f"{help_text}, {MIN_RATE:g} to {MAX_RATE:g} (default 1)",
    )


def _duration_type() -> Callable[[str], float]:
    return bounded_float(0.0, MAX_DURATION_S, low_open=True, unit=" s")


def _skip_empty_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--skip-empty",
        type=bounded_float(MIN_SKIP_EMPTY_S, MAX_DURATION_S, unit=" s"),
        metavar="SEC",
        help="play a stretch of the bag with no messages longer than SEC seconds in SEC seconds (like "
        "ROS 1 rosbag play --skip-empty): short sequences recorded far apart replay without the waits; "
        "stamps are unchanged",
    )


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="publish a bag's messages over ROS 2 with their recorded timing (like ros2 bag play)",
        description="Publishes a bag's messages with their recorded timing. Sets "
        "FASTRTPS_DEFAULT_PROFILES_FILE to the package's config/fastdds_large_images.xml unless it is "
        "set. SIGINT and SIGTERM stop it cleanly (exit 130 / 143). Exit 2: a bad argument or a bag "
        "that cannot be read; corrupt records are skipped and counted.",
    )
    p.add_argument("bag", type=Path)
    _rate_argument(p, "playback speed factor")
    p.add_argument("--loop", action="store_true", help="play again and again (stamps keep increasing)")
    p.add_argument("--clock", action="store_true", help="publish /clock from the bag's time")
    p.add_argument("--topics", nargs="+", help="only these topics")
    p.add_argument("--duration", type=_duration_type(), help="stop after this many seconds (up to a week)")
    _skip_empty_argument(p)
    p.add_argument(
        "--start-delay",
        type=bounded_float(0.0, MAX_START_DELAY_S, unit=" s"),
        default=3.0,
        help=f"wait up to this many seconds for subscribers first (0 to {MAX_START_DELAY_S:g})",
    )
    p.add_argument("--log", type=Path, help="write each message's stamp and publish time as JSON lines")
    p.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from pose_regressor.bagio import open_bag

    # A damaged bag is one line at once: before rclpy's imports, any DDS work or a --log file.
    if args.bag.exists():
        open_bag(args.bag).close()

    from pose_regressor.replay import StopFlag, handle_signals

    stop = StopFlag()
    with handle_signals(stop):
        return _replay_with(args, extra, stop)


def _replay_with(args: argparse.Namespace, extra: Sequence[str], stop: StopFlag) -> int:
    import signal

    import rclpy
    import rclpy.utilities
    from rclpy.signals import SignalHandlerOptions

    from pose_regressor.replay import replay, use_large_images_profile
    from pose_regressor.teardown import teardown_watchdog

    profile = use_large_images_profile()
    _init_ros(extra, SignalHandlerOptions.NO)
    # Line-buffered: the log can be followed while the replay runs, and a killed replay loses no line.
    log = args.log.open("w", buffering=1) if args.log is not None else None
    try:
        stats = replay(
            args.bag,
            args.rate,
            args.loop,
            args.clock,
            args.topics,
            args.duration,
            args.start_delay,
            log,
            stop=stop,
            skip_empty_s=args.skip_empty,
        )
        if log is not None:
            log.write(json.dumps({"summary": stats.summary()}) + "\n")
    except BaseException:
        if log is not None:  # nothing was replayed (bad topics, an unreadable bag): no log either
            log.close()
            args.log.unlink(missing_ok=True)
        raise
    finally:
        if log is not None:
            log.close()
        if rclpy.utilities.ok():
            with teardown_watchdog():
                rclpy.shutdown()
    total = sum(stats.published.values())
    if stats.stopped_by == "signal" and stop.signum is not None:
        name = signal.Signals(stop.signum).name
        print(
            f"pose-regressor replay: interrupted by {name} after publishing {total} messages in "
            f"{stats.seconds:.1f} s",
            file=sys.stderr,
        )
        return 128 + stop.signum
    if stats.unreadable or stats.read_error:
        print(
            f"pose-regressor replay: warning: bag {args.bag} is damaged: {stats.unreadable} message(s) "
            f"could not be read ({stats.read_error or 'records missing from their chunk'}); the rest was "
            "published",
            file=sys.stderr,
        )
    print(
        f"replay: published {total} messages on {len(stats.published)} topics in {stats.seconds:.1f} s"
        f" ({stats.loops} loops, {stats.skipped} corrupt skipped, {stats.unreadable} unreadable);"
        f" Fast DDS profile: {profile or 'none (Fast DDS defaults)'}"
    )
    return 0


def _init_ros(extra: Sequence[str], signal_handlers: object) -> None:
    """`rclpy.init` with the --ros-args; arguments rcl rejects are one ValueError line (rcl's own
    log line about them, written straight to file descriptor 2, is held back and dropped)."""
    import os
    import tempfile

    import rclpy

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            rclpy.init(args=["pose-regressor", *extra], signal_handler_options=signal_handlers)
        except Exception as exc:  # RCLError, with its C source location
            failure: Exception | None = exc
        else:
            failure = None
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if failure is None:  # anything rcl said while starting up normally is passed on
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
    if failure is not None:
        reason = " ".join(str(failure).split(", at /")[0].split())
        raise ValueError(f"cannot start ROS with the arguments {' '.join(extra)}: {reason}")


# `evaluate` was this command's first name; `pose-train eval` (a checkpoint on a dataset split)
# sounded the same. The old name still works and says so.
DEPRECATED_COMMANDS = {"evaluate": "eval-node"}


def _add_eval_node(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "eval-node",
        aliases=["evaluate"],
        help="node + bag replay over ROS 2 as separate processes; accuracy, rate and latency vs ground truth",
        description="Starts the localizer and a bag replay as separate processes (with the package's "
        "Fast DDS large-images profile unless FASTRTPS_DEFAULT_PROFILES_FILE is set) and compares the "
        "poses with the bag's ground truth. Exit 1: the evaluation failed (the node died, or fewer than "
        f"{MIN_DELIVERY_RATIO:.0%} of the published camera sets reached the node or were accounted for "
        "by it); 2: a bad argument or an unreadable bag or bundle, or a failed soak check; 130 / 143: "
        "SIGINT / SIGTERM.",
    )
    p.add_argument("--bag", type=Path, required=True)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--gt-topic", default="/ground_truth/pose")
    _rate_argument(p, "replay speed factor")
    p.add_argument("--out", type=output_folder, default="out/eval-node")
    p.add_argument(
        "--mc-samples",
        type=_bounded_int(0, MAX_MC_SAMPLES),
        default=0,
        help=f"MC-dropout samples, 0 to {MAX_MC_SAMPLES} (default 0: the bundle's)",
    )
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--camera-topics", nargs="+", help="default: the bundle's topics")
    p.add_argument("--loop", action="store_true", help="replay the bag in a loop (with --duration)")
    p.add_argument(
        "--duration",
        type=_duration_type(),
        help="stop the replay after this many seconds (up to a week); also checks memory growth and "
        "latency stability (soak, see soak.png; exit code 2 if a check fails)",
    )
    _skip_empty_argument(p)
    p.set_defaults(handler=_eval_node)


def _eval_node(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from pose_regressor.bagio import open_bag

    if args.bag.exists():  # a damaged bag is one line at once, before rclpy and the bundle load
        open_bag(args.bag).close()

    from pose_regressor.node_evaluation import (
        RESULT_FILES,
        EvaluationError,
        NodeEvaluationConfig,
        evaluate_node,
    )
    from pose_regressor.replay import Interrupted, StopFlag, handle_signals

    cfg = NodeEvaluationConfig(
        bag=args.bag,
        bundle=args.bundle,
        gt_topic=args.gt_topic,
        rate=args.rate,
        out=args.out,
        mc_samples=args.mc_samples,
        backend=args.backend,
        camera_topics=tuple(args.camera_topics or ()),
        extra_node_args=tuple(extra[1:] if extra[:1] == ["--ros-args"] else extra),
        duration_s=args.duration,
        loop=args.loop,
        skip_empty_s=args.skip_empty,
    )
    stop = StopFlag()
    try:
        with handle_signals(stop):
            m = evaluate_node(cfg, stop)
    except EvaluationError as exc:
        print(f"pose-regressor eval-node: error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(
            f"pose-regressor eval-node: {exc}; the localizer and the replay were stopped, no results written",
            file=sys.stderr,
        )
        return exc.exit_code
    print(
        f"eval-node: {m['published']} poses for {m['expected_sets']} input sets "
        f"(ratio {m['output_rate_ratio']:.3f}, delivery {m['delivery_ratio']:.3f}), "
        f"median {m['median_translation_m']:.3f} {m['length_unit']} {m['median_rotation_deg']:.2f} deg, "
        f"e2e latency p50 {m['e2e_latency_ms_p50']:.1f} ms p99 {m['e2e_latency_ms_p99']:.1f} ms "
        f"(node set->pose p50 {m['node_set_to_pose_ms_p50']:.1f} ms "
        f"p99 {m['node_set_to_pose_ms_p99']:.1f} ms), "
        f"dropped sets {m['dropped_sets']}, mean NEES {m['mean_nees']:.2f}, {_uncertainty_text(m)}"
    )
    damaged = ("gt_corrupt_skipped", "gt_unreadable", "replay_corrupt_skipped", "replay_unreadable")
    if any(m[key] for key in damaged):
        print(
            f"eval-node: the bag is damaged: skipped {m['gt_corrupt_skipped']} corrupt and "
            f"{m['gt_unreadable']} unreadable ground-truth message(s), {m['replay_corrupt_skipped']} corrupt "
            f"and {m['replay_unreadable']} unreadable camera message(s)"
            + (f" ({m['bag_read_error']})" if m["bag_read_error"] else "")
        )
    written = [name for name in RESULT_FILES if (args.out / name).exists()]  # no plots without matplotlib
    print(f"eval-node: wrote {args.out}/{', '.join(written)}")
    soak = m.get("soak")
    if soak is None:
        return 0
    print(
        f"soak: {soak['duration_s']:.0f} s, RSS {soak['rss_mb_first_window']:.1f} -> "
        f"{soak['rss_mb_last_window']:.1f} MB ({soak['rss_growth_pct']:+.1f}%), e2e latency p99 "
        f"{soak['e2e_latency_ms_p99_first_window']:.1f} -> {soak['e2e_latency_ms_p99_last_window']:.1f} ms "
        f"({soak['latency_p99_change_pct']:+.1f}%), dropped sets {soak['dropped_sets']}: "
        + ("PASS" if soak["passed"] else "FAIL " + ", ".join(k for k, ok in soak["checks"].items() if not ok))
    )
    return 0 if soak["passed"] else 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _bench_json_file(text: str) -> Path:
    """An argparse type for bench --json: a file to write, refused at once when it is a folder or a
    folder it would sit in is a file; the write would otherwise fail after the whole run."""
    if not text:
        raise argparse.ArgumentTypeError("must name a file, got ''")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; name a file (e.g. {path / 'bench.json'})")
    for part in path.parents:
        if part.exists() and not part.is_dir():
            raise argparse.ArgumentTypeError(f"{part} is a file, so {text} cannot be written; name a file")
    return path


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="time preprocess, inference and postprocess of a bundle; MC-dropout, naive and fusion cost",
        description="Times the robot's per-frame path on random camera-size images: preprocess, "
        "engine.infer and the MC-dropout pose estimate, at p50 and p99, for S=1, S=--mc-samples in one "
        "pass, and the naive baseline of S separate S=1 passes (plus --compare's bundle, at its own "
        "mc_samples unless --mc-samples is given), interleaved. A bundle without dropout (dropout: 0) "
        "runs its own rows (S may be 1) and has no naive row. Prints a table and the ratios "
        "mc_cost_ratio, naive_over_ours and compare_ratio.",
    )
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--compare", type=Path, help="a second bundle to compare totals with (e.g. T=1 vs T=4)")
    p.add_argument("--backend", default="auto", help="auto, tensorrt, onnxruntime or torch")
    p.add_argument("--mc-samples", type=_positive_int, help="S (default: the bundle's mc_samples)")
    p.add_argument("--repeats", type=_positive_int, default=50, help="measured frames per row")
    p.add_argument("--warmup", type=int, default=5, help="unmeasured frames per row first")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: physical cores)")
    p.add_argument("--json", type=_bench_json_file, help="also write the results as JSON")
    p.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from pose_regressor.bench import format_table, run_bench, write_json
    from pose_regressor.engines import EngineError

    options = {"threads": args.threads} if args.threads is not None else {}
    try:
        result = run_bench(
            args.bundle,
            backend=args.backend,
            mc_samples=args.mc_samples,
            repeats=args.repeats,
            warmup=args.warmup,
            compare=args.compare,
            engine_options=options,
        )
    except EngineError as exc:
        print(f"pose-regressor bench: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json is not None:
        print(f"bench: wrote {write_json(result, args.json)}")
    return 0


def _add_eval_folder(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "eval-folder",
        help="score a bundle on a split of a dataset folder (metrics.json, plots); no ROS",
        description="Runs the bundle (the node's preprocessing, engine and MC-dropout estimate) on "
        "every camera set of one split of a dataset folder (pose-train synth, from-bag or import) and "
        "writes OUT/metrics.json (the keys of eval-checkpoint and eval-node), OUT/poses.csv (each "
        "frame's pose, truth, errors, stds, uncertain flag and 6x6 covariance), OUT/trajectory.png and "
        "OUT/reliability.png. "
        "The folder's rig must have the bundle's cameras (by name); it may have more.",
    )
    p.add_argument("--bundle", type=Path, required=True, help="the bundle folder (pose-train export)")
    p.add_argument("--data", type=Path, required=True, help="the dataset folder")
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help="inference engine (default auto)")
    p.add_argument(
        "--mc-samples",
        type=_bounded_int(0, MAX_MC_SAMPLES),
        help="MC-dropout samples per set (default: the bundle's; 0: the deterministic pose)",
    )
    p.add_argument(
        "--out", type=output_folder, required=True, help="folder for metrics.json, poses.csv and the plots"
    )
    p.set_defaults(handler=_eval_folder)


def _eval_folder(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from pose_regressor.engines import EngineError
    from pose_regressor.folder_evaluation import FolderEvaluationConfig, evaluate_folder

    cfg = FolderEvaluationConfig(args.bundle, args.data, args.out, args.split, args.backend, args.mc_samples)
    try:
        result = evaluate_folder(cfg)
    except EngineError as exc:
        print(f"pose-regressor eval-folder: error: {exc}", file=sys.stderr)
        return 2
    for warning in result.warnings:
        print(f"pose-regressor eval-folder: warning: {warning}", file=sys.stderr)
    m = result.metrics
    unit = m["length_unit"]  # "units" for a folder imported without a metric scale
    print(
        f"eval-folder: {m['frames']} {args.split} frames of {args.data}: median "
        f"{m['median_translation_m']:.3f} {unit} {m['median_rotation_deg']:.2f} deg, "
        f"{m['pct_within_0.25m_2deg']:.1f}% within 0.25 {unit} 2 deg, mean NEES {m['mean_nees']:.1f}, "
        f"{_uncertainty_text(m)} ({m['engine']}, {m['mc_samples']} MC samples); "
        f"wrote {', '.join(str(p) for p in result.written)}"
    )
    return 0


def _uncertainty_text(m: dict[str, Any]) -> str:
    """`Spearman(std, error) position 0.50 rotation 0.68, uncertain flag AUROC 0.89 (60 flagged)`;
    n/a for a Spearman of stds that are the same for every frame."""
    flag = m["uncertain_flag"]
    auroc = flag["auroc_uncertain_flag"]
    position, rotation = (
        "n/a" if math.isnan(value) else f"{value:.2f}"
        for value in (m["spearman_position_std_vs_error"], m["spearman_rotation_std_vs_error"])
    )
    return (
        f"Spearman(std, error) position {position} rotation {rotation}, uncertain flag AUROC "
        + ("n/a (no gross errors)" if auroc is None else f"{auroc:.2f}")
        + f" ({flag['flagged']} flagged)"
    )


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block), as pose-train's: exit 2 with
    `pose-regressor replay: error: argument --rate: ... (see pose-regressor replay --help)`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = OneLineParser(prog="pose-regressor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_replay(sub)
    _add_eval_node(sub)
    _add_eval_folder(sub)
    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--ros-args" in argv:
        cut = argv.index("--ros-args")
        argv, extra = argv[:cut], argv[cut:]
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        print("pose-regressor: interrupted (SIGINT)", file=sys.stderr)
        return 130
    if args.command in DEPRECATED_COMMANDS:
        new = DEPRECATED_COMMANDS[args.command]
        print(
            f"pose-regressor {args.command} is deprecated: use pose-regressor {new} (same arguments)",
            file=sys.stderr,
        )
        args.command = new
    try:
        # inside: importing OpenCV and numpy takes ~0.3 s, long enough for a Ctrl-C to land in
        from pose_regressor.image_decode import quiet_codec_logs

        quiet_codec_logs()  # an unreadable image is one error line of ours, not OpenCV's WARN first
        return int(args.handler(args, extra))
    except (ValueError, OSError) as exc:
        print(f"pose-regressor {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C in a command without its own handling (bench, run's start-up)
        print(f"pose-regressor {args.command}: interrupted (SIGINT)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

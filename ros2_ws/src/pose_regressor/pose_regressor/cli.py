"""`pose-regressor`: run the localizer, replay bags, evaluate end to end, benchmark engines."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


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

    try:
        text = path.read_text(encoding="utf-8")
        # rcl's parser refuses anchors and aliases ("Will not support aliasing"), PyYAML takes them.
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            return f"the params file {path} uses YAML aliases (*name), which ROS 2 cannot read"
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read the params file {path}: {exc}"
    except yaml.YAMLError as exc:
        return f"the params file {path} is not valid YAML: {' '.join(str(exc).split())}"
    except RecursionError:
        return f"the params file {path} is nested too deeply"
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


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="publish a bag's messages over ROS 2 with their recorded timing (like ros2 bag play)",
    )
    p.add_argument("bag", type=Path)
    p.add_argument("--rate", type=_positive, default=1.0, help="playback speed factor")
    p.add_argument("--loop", action="store_true", help="play again and again (stamps keep increasing)")
    p.add_argument("--clock", action="store_true", help="publish /clock from the bag's time")
    p.add_argument("--topics", nargs="+", help="only these topics")
    p.add_argument("--duration", type=_positive, help="stop after this many seconds")
    p.add_argument(
        "--start-delay", type=float, default=3.0, help="wait up to this many seconds for subscribers first"
    )
    p.add_argument("--log", type=Path, help="write each message's stamp and publish time as JSON lines")
    p.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace, extra: Sequence[str]) -> int:
    import rclpy
    import rclpy.utilities

    from pose_regressor.replay import replay

    rclpy.init(args=["pose-regressor", *extra])
    log = args.log.open("w") if args.log is not None else None
    try:
        stats = replay(
            args.bag, args.rate, args.loop, args.clock, args.topics, args.duration, args.start_delay, log
        )
    except KeyboardInterrupt:
        return 130
    finally:
        if log is not None:
            log.close()
        if rclpy.utilities.ok():
            rclpy.shutdown()
    total = sum(stats.published.values())
    print(
        f"replay: published {total} messages on {len(stats.published)} topics in {stats.seconds:.1f} s"
        f" ({stats.loops} loops, {stats.skipped} corrupt skipped)"
    )
    return 0


def _add_evaluate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evaluate",
        help="node + bag replay over ROS 2 as separate processes; accuracy, rate and latency vs ground truth",
    )
    p.add_argument("--bag", type=Path, required=True)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--gt-topic", default="/ground_truth/pose")
    p.add_argument("--rate", type=_positive, default=1.0, help="replay speed factor")
    p.add_argument("--out", type=Path, default=Path("out/evaluate"))
    p.add_argument("--mc-samples", type=int, default=0, help="MC-dropout samples (default 0: the bundle's)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--camera-topics", nargs="+", help="default: the bundle's topics")
    p.add_argument("--loop", action="store_true", help="replay the bag in a loop (with --duration)")
    p.add_argument(
        "--duration",
        type=_positive,
        help="stop the replay after this many seconds; also checks memory growth and latency "
        "stability (soak, see soak.png; exit code 2 if a check fails)",
    )
    p.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from pose_regressor.ros_tools import EvaluateConfig, EvaluationError, run_evaluation

    cfg = EvaluateConfig(
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
    )
    try:
        m = run_evaluation(cfg)
    except EvaluationError as exc:
        print(f"pose-regressor evaluate: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"evaluate: {m['published']} poses for {m['expected_sets']} input sets "
        f"(ratio {m['output_rate_ratio']:.3f}), "
        f"median {m['median_translation_m']:.3f} m {m['median_rotation_deg']:.2f} deg, "
        f"latency p50 {m['latency_ms_p50']:.1f} ms p99 {m['latency_ms_p99']:.1f} ms, "
        f"dropped sets {m['dropped_sets']}, mean NEES {m['mean_nees']:.2f}"
    )
    print(f"evaluate: wrote {args.out}/metrics.json, trajectory.png, errors_over_time.png")
    soak = m.get("soak")
    if soak is None:
        return 0
    print(
        f"soak: {soak['duration_s']:.0f} s, RSS {soak['rss_mb_first_window']:.1f} -> "
        f"{soak['rss_mb_last_window']:.1f} MB ({soak['rss_growth_pct']:+.1f}%), latency p99 "
        f"{soak['latency_ms_p99_first_window']:.1f} -> {soak['latency_ms_p99_last_window']:.1f} ms "
        f"({soak['latency_p99_change_pct']:+.1f}%), dropped sets {soak['dropped_sets']}: "
        + ("PASS" if soak["passed"] else "FAIL " + ", ".join(k for k, ok in soak["checks"].items() if not ok))
    )
    return 0 if soak["passed"] else 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="time preprocess, inference and postprocess of a bundle; MC-dropout, naive and fusion cost",
        description="Times the robot's per-frame path on random camera-size images: preprocess, "
        "engine.infer and the MC-dropout pose estimate, at p50 and p99, for S=1, S=--mc-samples in one "
        "pass, and the naive baseline of S separate S=1 passes (plus --compare's bundle), interleaved. "
        "Prints a table and the ratios mc_cost_ratio, naive_over_ours and compare_ratio.",
    )
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--compare", type=Path, help="a second bundle to compare totals with (e.g. T=1 vs T=4)")
    p.add_argument("--backend", default="auto", help="auto, tensorrt, onnxruntime or torch")
    p.add_argument("--mc-samples", type=_positive_int, help="S (default: the bundle's mc_samples)")
    p.add_argument("--repeats", type=_positive_int, default=50, help="measured frames per row")
    p.add_argument("--warmup", type=int, default=5, help="unmeasured frames per row first")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: physical cores)")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pose-regressor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_replay(sub)
    _add_evaluate(sub)
    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--ros-args" in argv:
        cut = argv.index("--ros-args")
        argv, extra = argv[:cut], argv[cut:]
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args, extra))
    except (ValueError, OSError) as exc:
        print(f"pose-regressor {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The loss ablation of issue 17: every loss and auxiliary task at its best swept setting, against the
default (learned homoscedastic weighting) on the same data, epochs and test frames.

    python training/experiments/ablation.py --data DATA_DIR --out runs/ablation --mode full

DATA_DIR is a `pose-train synth` quad-rig dataset (the full and reduced modes expect
`pose-train synth --out DATA_DIR --frames 16000 --frames-per-trajectory 20 --width 128 --height 96`).
The runs and sweeps are data, in ablation_plan.py. Each run trains in its own folder under --out and
is evaluated on val and test with MC dropout. For each idea the setting with the best validation
score is chosen (val only), then reported on test. The score is unit-free: median translation
error over the default run's, plus median rotation error over the default run's (lower is better;
the default scores 2.0).

Resumable: finished runs are skipped, an interrupted one continues from its last.pt; run the same
command again. Writes results.md, results.json, error_vs_time.png (validation score against
training time), learning_curves.png (training loss terms per epoch of each idea's chosen setting)
and learning_curves_all.png (the same for every run) into --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablation_plan import IDEAS, MODES, NOT_AVAILABLE, Idea, Mode, Run, epochs_of, runs_of

from pose_regressor_training.cpu_threads import choose_openmp_waiting
from pose_regressor_training.stop_signals import sigterm_as_interrupt

if TYPE_CHECKING:
    from run_folder import RunResult

# Measured on a 2-core AVX512 machine for the default model in float32 (docs/results.md), validation
# included; used until a run has finished in --out, whose speed then counts instead.
TRAINING_SETS_PER_SECOND = 561.0
# Per run: loading the data, validating in fit, evaluating val and test (measured, reduced mode).
OVERHEAD_SECONDS = {"full": 150.0, "reduced": 100.0, "tiny": 3.0}
FULL_TRAIN_SETS = 12800


def main(argv: list[str] | None = None) -> int:
    choose_openmp_waiting()  # before run_folder imports torch, as pose-train does
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="a pose-train synth dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="one folder per run, and the results")
    parser.add_argument("--mode", choices=sorted(MODES), default="full")
    parser.add_argument("--only", nargs="*", default=None, help="run only these runs or ideas")
    args = parser.parse_args(argv)
    mode = MODES[args.mode]
    if not (args.data / "dataset.yaml").is_file():
        make = mode.synth.replace("DIR", str(args.data))
        print(f"ablation: no dataset at {args.data}; make it with: {make}", file=sys.stderr)
        return 2
    planned = runs_of(mode)
    unknown = sorted(set(args.only or ()) - {r.name for r in planned} - {r.idea for r in planned})
    if unknown or args.only == []:
        names = ", ".join(sorted({r.idea for r in planned}) + [r.name for r in planned])
        what = f"no run or idea named {', '.join(unknown)}" if unknown else "--only names no run"
        print(f"ablation: {what} in the {mode.name} mode; one of: {names}", file=sys.stderr)
        return 2
    chosen = {r.name for r in planned if args.only is None or r.name in args.only or r.idea in args.only}
    # a fine-tuning run brings the run it starts from along: made, or read when finished
    chosen |= {r.init_from for r in planned if r.name in chosen and r.init_from}
    runs = [r for r in planned if r.name in chosen]
    where = ["while starting"]  # what was running, for the interruption line
    # SIGTERM (a scheduler, `kill`) stops as cleanly as Ctrl-C
    with sigterm_as_interrupt() as termination:
        try:
            return ablate(runs, mode, args.data, args.out, where)
        except KeyboardInterrupt:
            print(
                f"ablation: interrupted {where[-1]}; finished runs are kept, run the same command to resume",
                file=sys.stderr,
            )
            return termination.exit_status


def ablate(runs: list[Run], mode: Mode, data: Path, out: Path, where: list[str]) -> int:
    """Makes the runs (skipping finished ones) and writes the report; 1 after a one-line error."""
    # torch and the training code (seconds to import) only here, where Ctrl-C is caught
    from run_folder import RunFolderError

    from pose_regressor_training.checkpoint import CheckpointError
    from pose_regressor_training.errors import TrainingError
    from pose_regressor_training.typed_config import ConfigError

    print(f"ablation: {mode.name} mode, {mode.about}; {plural(len(runs), 'run')} into {out}", flush=True)
    print(f"ablation: {estimate(runs, mode, data, out)}", flush=True)
    results: dict[str, RunResult] = {}
    try:
        for run in runs:
            where.append(f"in run {run.name}")
            results[run.name] = do_run(run, mode, data, out, results)
        where.append("while writing the report")
    except (TrainingError, RunFolderError, ConfigError, CheckpointError, ValueError, OSError) as exc:
        print(f"ablation: {where[-1]}: {exc}", file=sys.stderr)
        return 1
    write_report(build_report(runs, results, mode), runs, results, mode, out)
    return 0


def overrides_of(run: Run, mode: Mode, data: Path, out: Path) -> list[str]:
    overrides = [
        *run.overrides,
        *mode.extra,
        f"data.root={data}",
        f"optim.epochs={epochs_of(run, mode)}",
        "tensorboard=false",
    ]
    if mode.max_frames:
        overrides.append(f"data.max_frames={mode.max_frames}")
    if run.init_from:
        overrides.append(f"init_from={out / run.init_from / 'best.pt'}")
    return overrides


def do_run(run: Run, mode: Mode, data: Path, out: Path, done: dict[str, RunResult]) -> RunResult:
    from run_folder import ensure_run

    from pose_regressor_training.errors import TrainingError

    if run.init_from and run.init_from not in done:
        raise TrainingError(f"it starts from run {run.init_from}, which is not part of this invocation")
    print(f"== {run.name} ({run.idea}): {run.setting}", flush=True)
    result, worked = ensure_run(
        out / run.name,
        overrides_of(run, mode, data, out),
        mode.mc_samples,
        plots=mode.run_plots,
        eval_frames=mode.eval_frames,
    )
    state = "done" if worked else "finished before, skipped"
    v, t = result.val, result.test
    print(
        f"   {state}: val {v['median_translation_m']:.3f} m {v['median_rotation_deg']:.2f} deg, "
        f"test {t['median_translation_m']:.3f} m {t['median_rotation_deg']:.2f} deg",
        flush=True,
    )
    return result


def estimate(runs: list[Run], mode: Mode, data: Path, out: Path) -> str:
    """Expected wall time of the runs not finished yet: per epoch, the time of the runs of the same
    kind (tuple length, odometry) already finished in `out`, else of any finished run, else the
    reference machine's speed; plus a per-run overhead."""
    from run_folder import is_finished

    overhead = OVERHEAD_SECONDS[mode.name]
    left = [run for run in runs if not is_finished(out / run.name)]
    if mode.name == "tiny":
        return f"{plural(len(left), 'run')} to make on a tiny dataset: about {len(left) * overhead:.0f} s"
    measured = measured_epoch_seconds(mode, data, out)
    seconds = 0.0
    for run in left:
        kind = run_kind(run, mode, data)
        if kind in measured:
            per_epoch = statistics.median(measured[kind])
        elif measured:
            per_epoch = statistics.median([v for values in measured.values() for v in values])
        else:
            per_epoch = training_sets(mode) * kind[0] / TRAINING_SETS_PER_SECOND
        seconds += per_epoch * epochs_of(run, mode) + overhead
    if measured:
        finished = sum(map(len, measured.values()))
        basis = (
            f"the epoch times of {finished} finished run(s) here, plus {overhead:.0f} s per run to load "
            "and evaluate"
        )
    else:
        basis = (
            f"{TRAINING_SETS_PER_SECOND:.0f} camera sets/s as on a 2-core AVX512 CPU, plus {overhead:.0f} s "
            "per run to load and evaluate; about 2x longer on a CPU with AVX2 only"
        )
    return f"{plural(len(left), 'run')} to make: about {seconds / 60:.0f} min if nothing else runs ({basis})"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def training_sets(mode: Mode) -> int:
    return FULL_TRAIN_SETS if not mode.max_frames else min(mode.max_frames, FULL_TRAIN_SETS)


def run_kind(run: Run, mode: Mode, data: Path) -> tuple[int, bool]:
    """(frames per training sample, auxiliary odometry): runs of one kind take alike per epoch."""
    from run_folder import DEFAULT_CONFIG

    from pose_regressor_training.losses import required_tuple_length
    from pose_regressor_training.train_config import load_train_config

    config = load_train_config(DEFAULT_CONFIG, overrides_of(run, mode, data, Path("out")))
    k = required_tuple_length(config.loss.name, config.loss.params)
    odometry = config.model.aux_odometry
    return (max(k, 2) if odometry else k), odometry


def measured_epoch_seconds(mode: Mode, data: Path, out: Path) -> dict[tuple[int, bool], list[float]]:
    """Seconds per epoch (validation included) of the mode's runs already finished in `out`, by kind."""
    from run_folder import is_finished, read_run

    measured: dict[tuple[int, bool], list[float]] = {}
    for run in runs_of(mode):
        if not is_finished(out / run.name):
            continue
        history = read_run(out / run.name).history
        if history and history[-1]["seconds"] > 0:
            per_epoch = float(history[-1]["seconds"]) / len(history)
            measured.setdefault(run_kind(run, mode, data), []).append(per_epoch)
    return measured


# ------------------------------------------------------------------------------------ the report


def score(metrics: dict[str, Any], reference: dict[str, Any]) -> float:
    """Unit-free: each median error over the reference run's (the default scores 2)."""
    return float(
        metrics["median_translation_m"] / reference["median_translation_m"]
        + metrics["median_rotation_deg"] / reference["median_rotation_deg"]
    )


@dataclass
class Row:
    idea: str
    paper: str
    run: str
    setting: str
    settings_tried: int
    val_score: float
    test_score: float
    test_t_m: float
    test_rot_deg: float
    train_minutes: float
    claim: str
    versus: str
    reproduced: str  # yes / no / tie / "" (the reference, or its comparison not run)
    seeds: int = 1  # the test columns are the mean over this many seeds of the chosen setting
    control: str = ""  # the idea's control (Idea.control), where it was run
    against_control: str = ""  # yes / no / tie against that control / "" (none, or not run)


def train_minutes(run: Run, results: dict[str, RunResult], by_name: dict[str, Run]) -> float:
    """Its own training time plus that of the run it starts from (a fine-tuning stage)."""
    own = results[run.name].train_minutes
    parent = by_name.get(run.init_from)
    return own + (train_minutes(parent, results, by_name) if parent and parent.name in results else 0.0)


def build_report(runs: list[Run], results: dict[str, RunResult], mode: Mode) -> list[Row]:
    """One row per idea: its best run by validation score (of the first seed), scored on test (the
    mean over the seeds run of it)."""
    reference = next((results[r.name] for r in runs if r.idea == "default"), None)
    if reference is None:
        print("ablation: the default run is not part of this invocation; scores are against the first run")
        reference = results[runs[0].name]
    by_name = {run.name: run for run in runs}
    rows: dict[str, Row] = {}
    for idea in IDEAS:
        tried = [r for r in runs if r.idea == idea.name and not r.replicate_of]
        if not tried:
            continue
        best = min(tried, key=lambda r: score(results[r.name].val, reference.val))
        seeds = [best.name, *(r.name for r in runs if r.replicate_of == best.name)]
        tests = [results[name].test for name in seeds]
        rows[idea.name] = Row(
            idea.name,
            idea.paper,
            best.name,
            best.setting,
            len(tried),
            score(results[best.name].val, reference.val),
            statistics.fmean(score(test, reference.test) for test in tests),
            statistics.fmean(float(test["median_translation_m"]) for test in tests),
            statistics.fmean(float(test["median_rotation_deg"]) for test in tests),
            train_minutes(best, results, by_name),
            idea.claim,
            idea.versus,
            "",
            seeds=len(seeds),
        )
    for idea in IDEAS:
        row = rows.get(idea.name)
        if row is None:
            continue
        if idea.versus in rows:
            row.reproduced = _reproduced(idea, row, rows[idea.versus])
        if idea.control in rows:
            row.control = idea.control
            row.against_control = _reproduced(idea, row, rows[idea.control])
    return list(rows.values())


# One seed per run: three seeds of the default recipe spread over 0.13 in test score (1.58-1.71,
# docs/results.md), so a difference smaller than this is reported as a tie, not as a verdict.
TIE_SCORE = 0.05


def _reproduced(idea: Idea, row: Row, versus: Row) -> str:
    if abs(row.test_score - versus.test_score) < TIE_SCORE:
        return "tie"
    better = row.test_score < versus.test_score
    return "yes" if better == (idea.holds_if == "better") else "no"


def markdown(rows: list[Row], runs: list[Run], results: dict[str, RunResult], mode: Mode) -> str:
    lines = [
        f"Loss ablation, {mode.name} mode ({mode.about}); test medians with {mode.mc_samples} MC samples.",
        "Score: median t / default's + median rot / default's (lower is better; the default scores 2);",
        "each idea's setting chosen by validation score, then scored on test (where that setting was",
        "run with more seeds, the test columns are their mean).",
        "",
        "| method | setting (of n tried) | val score | test median t (m) | test median rot (deg) "
        "| test score | train min | claim | vs | reproduced in direction | against its control |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.idea} | {r.setting} ({r.settings_tried}){f'; {r.seeds} seeds' if r.seeds > 1 else ''} | "
            f"{r.val_score:.3f} | {r.test_t_m:.3f} | "
            f"{r.test_rot_deg:.2f} | {r.test_score:.3f} | {r.train_minutes:.1f} | {r.claim} | "
            f"{r.versus or '–'} | {r.reproduced or '–'} | "
            f"{f'{r.against_control} ({r.control})' if r.control else '–'} |"
        )
    lines += [
        "",
        "Every run (validation medians):",
        "",
        "| run | method | setting | val t (m) | val rot (deg) |",
    ]
    lines.append("|---|---|---|---|---|")
    for run in runs:
        v = results[run.name].val
        lines.append(
            f"| {run.name} | {run.idea} | {run.setting} | {v['median_translation_m']:.3f} | "
            f"{v['median_rotation_deg']:.2f} |"
        )
    lines += [
        "",
        "No learned-weighting variant: " + "; ".join(f"{k}: {v}" for k, v in NOT_AVAILABLE.items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def write_report(
    rows: list[Row], runs: list[Run], results: dict[str, RunResult], mode: Mode, out: Path
) -> None:
    table = markdown(rows, runs, results, mode)
    payload = {
        "mode": mode.name,
        "score": "median t / default's + median rot / default's",
        "methods": [asdict(r) for r in rows],
        "runs": {
            run.name: {
                "idea": run.idea,
                "setting": run.setting,
                "val": _medians(results[run.name].val),
                "test": _medians(results[run.name].test),
                "train_minutes": results[run.name].train_minutes,
            }
            for run in runs
        },
    }
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    from ablation_plots import plot_error_vs_time, plot_learning_curves

    chosen = {row.run for row in rows}
    by_name = {run.name: run for run in runs}
    offsets = {
        run.name: train_minutes(by_name[run.init_from], results, by_name)
        for run in runs
        if run.init_from in by_name
    }
    plot_error_vs_time(out / "error_vs_time.png", runs, results, chosen, offsets)
    plot_learning_curves(out / "learning_curves.png", [r for r in runs if r.name in chosen], results)
    # every setting, not only the chosen ones: why a setting lost is in its own curves
    plot_learning_curves(out / "learning_curves_all.png", runs, results)
    print(table, end="")
    print(
        f"ablation: wrote {out / 'results.md'}, results.json, error_vs_time.png, learning_curves.png "
        "and learning_curves_all.png"
    )


def _medians(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(metrics[k]) for k in ("median_translation_m", "median_rotation_deg")}


if __name__ == "__main__":
    sys.exit(main())

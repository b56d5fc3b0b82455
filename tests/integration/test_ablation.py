"""The loss-ablation command (training/experiments/ablation.py) end to end in its tiny mode: the table,
results.json, the figures, and a second invocation that skips the finished runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "training" / "experiments"


@pytest.fixture
def ablation(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # a script folder, not a package: imported in-process so that torch is imported once
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import ablation

    return ablation


def test_tiny_mode_writes_the_table_and_a_second_run_skips_finished_runs(
    ablation: ModuleType, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ablation"
    assert ablation.main(["--data", str(tiny_data), "--out", str(out), "--mode", "tiny"]) == 0
    first = capsys.readouterr().out
    runs = ["default", "posenet_b10", "posenet_b100", "reprojection_lr0.0005"]
    table = (out / "results.md").read_text()
    for name in runs:
        assert f"| {name} |" in table
    assert "| posenet | β " in table and "(2) |" in table  # the better of the two β chosen on val
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["runs"]) == sorted(runs)
    values = [v for run in results["runs"].values() for split in ("val", "test") for v in run[split].values()]
    values += [row[key] for row in results["methods"] for key in ("val_score", "test_score", "train_minutes")]
    assert len(values) == 2 * 2 * len(runs) + 3 * 3 and all(math.isfinite(v) for v in values)
    assert [row["idea"] for row in results["methods"]] == ["default", "posenet", "reprojection"]
    assert {row["reproduced"] for row in results["methods"][1:]} <= {"yes", "no", "tie"}
    # the fine-tuning stage counts the training time of the run it started from
    minutes = {row["idea"]: row["train_minutes"] for row in results["methods"]}
    assert minutes["reprojection"] > minutes["default"] > 0
    for figure in ("error_vs_time.png", "learning_curves.png", "learning_curves_all.png"):
        assert (out / figure).stat().st_size > 10_000, figure
    assert len(json.loads((out / "default" / "history.json").read_text())) == 1
    assert first.count("   done:") == len(runs)

    stamps = {name: (out / name / "best.pt").stat().st_mtime_ns for name in runs}
    assert ablation.main(["--data", str(tiny_data), "--out", str(out), "--mode", "tiny"]) == 0
    assert capsys.readouterr().out.count("finished before, skipped") == len(runs)
    assert {name: (out / name / "best.pt").stat().st_mtime_ns for name in runs} == stamps
    assert (out / "results.md").read_text() == table


def test_a_missing_dataset_says_how_to_make_it(
    ablation: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        ablation.main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "out"), "--mode", "full"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pose-train synth --out" in err and "--frames 16000" in err


def test_unknown_run_names_and_an_unwritable_out_are_one_line_each(
    ablation: ModuleType, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--data", str(tiny_data), "--mode", "tiny"]
    assert ablation.main([*base, "--out", str(tmp_path / "out"), "--only", "default", "bogus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run or idea named bogus in the tiny mode; one of:" in err
    assert not (tmp_path / "out").exists()  # nothing trained for a typo
    assert ablation.main([*base, "--out", str(tmp_path / "out"), "--only"]) == 2
    assert "--only names no run" in capsys.readouterr().err
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert ablation.main([*base, "--out", str(blocker / "out"), "--only", "default"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ablation: in run default:") and "Not a directory" in err


def test_a_learned_weight_wears_its_terms_colour_and_every_term_keeps_one_colour(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    from ablation_plots import term_color

    known = ["t", "q", "t_rel", "q_rel", "coupling", "metric", "reproj_px", "variance_nll"]
    assert len({term_color(term) for term in known}) == len(known)
    # VLocNet's odometry terms and MapNet's relative terms are the same kind of term
    assert term_color("t_odom") == term_color("t_rel") and term_color("q_odom") == term_color("q_rel")
    # a term added later gets a colour of its own, the same one in every panel and every run
    assert term_color("new_term") == term_color("new_term")
    assert term_color("new_term") not in {term_color(term) for term in known}


def test_the_time_estimate_uses_the_epoch_times_of_the_runs_finished_here(
    ablation: ModuleType, tmp_path: Path
) -> None:
    import ablation_plan

    full = ablation_plan.MODES["full"]
    runs = ablation_plan.runs_of(full)
    out, data = tmp_path / "out", tmp_path / "data"
    before = ablation.estimate(runs, full, data, out)
    assert f"{len(runs)} runs to make" in before and "AVX2 only" in before
    # a finished default run whose 30 epochs took 1,500 s: 50 s per epoch
    for split in ("val", "test"):
        (out / "default" / f"eval_{split}").mkdir(parents=True)
        (out / "default" / f"eval_{split}" / "metrics.json").write_text("{}")
    history = [{"epoch": e, "seconds": 50.0 * e} for e in range(1, 31)]
    (out / "default" / "history.json").write_text(json.dumps(history))
    assert ablation.measured_epoch_seconds(full, data, out) == {(1, False): [50.0]}
    after = ablation.estimate(runs, full, data, out)
    assert f"{len(runs) - 1} runs to make" in after and "the epoch times of 1 finished run(s) here" in after
    # every other run, of whatever kind, at the one measured epoch time, plus 150 s each
    expected = sum(50.0 * ablation_plan.epochs_of(run, full) + 150.0 for run in runs[1:]) / 60
    assert f"about {expected:.0f} min" in after
    one_left = ablation.estimate(runs[:2], full, data, out)
    assert one_left.startswith("1 run to make: about") and "runs to make" not in one_left


def test_a_fine_tuning_run_brings_the_run_it_starts_from_along(
    ablation: ModuleType, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ablation"
    assert (
        ablation.main(
            ["--data", str(tiny_data), "--out", str(out), "--mode", "tiny", "--only", "reprojection"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "2 runs into" in printed and "== default" in printed and "== reprojection_lr0.0005" in printed
    assert {p.name for p in out.iterdir() if p.is_dir()} == {"default", "reprojection_lr0.0005"}


def test_each_pairs_control_differs_from_its_run_only_by_the_weight_it_sets_to_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import ablation_plan

    by_name = {run.name: run for run in ablation_plan.RUNS}
    for control, treated, weight in (
        ("aux_joint_w0", "aux_joint_w1", "model.aux_weight="),
        ("pairs_b10_skip1", "geometric_w0.1_skip1", "loss.params="),
    ):
        mine, theirs = by_name[control].overrides, by_name[treated].overrides
        differing = set(mine) ^ set(theirs)
        assert differing and all(item.startswith(weight) for item in differing), (control, differing)
        assert len(mine) == len(theirs)
    # the geometric pair differs inside loss.params by the odometry weight alone
    params = {
        name: next(o for o in by_name[name].overrides if o.startswith("loss.params="))
        for name in ("pairs_b10_skip1", "geometric_w0.1_skip1")
    }
    assert (
        params["pairs_b10_skip1"].replace("odom_weight: 0,", "odom_weight: 0.1,")
        == params["geometric_w0.1_skip1"]
    )


def test_a_claim_is_also_judged_against_its_control_where_the_control_was_run(
    ablation: ModuleType, tmp_path: Path
) -> None:
    import ablation_plan
    from run_folder import RunResult

    def result(t_m: float, rot_deg: float) -> RunResult:
        medians = {"median_translation_m": t_m, "median_rotation_deg": rot_deg}
        return RunResult(tmp_path, medians, medians, [{"epoch": 1, "seconds": 60.0}])

    by_name = {run.name: run for run in ablation_plan.RUNS}
    results = {
        "default": result(0.18, 2.0),
        "geometric_w0.1_skip1": result(0.14, 1.9),  # better than the reference...
        "pairs_b10_skip1": result(0.13, 1.8),  # ...and worse than the same pairs without its terms
        "aux_joint_w1": result(0.15, 1.8),
        "reprojection_lr0.0001": result(0.179, 2.0),  # 0.006 of score from the reference: a tie
    }
    mode = ablation_plan.MODES["full"]
    runs = [by_name[name] for name in results]
    rows = {row.idea: row for row in ablation.build_report(runs, results, mode)}
    geometric = rows["geometric_consistency"]
    verdicts = (geometric.reproduced, geometric.control, geometric.against_control)
    assert verdicts == ("yes", "pairs_control", "no")
    # a control that was not run leaves that verdict open rather than guessing it
    odometry = rows["aux_odometry_joint"]
    assert (odometry.reproduced, odometry.control, odometry.against_control) == ("yes", "", "")
    assert rows["reprojection"].reproduced == "tie"
    table = ablation.markdown(list(rows.values()), runs, results, mode)
    assert "| default | yes | no (pairs_control) |" in table
    assert "| default | yes | – |" in table


def test_a_second_seed_is_averaged_into_its_runs_row_and_never_chosen_as_a_setting(
    ablation: ModuleType, tmp_path: Path
) -> None:
    import ablation_plan
    from run_folder import RunResult

    def result(val: tuple[float, float], test: tuple[float, float]) -> RunResult:
        def medians(pair: tuple[float, float]) -> dict[str, float]:
            return {"median_translation_m": pair[0], "median_rotation_deg": pair[1]}

        return RunResult(tmp_path, medians(val), medians(test), [{"epoch": 1, "seconds": 60.0}])

    by_name = {run.name: run for run in ablation_plan.RUNS}
    seed1 = by_name["aux_joint_w1_seed1"]
    assert seed1.replicate_of == "aux_joint_w1"
    assert set(seed1.overrides) ^ set(by_name["aux_joint_w1"].overrides) == {"seed=1"}
    results = {
        "default": result((0.2, 2.0), (0.2, 2.0)),
        "aux_joint_w1": result((0.16, 1.8), (0.15, 1.8)),
        # the best validation of all: chosen, were it a setting of the sweep
        "aux_joint_w1_seed1": result((0.10, 1.0), (0.17, 2.0)),
        "aux_joint_w0": result((0.17, 1.9), (0.16, 1.9)),
    }
    mode = ablation_plan.MODES["full"]
    runs = [by_name[name] for name in results]
    rows = {row.idea: row for row in ablation.build_report(runs, results, mode)}
    odometry = rows["aux_odometry_joint"]
    assert (odometry.run, odometry.settings_tried, odometry.seeds) == ("aux_joint_w1", 1, 2)
    assert odometry.val_score == pytest.approx(0.16 / 0.2 + 1.8 / 2.0)
    assert (odometry.test_t_m, odometry.test_rot_deg) == (pytest.approx(0.16), pytest.approx(1.9))
    # the mean of the two seeds' scores (1.65, 1.85) ties with the control's one seed (1.75)
    assert odometry.test_score == pytest.approx(1.75)
    assert (odometry.control, odometry.against_control) == ("aux_pairs_control", "tie")
    assert rows["aux_pairs_control"].seeds == 1
    table = ablation.markdown(list(rows.values()), runs, results, mode)
    assert "| aux weight 1 (1); 2 seeds |" in table


def test_the_time_control_is_the_reference_trained_longer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import ablation_plan

    by_name = {run.name: run for run in ablation_plan.RUNS}
    full = ablation_plan.MODES["full"]
    for longer, reference in (("default_e51", "default"), ("posenet_b10_e51", "posenet_b10")):
        assert by_name[longer].overrides == by_name[reference].overrides
        assert by_name[longer].idea != by_name[reference].idea  # never a setting of the sweep it controls
        epochs = [ablation_plan.epochs_of(by_name[name], full) for name in (reference, longer)]
        assert epochs == [30, 51]


def test_the_full_mode_keeps_the_validation_schedule_its_first_runs_had(ablation: ModuleType) -> None:
    # the default config validates every 4th epoch since 2026-12-05; the full mode's runs began at
    # every 2nd: best.pt is chosen among the validated epochs and the learning curves are drawn
    # from them, so a run made later keeps the schedule of the ones made before
    from pose_regressor_training.train_config import load_train_config

    config_path = EXPERIMENTS.parents[0] / "configs" / "synth_quad.yaml"
    assert load_train_config(config_path).eval_every == 4
    full = ablation.MODES["full"]
    for run in ablation.runs_of(full):
        overrides = ablation.overrides_of(run, full, Path("DATA"), Path("OUT"))
        config = load_train_config(config_path, overrides)
        assert config.eval_every == 2, run.name


def test_a_run_folder_is_kept_when_only_its_schedule_or_first_head_was_pinned_later(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    from run_folder import DEFAULT_CONFIG, RunFolderError, _check_settings

    from pose_regressor_training.train_config import load_train_config

    def check(overrides: list[str]) -> None:
        _check_settings(tmp_path, overrides, load_train_config(DEFAULT_CONFIG, overrides))

    # a folder without a checkpoint (its .pt files removed to save space): run.json's overrides decide
    made = ["loss.name=homoscedastic", "optim.cpu_bf16=false", "optim.epochs=30"]
    (tmp_path / "run.json").write_text(json.dumps({"overrides": made}))
    check([*made[:2], "eval_every=2", made[2]])  # no error: the same training
    # the head a mode pinned later to what synth_quad.yaml said then (ablation_plan.FIRST_HEAD)
    check(["model.hidden_dim=256", "model.covariance=dropout", *made])
    with pytest.raises(RunFolderError, match="made with other settings"):
        check(["model.hidden_dim=768", *made])
    with pytest.raises(RunFolderError, match="made with other settings"):
        check(["loss.name=coupled", *made[1:]])
    with pytest.raises(RunFolderError, match="made with other settings"):
        check(made[:2])  # fewer epochs is another run
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(RunFolderError, match="made with other settings"):
        check(made)


def test_a_run_folder_whose_checkpoint_was_trained_from_another_config_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # run.json holds overrides only: a folder made before the config file's defaults changed has
    # the same overrides but trained something else, which only its checkpoint's config tells
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import torch
    from run_folder import DEFAULT_CONFIG, RunFolderError, _check_settings

    from pose_regressor.rig import preset_rig
    from pose_regressor_training.checkpoint import Checkpoint, save_checkpoint
    from pose_regressor_training.train_config import load_train_config

    overrides = ["data.root=DATA", "seed=1"]
    (tmp_path / "run.json").write_text(json.dumps({"overrides": overrides}))
    then = load_train_config(DEFAULT_CONFIG, [*overrides, "model.hidden_dim=256", "model.covariance=dropout"])
    rig = preset_rig("quad", 128, 96)
    weights = {"w": torch.ones(3)}  # the check reads the config only
    save_checkpoint(tmp_path / "best.pt", Checkpoint(then.model, weights, rig, config=then, epoch=3))

    now = load_train_config(DEFAULT_CONFIG, overrides)
    assert now.model.hidden_dim != 256  # the default moved on since
    with pytest.raises(RunFolderError) as refused:
        _check_settings(tmp_path, overrides, now)
    assert "model.covariance: 'dropout' there, 'heads' now" in str(refused.value)
    assert "model.hidden_dim: 256 there, 768 now" in str(refused.value)
    # the run the folder was made for, spelled with its pins, is kept; the schedule is not compared
    pinned = [*overrides, "model.hidden_dim=256", "model.covariance=dropout", "eval_every=2"]
    _check_settings(tmp_path, pinned, load_train_config(DEFAULT_CONFIG, pinned))

"""Training end to end on a tiny rendered dataset: fit, checkpoints, resume, losses, torchrun DDP, eval."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pose_regressor.uncertainty import CovarianceScale
from pose_regressor_training import cli as train_cli
from pose_regressor_training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from pose_regressor_training.cpu_threads import cpu_has_native_bf16
from pose_regressor_training.data.dataset import PoseDataset
from pose_regressor_training.data.sources import load_dataset
from pose_regressor_training.errors import TrainingError
from pose_regressor_training.evaluate import evaluate_checkpoint, evaluate_checkpoint_splits, write_evaluation
from pose_regressor_training.losses import LOSSES
from pose_regressor_training.predict import predict, predict_outputs, predict_with_deterministic
from pose_regressor_training.train import fit
from pose_regressor_training.train_config import load_train_config
from pose_regressor_training.trainer import Trainer
from pose_regressor_training.typed_config import ConfigError
from tests.conftest import TINY_TRAINING

TINY = TINY_TRAINING


def test_fit_writes_checkpoints_that_rebuild_the_model(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_train_config(None, [f"data.root={tiny_data}", "optim.epochs=2", *TINY])
    result = fit(config, tmp_path, progress=False)
    # The epoch printed as best is the one best.pt holds and last.pt names, all 1-based.
    printed_best = [line for line in capsys.readouterr().out.splitlines() if line.endswith("(best)")][-1]
    best = load_checkpoint(tmp_path / "best.pt")
    assert printed_best.startswith(f"epoch {best.epoch}/2:")
    last_names = load_checkpoint(tmp_path / "last.pt").best_epoch
    assert result.best_epoch == best.epoch == best.best_epoch == last_names
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()
    assert result.sets_per_second > 0
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint.epoch == 2
    assert checkpoint.model_config.num_cameras == 4
    assert checkpoint.config.data.root == str(tiny_data)
    assert checkpoint.rig.names == ["front", "left", "back", "right"]
    assert checkpoint.resume is not None and checkpoint.resume.global_step > 0
    model = model_from_checkpoint(checkpoint)
    # Translation statistics of the training split are part of the model.
    assert model.t_std.min() > 0.01 and not torch.allclose(model.t_mean, torch.zeros(3))
    x = torch.rand(1, 4, 3, 24, 32)
    torch.testing.assert_close(model(x).t, model_from_checkpoint(load_checkpoint(tmp_path / "last.pt"))(x).t)


def test_training_is_reproducible_and_resume_matches_an_uninterrupted_run(
    tiny_data: Path, tmp_path: Path
) -> None:
    config = load_train_config(None, [f"data.root={tiny_data}", *TINY, "optim.epochs=3"])
    fit(config, tmp_path / "full", progress=False)
    fit(config, tmp_path / "again", progress=False)
    # validation at other epochs: the same weights (the ablation's run folders rely on it)
    fit(replace(config, eval_every=config.eval_every + 1), tmp_path / "other_validation", progress=False)
    fit(config, tmp_path / "cut", progress=False, stop_after_epoch=2)  # as if killed after epoch 2
    assert load_checkpoint(tmp_path / "cut" / "last.pt").epoch == 2
    fit(config, tmp_path / "cut", resume=True, progress=False)
    full = load_checkpoint(tmp_path / "full" / "last.pt").model
    again = load_checkpoint(tmp_path / "again" / "last.pt").model
    resumed = load_checkpoint(tmp_path / "cut" / "last.pt").model
    other_validation = load_checkpoint(tmp_path / "other_validation" / "last.pt").model
    for key in full:
        torch.testing.assert_close(full[key], again[key], msg=f"not reproducible: {key}")
        torch.testing.assert_close(full[key], other_validation[key], rtol=0, atol=0, msg=f"eval_every: {key}")
        torch.testing.assert_close(full[key], resumed[key], msg=f"resume differs: {key}")
    # history.json: one entry per epoch across the resume, its wall time counting on
    history = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert 0 < history[0]["seconds"] < history[1]["seconds"] < history[2]["seconds"]
    assert history[2]["train"]["total"] == load_checkpoint(tmp_path / "cut" / "last.pt").train_loss["total"]
    assert history[2]["val"]["median_translation_m"] > 0


def test_a_moving_average_of_the_weights_is_validated_saved_and_resumed(
    tiny_data: Path, tmp_path: Path
) -> None:
    decay = 0.75
    config = load_train_config(
        None, [f"data.root={tiny_data}", *TINY, "optim.epochs=3", f"optim.ema_decay={decay}"]
    )
    # one step by hand: the average moves a quarter of the way to the new weights
    trainer = Trainer(config, tmp_path / "step", False, False)
    assert trainer.ema is not None
    trainer.objective.train()
    trainer.training_step(next(iter(trainer.batches())))  # the first update copies the weights
    before = {k: v.clone() for k, v in trainer.kept_model.state_dict().items()}
    trainer.training_step(next(iter(trainer.batches())))
    live, averaged = trainer.model.state_dict(), trainer.kept_model.state_dict()
    moved = 0
    for key, value in averaged.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, decay * before[key] + (1 - decay) * live[key], msg=key)
            moved += int(not torch.equal(value, live[key]))
    assert moved > 0
    # a whole fit: the checkpoints hold the average, last.pt the trained weights beside it, and a
    # resume continues both bit for bit
    fit(config, tmp_path / "full", progress=False)
    fit(config, tmp_path / "cut", progress=False, stop_after_epoch=2)
    fit(config, tmp_path / "cut", resume=True, progress=False)
    full, resumed = (
        load_checkpoint(tmp_path / "full" / "last.pt"),
        load_checkpoint(tmp_path / "cut" / "last.pt"),
    )
    assert full.resume is not None and full.resume.live_model is not None
    assert resumed.resume is not None and resumed.resume.live_model is not None
    for key in full.model:
        torch.testing.assert_close(full.model[key], resumed.model[key], msg=f"average differs: {key}")
        torch.testing.assert_close(
            full.resume.live_model[key], resumed.resume.live_model[key], msg=f"weights differ: {key}"
        )
    assert any(not torch.equal(full.model[k], full.resume.live_model[k]) for k in full.model)
    # resuming without the average would drop it: refused, and last.pt is left as it was
    saved = (tmp_path / "cut" / "last.pt").read_bytes()
    no_average = load_train_config(None, [f"data.root={tiny_data}", *TINY, "optim.epochs=4"])
    with pytest.raises(TrainingError, match=r"holds a moving average .* sets optim.ema_decay=0"):
        fit(no_average, tmp_path / "cut", resume=True, progress=False)
    assert (tmp_path / "cut" / "last.pt").read_bytes() == saved
    # what eval and export rebuild is the average
    x = torch.rand(1, 4, 3, 24, 32)
    rebuilt = model_from_checkpoint(full)
    trained = model_from_checkpoint(replace(full, model=full.resume.live_model))
    assert not torch.allclose(rebuilt(x).t, trained(x).t)
    with pytest.raises(ConfigError, match=r"optim.ema_decay must be in \[0, 1\), got 1.0"):
        load_train_config(None, [f"data.root={tiny_data}", "optim.ema_decay=1.0"])


def test_init_from_starts_from_a_checkpoints_weights(tiny_data: Path, tmp_path: Path) -> None:
    base = [f"data.root={tiny_data}", *TINY, "optim.epochs=1"]
    fit(load_train_config(None, base), tmp_path / "first", progress=False)
    start = tmp_path / "first" / "best.pt"
    trainer = Trainer(
        load_train_config(None, [*base, f"init_from={start}"]), tmp_path / "second", False, False
    )
    for key, value in load_checkpoint(start).model.items():
        torch.testing.assert_close(trainer.model.state_dict()[key], value, msg=key)
    wider = load_train_config(None, [*base, f"init_from={start}", "model.small_cnn_width=12"])
    with pytest.raises(TrainingError, match="does not fit this config's model"):
        Trainer(wider, tmp_path / "third", False, False)


def test_train_only_the_variance_head_keeps_every_other_weight(tiny_data: Path, tmp_path: Path) -> None:
    base = [f"data.root={tiny_data}", *TINY, "optim.epochs=1", "model.variance_head=true"]
    fit(load_train_config(None, base), tmp_path / "first", progress=False)
    start = tmp_path / "first" / "best.pt"
    laplace = [*base, f"init_from={start}", "train_only=variance_head", "model.variance_nll=laplace"]
    # stopped after epoch 3 of 4, validated every 2nd: epoch 3 is not validated and is still best.pt
    head_config = load_train_config(None, [*laplace, "optim.epochs=4", "eval_every=2"])
    result = fit(head_config, tmp_path / "head", progress=False, stop_after_epoch=3)
    before, after = load_checkpoint(start).model, load_checkpoint(tmp_path / "head" / "best.pt")
    assert after.epoch == result.best_epoch == 3  # the pose cannot choose: best.pt is the latest head
    assert result.best_metrics["median_translation_m"] > 0  # epoch 2's validation
    changed = sorted(key for key in before if not torch.equal(before[key], after.model[key]))
    # BatchNorm statistics included: everything but the head's weights is bit for bit the same
    assert changed == ["fc_log_variance.bias", "fc_log_variance.weight"]
    with pytest.raises(ConfigError, match="set init_from=CHECKPOINT"):
        load_train_config(None, [*base, "train_only=variance_head"])
    no_head = [*base, f"init_from={start}", "train_only=variance_head", "model.variance_head=false"]
    with pytest.raises(ConfigError, match=r"needs model\.variance_head=true"):
        load_train_config(None, no_head)
    with pytest.raises(ConfigError, match="train_only must be one of"):
        load_train_config(None, [*base, "train_only=backbone"])


def test_train_only_gives_a_model_trained_without_a_head_a_new_one(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [f"data.root={tiny_data}", *TINY, "optim.epochs=1"]
    fit(load_train_config(None, base), tmp_path / "headless", progress=False)
    start = tmp_path / "headless" / "best.pt"
    head = [*base, "model.variance_head=true", f"init_from={start}", "train_only=variance_head"]
    fit(load_train_config(None, head), tmp_path / "head", progress=False)
    assert "it has no variance head: training a new one" in capsys.readouterr().out
    before, after = load_checkpoint(start).model, load_checkpoint(tmp_path / "head" / "best.pt").model
    assert sorted(set(after) - set(before)) == ["fc_log_variance.bias", "fc_log_variance.weight"]
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert float(after["fc_log_variance.bias"].mean()) != -2.0  # trained from its initial bias
    # Only the head may be missing: a checkpoint without another weight is still refused.
    broken = load_checkpoint(start)
    del broken.model["fc_out.bias"]
    save_checkpoint(tmp_path / "broken.pt", broken)
    refused = [*head[:-2], f"init_from={tmp_path / 'broken.pt'}", "train_only=variance_head"]
    with pytest.raises(TrainingError, match="does not fit this config's model"):
        Trainer(load_train_config(None, refused), tmp_path / "refused", False, False)


def test_train_only_replaces_a_linear_head_by_a_perceptron(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [f"data.root={tiny_data}", *TINY, "optim.epochs=1", "model.variance_head=true"]
    fit(load_train_config(None, base), tmp_path / "linear", progress=False)
    start = tmp_path / "linear" / "best.pt"
    perceptron = [*base, "model.variance_head_hidden=8", f"init_from={start}"]
    # Without train_only the two heads do not fit: another head is a new model, not a warm start.
    with pytest.raises(TrainingError, match="does not fit this config's model"):
        Trainer(load_train_config(None, perceptron), tmp_path / "refused", False, False)
    fit(load_train_config(None, [*perceptron, "train_only=variance_head"]), tmp_path / "mlp", progress=False)
    assert "its variance head has another form" in capsys.readouterr().out
    before, after = load_checkpoint(start), load_checkpoint(tmp_path / "mlp" / "best.pt")
    head = sorted(key for key in after.model if key.startswith("fc_log_variance."))
    assert head == [f"fc_log_variance.{i}.{p}" for i in (0, 2) for p in ("bias", "weight")]
    assert after.model["fc_log_variance.0.weight"].shape == (8, after.model_config.hidden_dim)
    assert after.model_config.variance_head_hidden == 8
    kept = [key for key in before.model if key in after.model]
    assert all(torch.equal(before.model[key], after.model[key]) for key in kept)
    assert sorted(set(before.model) - set(after.model)) == ["fc_log_variance.bias", "fc_log_variance.weight"]
    # the exported graph and the node see the same log-variance contract: [B, S, 6], finite
    model = model_from_checkpoint(after)
    images = torch.rand(2, model.config.num_cameras, 3, model.config.image_height, model.config.image_width)
    _, _, log_variance = model.inference_outputs(images, model.random_masks(2, 3))
    assert log_variance is not None and log_variance.shape == (2, 3, 6)
    assert bool(torch.isfinite(log_variance).all())
    with pytest.raises(ConfigError, match="variance_head_hidden"):
        load_train_config(None, [*base, "model.variance_head_hidden=-1"])


def test_cpu_bf16_trains_the_backbone_in_bfloat16_where_the_cpu_has_it(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [f"data.root={tiny_data}", *TINY, "optim.epochs=1", "model.aux_odometry=true"]
    fit(load_train_config(None, base), tmp_path / "fp32", progress=False)
    assert "bfloat16" not in capsys.readouterr().out
    fit(load_train_config(None, [*base, "optim.cpu_bf16=true"]), tmp_path / "bf16", progress=False)
    printed = capsys.readouterr().out
    fp32, bf16 = (load_checkpoint(tmp_path / name / "last.pt") for name in ("fp32", "bf16"))
    assert np.isfinite(bf16.train_loss["total"])
    assert all(v.dtype != torch.bfloat16 for v in bf16.model.values())  # float32 weights
    differs = any(not torch.equal(fp32.model[k], v) for k, v in bf16.model.items())
    if cpu_has_native_bf16():
        assert "fit: backbone in bfloat16 (optim.cpu_bf16" in printed
        assert differs  # the same seed and data: only the precision can have changed the weights
    else:
        assert "optim.cpu_bf16 ignored: this CPU has no native bfloat16" in printed
        assert not differs


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_trains_without_nan(tiny_data: Path, tmp_path: Path, loss: str) -> None:
    config = load_train_config(None, [f"data.root={tiny_data}", *TINY, "optim.epochs=1", f"loss.name={loss}"])
    result = fit(config, tmp_path, progress=False)
    assert np.isfinite(load_checkpoint(tmp_path / "last.pt").train_loss["total"])
    assert result.best_metrics["median_translation_m"] < 20


def test_torchrun_two_processes_train_with_ddp(tiny_data: Path, tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("OMP_WAIT_POLICY", None)  # pose-train chooses how OpenMP threads wait
    env.pop("GOMP_SPINCOUNT", None)
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "pose_regressor_training.cli",
        "fit",
        "--out",
        str(tmp_path),
        "--quiet",
        f"data.root={tiny_data}",
        *TINY,
        "optim.epochs=2",
        "optim.time_budget_minutes=60",  # planned on the main process, sent to the other
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    # the main process alone says how it uses the cores; libgomp got the short spin count in time
    threads = [line for line in result.stdout.splitlines() if line.startswith("fit: threads:")]
    assert len(threads) == 1, result.stdout
    assert "torch intra-op 1," in threads[0] and "OpenMP spin count 1000," in threads[0], threads
    plans = [line for line in result.stdout.splitlines() if line.startswith("fit: time budget 60 min:")]
    assert len(plans) == 1 and "all 2 epochs fit" in plans[0], result.stdout
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint.epoch == 2
    model = model_from_checkpoint(checkpoint)
    assert torch.isfinite(model(torch.rand(1, 4, 3, 24, 32)).t).all()


def test_eval_writes_metrics_and_plots(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_train_config(None, [f"data.root={tiny_data}", *TINY, "optim.epochs=2"])
    fit(config, tmp_path, progress=False)
    evaluation = evaluate_checkpoint(tmp_path / "best.pt", split="test", mc_samples=8)
    paths = write_evaluation(evaluation, tmp_path / "eval")
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for key in (
        "median_translation_m",
        "median_rotation_deg",
        "mean_translation_m",
        "mean_rotation_deg",
        "pct_within_0.25m_2deg",
        "per_sequence",
        "uncertainty",
        "covariance_scale",
    ):
        assert key in metrics
    # the epoch best.pt holds: export checks the metrics it is given against the checkpoint
    assert metrics["frames"] == 20 and metrics["epoch"] == load_checkpoint(tmp_path / "best.pt").epoch
    u = metrics["uncertainty"]
    assert u["covariance_scale_fitted_on"] == "val" and u["calibration_in_sample"] is False
    val_stretches = u["calibration_stretches"]
    assert u["calibration_frames"] == 20 and val_stretches >= 1
    assert (u["calibration_held_out"] is None) == (val_stretches == 1)
    assert (
        set(u["mean_nees_after_blocks"]) == set(u["inside_95_ellipsoid"]) == {"6dof", "position", "rotation"}
    )
    assert u["mean_nees_after_blocks"]["6dof"] == pytest.approx(u["mean_nees_after"])
    assert len(u["reliability"]["levels"]) == len(u["reliability"]["6dof"]) == 19
    flag = u["uncertain_flag"]
    assert set(flag["suggested_parameters"]) == {"max_position_std", "max_rotation_std"}
    assert flag["auroc_uncertain_flag"] is None or 0.0 <= flag["auroc_uncertain_flag"] <= 1.0
    for bounds in (*u["spearman_interval_90"].values(), flag["auroc_uncertain_flag_interval_90"]):
        assert bounds is None or (len(bounds) == 2 and bounds[0] <= bounds[1])
    correlation = u["error_correlation"]  # the errors' integrated time along the trajectories
    assert correlation["frames"] is None or (
        correlation["suggested_covariance_inflation"] == max(1.0, correlation["frames"])
        and correlation["seconds"] > 0.0
    )
    baseline = metrics["retrieval_baseline"]
    assert baseline["frames"] == 20 and baseline["training_frames"] == 20
    assert {p.name for p in paths} == {
        "metrics.json",
        "trajectory.png",
        "error_cdf.png",
        "error_vs_std.png",
        "reliability.png",
    }
    assert all(p.stat().st_size > 10_000 for p in paths if p.suffix == ".png")
    # The command prints the new numbers; --no-baseline leaves the baseline out.
    args = ["eval-checkpoint", "--checkpoint", str(tmp_path / "best.pt"), "--mc-samples", "2"]
    assert train_cli.main([*args, "--out", str(tmp_path / "cli_eval")]) == 0
    printed = capsys.readouterr().out
    assert "inside 95% ellipsoid" in printed and "uncertain flag: AUROC" in printed
    assert "flagging 1% / 2% / 5% / 10% / 20% of these frames catches" in printed or (
        "no gross errors to catch" in printed
    )
    points = json.loads((tmp_path / "cli_eval" / "metrics.json").read_text())["uncertainty"][
        "uncertain_flag"
    ]["operating_points"]
    assert [point["share"] for point in points] == [0.01, 0.02, 0.05, 0.1, 0.2]
    cli_correlation = json.loads((tmp_path / "cli_eval" / "metrics.json").read_text())["uncertainty"][
        "error_correlation"
    ]
    assert ("needs covariance_inflation" in printed) == (cli_correlation["frames"] is not None)
    assert "spearman(pos std, err)" in printed and "(90%: " in printed
    assert "retrieval baseline (nearest training frame): median" in printed
    assert train_cli.build_parser().parse_args([*args, "--no-baseline"]).baseline is False
    # --flag-share 0.3: thresholds that flag 30% of the calibration frames, not 5%: lower ones
    assert train_cli.main([*args, "--no-baseline", "--flag-share", "0.3", "--out", str(tmp_path / "f")]) == 0
    capsys.readouterr()
    default, wider = (
        json.loads((tmp_path / name / "metrics.json").read_text())["uncertainty"]["uncertain_flag"]
        for name in ("cli_eval", "f")
    )
    assert (default["suggested_from_quantile"], wider["suggested_from_quantile"]) == (0.95, 0.7)
    for name in ("max_position_std", "max_rotation_std"):
        assert wider["suggested_parameters"][name] < default["suggested_parameters"][name]
    # --calib-split val,test fits on both splits' stretches; the test NEES is then in-sample, and the
    # held-out check scores each stretch under the calibration of the others
    assert (
        train_cli.main([*args, "--no-baseline", "--calib-split", "val,test", "--out", str(tmp_path / "vt")])
        == 0
    )
    printed = capsys.readouterr().out
    assert "calibration fitted on val,test (40 frames, " in printed and "in-sample" in printed, printed
    both = json.loads((tmp_path / "vt" / "metrics.json").read_text())["uncertainty"]
    assert both["covariance_scale_fitted_on"] == "val,test" and both["calibration_in_sample"] is True
    assert both["calibration_frames"] == 40 and both["calibration_stretches"] > val_stretches
    held_out = both["calibration_held_out"]
    assert held_out["blocks"] == both["calibration_stretches"] == held_out["folds"]
    assert len(held_out["mean_nees_per_fold"]) == held_out["folds"]
    assert np.isfinite(held_out["mean_nees"]) and 0.0 <= held_out["inside_95"] <= 1.0
    # a split with no frames is left out with a note; with none left, the evaluated split itself
    missing = evaluate_checkpoint(
        tmp_path / "best.pt", split="test", mc_samples=2, baseline=False, calibration_split="nosuch"
    )
    assert missing.metrics["uncertainty"]["covariance_scale_fitted_on"] == "test"
    assert missing.metrics["uncertainty"]["calibration_in_sample"] is True
    assert any(n.startswith("calibration split nosuch (") and "in-sample" in n for n in missing.skipped)
    # --calibration applies a given calibration instead of fitting one: the calibrated position
    # block is that calibration's times the raw one (plus the 1 mm floor), on another dataset too
    fitted = json.loads((tmp_path / "cli_eval" / "metrics.json").read_text())
    given = CovarianceScale(4.0, 0.5, 2.0, 1.0, 0.1, 1.0)
    (tmp_path / "given.json").write_text(json.dumps({"covariance_scale": given.as_mapping()}))
    given_args = [*args, "--no-baseline", "--calibration", str(tmp_path / "given.json")]
    assert train_cli.main([*given_args, "--out", str(tmp_path / "given_eval")]) == 0
    assert f"from {tmp_path / 'given.json'})" in capsys.readouterr().out
    applied = json.loads((tmp_path / "given_eval" / "metrics.json").read_text())
    assert applied["covariance_scale"] == given.as_mapping() != fitted["covariance_scale"]
    assert applied["uncertainty"]["covariance_scale_fitted_on"] == "given"
    assert applied["calibration_file"] == str((tmp_path / "given.json").resolve())

    def position_blocks(scale: CovarianceScale) -> np.ndarray:
        evaluation = evaluate_checkpoint(
            tmp_path / "best.pt", split="test", mc_samples=2, baseline=False, covariance_scale=scale
        )
        covs = np.stack([e.covariance for e in evaluation.estimates])
        return covs[:, :3, :3] - 1e-6 * np.eye(3)  # less the floor (1 mm)

    raw = position_blocks(CovarianceScale())
    raw_std = np.sqrt(np.trace(raw, axis1=1, axis2=2) / 3)
    # variances of 1e-12 and up stand well clear of the rounding of the 1e-6 floor (about 1e-22)
    assert raw_std.min() > 1e-6
    reference = float(np.median(raw_std))
    for exponent in (2.0, 3.0):
        shaped = position_blocks(CovarianceScale(4.0, 0.5, exponent, 1.0, reference, 1.0))
        factor = 4.0 * (raw_std / reference) ** (2 * (exponent - 1))
        np.testing.assert_allclose(shaped, raw * factor[:, None, None], rtol=1e-6, atol=1e-18)
    # a bad calibration file: exit 2 with one line naming it, and no evaluation written
    bad = tmp_path / "bad.json"
    for content, message in [
        ("{}", f"calibration file {bad} has no covariance_scale"),
        (
            '{"covariance_scale": {"position": 1, "rotation": 1, "position_exponent": 9, '
            '"position_reference_std": 0.1}}',
            f"calibration file {bad}: covariance_scale.position_exponent must be in [1.0, 4.0], got 9",
        ),
        ("[1, 2", f"calibration file {bad}"),
        (None, f"calibration file {tmp_path / 'missing.json'}"),
    ]:
        target = bad
        if content is None:
            target = tmp_path / "missing.json"
        else:
            bad.write_text(content)
        out = tmp_path / "refused_eval"
        assert train_cli.main([*args, "--calibration", str(target), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def test_camera_loss_equals_an_evaluation_of_the_same_frames_with_that_camera_black_on_disk(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fit(
        load_train_config(None, [f"data.root={tiny_data}", *TINY, "optim.epochs=1"]),
        tmp_path / "quad",
        progress=False,
    )
    checkpoint = tmp_path / "quad" / "best.pt"
    evaluation = evaluate_checkpoint(checkpoint, split="test", mc_samples=4, baseline=False, camera_loss=True)
    report = evaluation.metrics["camera_loss"]
    assert list(report) == ["front", "left", "back", "right"]
    # the same test frames with the left camera's image files black
    blind = tmp_path / "blind"
    shutil.copytree(tiny_data, blind)
    for png in (blind / "images" / "left").glob("*.png"):
        assert cv2.imwrite(str(png), np.zeros((48, 64, 3), np.uint8))
    on_disk = evaluate_checkpoint(checkpoint, blind, "test", mc_samples=4, baseline=False).metrics
    for key in ("median_translation_m", "median_rotation_deg", "mean_translation_m", "mean_rotation_deg"):
        assert report["left"][key] == pytest.approx(on_disk[key], rel=1e-12, abs=1e-12), key
    assert report["left"]["median_translation_m"] != evaluation.metrics["median_translation_m"]
    assert report["left"]["median_translation_m"] != report["front"]["median_translation_m"]
    for entry in report.values():
        assert entry["mean_nees"] > 0 and 0.0 <= entry["inside_95"] <= 1.0 and entry["position_std_ratio"] > 0
    # the command prints one line of it; without MC samples there are errors only
    args = ["eval-checkpoint", "--checkpoint", str(checkpoint), "--no-baseline", "--camera-loss"]
    assert train_cli.main([*args, "--mc-samples", "2", "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "camera loss, each camera black in every frame: front " in printed and "(NEES " in printed
    assert train_cli.main([*args, "--mc-samples", "0", "--out", str(tmp_path / "cli0")]) == 0
    deterministic = json.loads((tmp_path / "cli0" / "metrics.json").read_text())["camera_loss"]
    assert set(deterministic["back"]) >= {"median_translation_m"} and "mean_nees" not in deterministic["back"]
    # a one-camera model has no camera to lose: one line, exit 2
    mono = [f"data.root={tiny_data}", *TINY, "optim.epochs=1", "data.cameras=[front]"]
    fit(load_train_config(None, mono), tmp_path / "mono", progress=False)
    capsys.readouterr()
    mono_args = ["eval-checkpoint", "--checkpoint", str(tmp_path / "mono" / "best.pt"), "--camera-loss"]
    assert train_cli.main([*mono_args, "--out", str(tmp_path / "mono_eval")]) == 2
    assert capsys.readouterr().err == (
        "pose-train eval-checkpoint: error: --camera-loss blacks out one camera at a time: it needs a rig "
        "of 2 or more cameras, this model has 1\n"
    )


def test_one_pass_gives_the_mc_samples_and_the_deterministic_pose_and_splits_share_it(
    tiny_data: Path, tmp_path: Path
) -> None:
    config = load_train_config(None, [f"data.root={tiny_data}", *TINY, "optim.epochs=3"])
    fit(config, tmp_path, progress=False)
    checkpoint = load_checkpoint(tmp_path / "best.pt")
    model = model_from_checkpoint(checkpoint)
    frames = load_dataset(checkpoint.dataset.kind, tiny_data, "test").select_cameras(config.data.cameras)
    dataset = PoseDataset(frames, (model.config.image_width, model.config.image_height))
    cpu = torch.device("cpu")
    t, q, log_variance = predict_outputs(model, dataset, cpu, batch_size=8, mc_samples=5, seed=3)
    t1, q1, log_variance1, (t_det, q_det) = predict_with_deterministic(
        model, dataset, cpu, batch_size=8, mc_samples=5, seed=3
    )
    t0, q0 = predict(model, dataset, cpu, batch_size=8, mc_samples=0)
    assert t1.shape == t.shape == (len(dataset), 5, 3) and t_det.shape == (len(dataset), 3)
    # the same masks drawn in the same order; the ones mask is the deterministic pass
    np.testing.assert_allclose(t1, t, atol=1e-6)
    np.testing.assert_allclose(q1, q, atol=1e-6)
    assert (log_variance is None) == (log_variance1 is None)
    np.testing.assert_allclose(t_det, t0[:, 0], atol=1e-6)
    np.testing.assert_allclose(q_det, q0[:, 0], atol=1e-6)
    assert t.std(axis=1).max() > 1e-5  # the random masks differ from the ones mask by more than atol
    # evaluating val and test together predicts each once, with the numbers of one-split evaluations
    together = evaluate_checkpoint_splits(tmp_path / "best.pt", ("val", "test"), mc_samples=4, baseline=False)
    for split, evaluation in zip(("val", "test"), together, strict=True):
        alone = evaluate_checkpoint(tmp_path / "best.pt", split=split, mc_samples=4, baseline=False)
        assert json.dumps(evaluation.metrics, sort_keys=True) == json.dumps(alone.metrics, sort_keys=True)
    # a quicker, coarser evaluation on part of each split
    (coarse,) = evaluate_checkpoint_splits(tmp_path / "best.pt", ("test",), mc_samples=4, max_frames=10)
    assert coarse.metrics["frames"] == 10 < together[1].metrics["frames"] == 20


def test_track_tta_takes_the_yaw_step_from_the_rig_and_is_refused_for_a_mono_rig(
    tiny_data: Path, tmp_path: Path
) -> None:
    tta = ["model.rotation=rot6d", "model.track_tta=true", "augment.track=true", "optim.epochs=1"]
    config = load_train_config(None, [f"data.root={tiny_data}", *TINY, *tta])
    fit(config, tmp_path / "quad", progress=False)
    checkpoint = load_checkpoint(tmp_path / "quad" / "best.pt")
    assert checkpoint.model_config.track_tta is True
    assert checkpoint.model_config.track_yaw_step == pytest.approx(np.pi / 2)  # front, left, back, right
    model = model_from_checkpoint(checkpoint)
    torch.testing.assert_close(model.shift_index[1], torch.tensor([1, 2, 3, 0]))
    mono = load_train_config(None, [f"data.root={tiny_data}", *TINY, *tta, "data.cameras=[front]"])
    with pytest.raises(TrainingError, match=r"model\.track_tta: track augmentation needs a rig of 2 or more"):
        fit(replace(mono, augment=replace(mono.augment, track=False)), tmp_path / "mono", progress=False)


def test_fit_says_once_when_a_fixed_weight_run_no_longer_learns_from_the_images(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pose_regressor_training import collapse

    # the tiny data makes a few steps an epoch; the step threshold is for sets of real size
    monkeypatch.setattr(collapse, "FIRST_STEP_JUDGED", 0)
    # a learning rate of 1e-9 leaves the model where it started: no better than one pose for all
    overrides = [
        f"data.root={tiny_data}",
        *TINY,
        "optim.epochs=6",
        "eval_every=2",
        "optim.lr=1e-9",  # also: YAML 1.1 would read 1e-9 as text
        "data.tuple_skip=1",
        "loss.name=geometric_consistency",
        "loss.params={odom_weight: 10, s_t_init: 0.0, s_q_init: -2.3026, learn_weights: false}",
    ]
    fit(load_train_config(None, overrides), tmp_path, progress=False)
    printed = capsys.readouterr().out.splitlines()
    warnings = [line for line in printed if line.startswith("fit: warning: at epochs")]
    assert len(warnings) == 1 and warnings[0].startswith("fit: warning: at epochs 4 and 6 the val ")
    assert "Loss weights (fixed): t 1, q 10." in warnings[0]
    assert warnings[0].endswith("raise data.tuple_skip, or weight them less")


def _fake_epoch_clock(
    monkeypatch: pytest.MonkeyPatch, epoch_seconds: list[float], validation_seconds: float
) -> None:
    """The trainer's clock made of fake time: epoch k's training takes epoch_seconds[k - 1] (the
    last entry for later ones), a validation `validation_seconds`, everything else no time."""
    import types

    from pose_regressor_training import trainer as trainer_module

    now = [0.0]
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    run_epoch, validate = Trainer.run_epoch, Trainer.validate

    def timed_epoch(self: Trainer, epoch: int) -> dict[str, float]:
        now[0] += epoch_seconds[min(epoch, len(epoch_seconds) - 1)]
        return run_epoch(self, epoch)

    def timed_validation(self: Trainer, epoch: int) -> dict[str, float]:
        metrics = validate(self, epoch)
        now[0] += validation_seconds if metrics else 0.0
        return metrics

    monkeypatch.setattr(Trainer, "run_epoch", timed_epoch)
    monkeypatch.setattr(Trainer, "validate", timed_validation)


def test_a_time_budget_trains_the_epochs_that_fit_as_if_configured_so_and_resumes_the_plan(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = load_train_config(None, [f"data.root={tiny_data}", *TINY, "optim.epochs=2"])
    fit(plain, tmp_path / "plain", progress=False)
    # Epochs of 100 s in a budget of 510 s. The plan after epoch 1 guesses a validation at 150 s
    # (the tiny data's val split is as large as its train split): 100 + 150 + 100 + 150 s, so 2 of
    # the 4 epochs fit; the validations then take 10 s, but a plan is never lengthened.
    _fake_epoch_clock(monkeypatch, [100.0], 10.0)
    budgeted = load_train_config(
        None, [f"data.root={tiny_data}", *TINY, "optim.epochs=4", "optim.time_budget_minutes=8.5"]
    )
    capsys.readouterr()
    result = fit(budgeted, tmp_path / "budget", progress=False)
    out = capsys.readouterr().out
    assert (
        "fit: time budget 8.5 min: 2 of optim.epochs=4 epochs fit "
        "(an epoch takes 100.0 s, a validation 150.0 s (guessed), 100 s spent)"
    ) in out
    assert result.epochs == 2 and "epoch 2/2:" in out
    last = load_checkpoint(tmp_path / "budget" / "last.pt")
    assert last.epoch == 2 and last.resume is not None and last.resume.planned_epochs == 2
    assert last.metrics, "the last epoch of the plan validates"
    # The first epoch is all warmup, so the planned run is the run of optim.epochs=2, bit for bit.
    expected = load_checkpoint(tmp_path / "plain" / "last.pt").model
    for key, value in last.model.items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    # Cut after epoch 1 and resumed: the plan saved in last.pt goes on (4 epochs would not).
    fit(budgeted, tmp_path / "cut", progress=False, stop_after_epoch=1)
    assert load_checkpoint(tmp_path / "cut" / "last.pt").resume.planned_epochs == 2  # type: ignore[union-attr]
    fit(budgeted, tmp_path / "cut", resume=True, progress=False)
    resumed = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert resumed.epoch == 2
    for key, value in resumed.model.items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    # A budget spent before the first epoch ends: that one epoch, validated, is the run.
    capsys.readouterr()
    tight = replace(budgeted, optim=replace(budgeted.optim, time_budget_minutes=0.5))
    result = fit(tight, tmp_path / "tight", progress=False)
    assert result.epochs == 1 and result.best_epoch == 1 and result.best_metrics
    assert "fit: time budget 0.5 min: 1 of optim.epochs=4 epochs fit" in capsys.readouterr().out


def test_a_time_budget_cuts_the_plan_when_epochs_slow_down(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Epoch 1 takes 50 s and plans all 4 epochs in 510 s (50 + 4 x 75 s of guessed validation +
    # 3 x 50 s); epoch 2 takes 250 s, a validation 10 s: 310 + 10 + 2 x (150 + 10) > 510, so 3.
    _fake_epoch_clock(monkeypatch, [50.0, 250.0, 100.0], 10.0)
    config = load_train_config(
        None,
        [f"data.root={tiny_data}", *TINY, "optim.epochs=4", "optim.time_budget_minutes=8.5"],
    )
    result = fit(config, tmp_path, progress=False)
    out = capsys.readouterr().out
    assert "all 4 epochs fit (an epoch takes 50.0 s, a validation" in out
    assert "epochs ran slower than planned, so 3 instead of 4" in out
    assert result.epochs == 3 and load_checkpoint(tmp_path / "last.pt").epoch == 3
    history = json.loads((tmp_path / "history.json").read_text())
    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert history[-1]["seconds"] <= 510


def test_fit_says_when_the_time_budget_held_fewer_epochs_than_configured(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 6 ms: loading the data alone overruns it, so the first epoch is the run (real clock); the
    # overrides after --quiet count as overrides too
    args = ["fit", "--out", str(tmp_path), f"data.root={tiny_data}", *TINY, "--quiet", "optim.epochs=3"]
    assert train_cli.main([*args, "optim.time_budget_minutes=0.0001"]) == 0
    out = capsys.readouterr().out
    assert "fit: time budget 0.0001 min: 1 of optim.epochs=3 epochs fit" in out
    assert (
        "fit: trained 1 of optim.epochs=3 epochs, what the time budget of 0.0001 min held "
        "(that many without a budget: optim.epochs=1 optim.time_budget_minutes=0)"
    ) in out
    assert load_checkpoint(tmp_path / "best.pt").epoch == 1
    # a budget that is not a number >= 0 is refused with one line naming the key
    with pytest.raises(ConfigError, match=r"optim.time_budget_minutes must be in \[0, 1000000\], got -1"):
        load_train_config(None, [f"data.root={tiny_data}", "optim.time_budget_minutes=-1"])


def test_one_recording_goes_from_a_bag_to_a_bundle_with_the_readmes_commands(
    tiny_data: Path, tmp_path: Path
) -> None:
    """README, "From a recording to a running node": one bag, from-bag with its defaults, fit with
    synth_quad.yaml, eval-checkpoint with its defaults, export. from-bag put every set in train
    until 2026-12-07, and eval-checkpoint then stopped: "split 'test' of data/lab has no frames"."""
    import yaml

    train = [sys.executable, "-m", "pose_regressor_training.cli"]
    bag, data, run, bundle = (
        tmp_path / "bags" / "lab",
        tmp_path / "data",
        tmp_path / "run",
        tmp_path / "bundle",
    )
    rig = tmp_path / "lab_rig.yaml"
    rig.write_text(yaml.safe_dump(yaml.safe_load((tiny_data / "dataset.yaml").read_text())["rig"]))
    topics = [f"/{name}/image_raw" for name in ("front", "left", "back", "right")]
    steps = [
        ["to-bag", "--data", str(tiny_data), "--split", "train", "--out", str(bag)],  # the "recording"
        ["from-bag", "--bag", str(bag), "--rig", str(rig), "--gt-topic", "/ground_truth/pose",
         "--out", str(data), "--camera-topics", *topics, "--quiet"],
        ["fit", "--config", "training/configs/synth_quad.yaml", "--out", str(run), f"data.root={data}",
         "optim.epochs=1", *TINY, "--quiet"],
        ["eval-checkpoint", "--checkpoint", str(run / "best.pt")],
        ["export", "--checkpoint", str(run / "best.pt"), "--out", str(bundle)],
    ]  # fmt: skip
    outputs = []
    for step in steps:
        result = subprocess.run([*train, *step], capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, (step[0], result.stderr[-2000:])
        outputs.append(result.stdout)
    sets = len(load_dataset("folder", tiny_data, "train"))
    counts = yaml.safe_load((data / "dataset.yaml").read_text())["splits"]
    assert sum(counts.values()) == sets and min(counts.values()) > 0, counts
    assert f"(train {counts['train']}, val {counts['val']}, test {counts['test']})" in outputs[1], outputs[1]
    metrics = json.loads((run / "eval_heads_test" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["frames"] == counts["test"]
    assert metrics["uncertainty"]["covariance_scale_fitted_on"] == "val"
    assert (bundle / "bundle.yaml").is_file() and "(from " in outputs[4]

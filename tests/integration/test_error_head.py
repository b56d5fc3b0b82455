"""`pose-train error-head` and `model.error_head`: fold splits, the head's fit against known
answers, the command end to end (poses unchanged, variance added, stopped folds continued,
finished ones reused) and its refusals."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pose_regressor_training.checkpoint import load_checkpoint, model_from_checkpoint
from pose_regressor_training.cli import main
from pose_regressor_training.data.dataset import PoseDataset
from pose_regressor_training.data.sources import load_dataset
from pose_regressor_training.error_head import ErrorHeadFit, fit_error_head, residuals
from pose_regressor_training.error_head_command import FLAG_WORSE_BY, ranked_worse, variance_scores
from pose_regressor_training.errors import TrainingError
from pose_regressor_training.models import ModelConfig, build_model
from pose_regressor_training.models.model import MIN_LOG_VARIANCE, log_add_exp
from pose_regressor_training.predict import predict_outputs
from pose_regressor_training.train import fit
from pose_regressor_training.train_config import load_train_config, parse_fold
from pose_regressor_training.training_data import split_fold
from pose_regressor_training.typed_config import ConfigError
from tests.conftest import TINY_TRAINING


@pytest.fixture(scope="module")
def fold_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quad-rig dataset of 120 frames in trajectories of 10 (10 of them in train)."""
    from pose_regressor.rig import preset_rig
    from pose_regressor_training.synth.generate import SynthConfig, render_dataset

    out = tmp_path_factory.mktemp("folds") / "data"
    rig = preset_rig("quad", 64, 48)
    render_dataset(
        SynthConfig(out=out, rig=rig, frames=120, frames_per_trajectory=10, seed=2, progress=False)
    )
    return out


HEAD = [*TINY_TRAINING, "optim.epochs=2", "model.variance_head=true", "model.variance_head_hidden=8"]


def test_log_add_exp_is_the_log_of_the_summed_variances() -> None:
    a = torch.tensor([-16.0, -3.0, 0.0, 4.0, 30.0, -80.0])
    b = torch.tensor([4.0, -3.0, -7.5, 4.0, -30.0, -90.0])
    torch.testing.assert_close(log_add_exp(a, b), torch.logaddexp(a, b))
    assert torch.isfinite(log_add_exp(torch.tensor([1e4]), torch.tensor([-1e4]))).all()


def test_fold_splits_interleave_whole_trajectories(fold_data: Path) -> None:
    frames = load_dataset("folder", fold_data, "train")
    sequences = list(dict.fromkeys(f.sequence for f in frames.frames))
    held = [split_fold(frames, f"{k}/3")[1] for k in (1, 2, 3)]
    # every training frame is held out by exactly one fold, and a fold holds whole trajectories
    assert sorted(len(h) for h in held) and sum(len(h) for h in held) == len(frames)
    for k, fold in enumerate(held):
        assert [s for s in dict.fromkeys(f.sequence for f in fold.frames)] == sequences[k::3]
        kept = split_fold(frames, f"{k + 1}/3")[0]
        assert len(kept) + len(fold) == len(frames)
        assert not {f.sequence for f in kept.frames} & {f.sequence for f in fold.frames}
    assert len(sequences) >= 6
    with pytest.raises(TrainingError, match=r"has 3 trajectories, fewer than the 4 folds"):
        split_fold(
            frames.subset([i for i, f in enumerate(frames.frames) if f.sequence in sequences[:3]]), "1/4"
        )
    for bad in ("0/2", "3/2", "1/1", "a/b", "1/65", "1/2/3", "", " /2"):
        with pytest.raises(ValueError, match=r"data\.holdout_fold must be k/K"):
            parse_fold(bad)
    assert parse_fold("2/5") == (2, 5)


def test_fit_trains_without_the_held_out_fold_and_refuses_an_error_head(
    fold_data: Path, tmp_path: Path
) -> None:
    config = load_train_config(
        None, [f"data.root={fold_data}", *HEAD, "optim.epochs=1", "data.holdout_fold=2/2"]
    )
    fit(config, tmp_path / "fold", progress=False)
    frames = load_dataset("folder", fold_data, "train")
    kept, _ = split_fold(frames, "2/2")
    assert load_checkpoint(tmp_path / "fold" / "best.pt").dataset.train_frames == len(kept) < len(frames)
    with pytest.raises(ConfigError, match=r"data.holdout_fold must be k/K"):
        load_train_config(None, [f"data.root={fold_data}", "data.holdout_fold=3/2"])
    with pytest.raises(ConfigError, match=r"model.error_head is not trained by fit: .*pose-train error-head"):
        load_train_config(None, [f"data.root={fold_data}", *HEAD, "model.error_head=true"])
    with pytest.raises(ValueError, match=r"error_head .* needs variance_head"):
        ModelConfig(error_head=True)


def test_an_untrained_error_head_adds_nothing() -> None:
    config = ModelConfig(
        backbone="small_cnn",
        small_cnn_width=8,
        hidden_dim=16,
        image_width=32,
        image_height=24,
        variance_head=True,
    )
    torch.manual_seed(0)
    base = build_model(config).eval()
    with_head = build_model(ModelConfig(**{**config.__dict__, "error_head": True})).eval()
    with_head.load_state_dict(base.state_dict(), strict=False)
    x = torch.rand(2, 1, 3, 24, 32)
    with torch.no_grad():
        out, out_head = base(x), with_head(x)
    assert out.log_variance is not None and out_head.log_variance is not None
    torch.testing.assert_close(out_head.t, out.t)
    # exp(-16) added to variances of exp(-2)-ish: 1e-6 relative
    torch.testing.assert_close(out_head.log_variance, out.log_variance, atol=1e-5, rtol=0)
    assert with_head.fc_error_log_variance is not None
    assert float(with_head.fc_error_log_variance[2].bias.detach().max()) == MIN_LOG_VARIANCE  # type: ignore[index]


def test_the_head_learns_a_known_error_scale() -> None:
    """Residuals whose log-std is linear in feature 0 on position and constant on rotation: the
    fitted head finds the slope and level of the one and the level of the other."""
    rng = np.random.default_rng(0)
    n, shifts, dim = 4000, 2, 12
    features = rng.normal(size=(n, 1, dim)).repeat(shifts, axis=1).astype(np.float32) * 3.0 + 5.0
    log_std = (features[:, 0, 0] - 5.0) / 3.0 * 0.8  # std from e^-2.4 to e^2.4 m
    residual = np.zeros((n, 6))
    residual[:, :3] = rng.normal(size=(n, 3)) * np.exp(log_std)[:, None]
    residual[:, 3:] = rng.normal(size=(n, 3)) * 0.05
    config = ModelConfig(
        backbone="small_cnn", hidden_dim=dim, dropout=0.0, variance_head=True, error_head=True,
        error_head_hidden=16, image_width=32, image_height=24,
    )  # fmt: skip
    model = build_model(config)
    model.set_translation_stats(torch.zeros(3), torch.full((3,), 2.0))
    head = fit_error_head(model, features, residual, ErrorHeadFit(epochs=30))
    with torch.no_grad():
        raw = head(torch.from_numpy(features[:, 0])).numpy()  # standardization folded in: raw features
    position = raw[:, :3].mean(1) + 2 * math.log(2.0)  # back from t_std units to m^2
    slope, offset = np.polyfit(2 * log_std, position, 1)
    assert slope == pytest.approx(1.0, abs=0.1) and offset == pytest.approx(0.0, abs=0.15)
    np.testing.assert_allclose(np.median(raw[:, 3:]), 2 * math.log(0.05), atol=0.1)
    with pytest.raises(ValueError, match=r"features \[N, K, D\] and residual \[N, 6\]"):
        fit_error_head(model, features[:, 0], residual, ErrorHeadFit(epochs=1))


def test_error_head_command_end_to_end(
    fold_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_train_config(None, [f"data.root={fold_data}", *HEAD])
    fit(config, tmp_path / "run", progress=False)
    base_path, out = tmp_path / "run" / "best.pt", tmp_path / "eh"
    # a fold stopped after its first epoch is continued, not started again
    fold_config = load_train_config(None, [f"data.root={fold_data}", *HEAD, "data.holdout_fold=1/2"])
    fit(fold_config, out / "folds" / "fold1of2", progress=False, stop_after_epoch=1)
    command = ["error-head", "--checkpoint", str(base_path), "--out", str(out), "--quiet"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "continuing the stopped fold model" in printed and "fold 2/2: a model without" in printed
    assert load_checkpoint(out / "folds" / "fold1of2" / "last.pt").epoch == 2
    report = json.loads((out / "error_head.json").read_text())
    assert [f["fold"] for f in report["folds"]] == ["1/2", "2/2"]
    frames = load_dataset("folder", fold_data, "train")
    assert sum(f["held_out_sets"] for f in report["folds"]) == len(frames)
    assert set(report["validation_spearman"]) == {
        "position_before", "position_after", "rotation_before", "rotation_after"
    }  # fmt: skip
    gross = report["validation_gross_error_auroc"]  # 10 val frames: maybe none > 3x the median
    if gross:
        assert set(gross) == {*report["validation_spearman"], "gross_errors"}
        assert f"the variance finds the {gross['gross_errors']} gross errors (> 3x the median)" in printed
    else:
        assert "gross errors (> 3x the median)" not in printed

    base, combined = load_checkpoint(base_path), load_checkpoint(out / "best.pt")
    assert combined.model_config.error_head and not base.model_config.error_head
    assert sorted(set(combined.model) - set(base.model)) == [
        "fc_error_log_variance.0.bias", "fc_error_log_variance.0.weight",
        "fc_error_log_variance.2.bias", "fc_error_log_variance.2.weight",
    ]  # fmt: skip
    assert all(torch.equal(base.model[key], combined.model[key]) for key in base.model)
    test = PoseDataset(load_dataset("folder", fold_data, "test"), (32, 24), preload=False)
    device = torch.device("cpu")
    t0, q0, lv0 = predict_outputs(model_from_checkpoint(base), test, device)
    t1, q1, lv1 = predict_outputs(model_from_checkpoint(combined), test, device)
    np.testing.assert_array_equal(t0, t1)
    np.testing.assert_array_equal(q0, q1)
    assert lv0 is not None and lv1 is not None
    assert np.all(lv1 >= lv0 - 1e-6) and np.ptp(lv1 - lv0) > 1e-3  # a variance added, varying by frame

    # The head is what error_head.residuals and the fold models give: rerun it from the same folds.
    (out / "best.pt").unlink()
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert printed.count("reusing the finished fold model") == 2
    np.testing.assert_array_equal(
        load_checkpoint(out / "best.pt").model["fc_error_log_variance.2.bias"].numpy(),
        combined.model["fc_error_log_variance.2.bias"].numpy(),
    )
    # eval and export take it as any checkpoint (export checks ONNX Runtime against PyTorch)
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--mc-samples", "0", "--no-baseline"]) == 0
    assert main(["export", "--checkpoint", str(out / "best.pt"), "--out", str(tmp_path / "bundle")]) == 0
    capsys.readouterr()

    # refusals: one line, exit 2, nothing written
    assert main(command) == 2
    assert "best.pt exists; choose another --out" in capsys.readouterr().err
    assert main([*command[:4], str(tmp_path / "again"), "--quiet", "--checkpoint", str(out / "best.pt")]) == 2
    assert "already has an error head" in capsys.readouterr().err
    headless = load_train_config(None, [f"data.root={fold_data}", *TINY_TRAINING, "optim.epochs=1"])
    fit(headless, tmp_path / "headless", progress=False)
    assert (
        main(
            [
                "error-head",
                "--checkpoint",
                str(tmp_path / "headless" / "best.pt"),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "has no variance head" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # argparse's own one-line error
        main([*command[:4], str(tmp_path / "y"), "--folds", "1"])
    assert stop.value.code == 2
    assert "argument --folds: must be in [2, 64], got 1" in capsys.readouterr().err
    assert main([*command[:4], str(tmp_path / "z"), "--folds", "64"]) == 2
    assert "fewer than the 64 folds" in capsys.readouterr().err
    assert not (tmp_path / "x" / "best.pt").exists() and not (tmp_path / "z" / "best.pt").exists()
    # data of another rig: refused before a fold trains, nothing left in --out
    from pose_regressor.rig import preset_rig
    from pose_regressor_training.synth.generate import SynthConfig, render_dataset

    mono = tmp_path / "mono"
    render_dataset(SynthConfig(out=mono, rig=preset_rig("mono", 64, 48), frames=6, seed=3, progress=False))
    assert main([*command[:4], str(tmp_path / "m"), "--data", str(mono)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has cameras ['front'], the model was trained on ['front', 'left'" in err
    assert not (tmp_path / "m" / "folds").exists()
    # weights that do not fit the checkpoint's own config: one line naming the file, not torch's dump
    state = torch.load(out / "folds" / "fold1of2" / "best.pt", weights_only=True)
    state["model"].pop(next(iter(state["model"])))
    torch.save(state, tmp_path / "cut.pt")
    assert main(["error-head", "--checkpoint", str(tmp_path / "cut.pt"), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"checkpoint {tmp_path / 'cut.pt'} is damaged or incomplete" in err
    assert "Missing key(s)" in err


def test_a_worse_validation_ranking_is_named() -> None:
    ranking = {"position_before": 0.7, "position_after": 0.35, "rotation_before": 0.6, "rotation_after": 0.58}
    assert ranked_worse(ranking) == ["position"]
    assert ranked_worse({**ranking, "rotation_after": 0.5}) == ["position", "rotation"]
    assert ranked_worse({**ranking, "position_after": 0.66}) == [] and ranked_worse({}) == []
    # the gross-error AUROCs, by the flag's smaller margin: 0.03 less is named, 0.01 is not
    auroc = {"position_before": 0.90, "position_after": 0.87, "rotation_before": 0.89, "rotation_after": 0.88}
    assert ranked_worse(auroc, FLAG_WORSE_BY) == ["position"] and ranked_worse(auroc) == []


def test_variance_scores_known_answers() -> None:
    """Variances that order the errors exactly: Spearman 1 and AUROC 1; reversed: -1 and 0. The
    one frame above 3x the median is the gross error."""
    errors = np.array([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 9.0])
    residual = np.zeros((8, 6))
    residual[:, 0], residual[:, 3] = errors, errors / 100
    variance = np.repeat(errors[:, None] ** 2, 6, axis=1)
    ranking, gross = variance_scores(variance, residual)
    assert ranking == pytest.approx({"position": 1.0, "rotation": 1.0})
    assert gross == {"position": 1.0, "rotation": 1.0, "gross_errors": 1}
    ranking, gross = variance_scores(1 / variance, residual)
    assert ranking == pytest.approx({"position": -1.0, "rotation": -1.0})
    assert gross == {"position": 0.0, "rotation": 0.0, "gross_errors": 1}
    ranking, gross = variance_scores(variance[:7], residual[:7])  # no error above 3x the median
    assert ranking["position"] == pytest.approx(1.0) and gross == {}


def test_residuals_follow_the_variance_heads_convention() -> None:
    q_pred = np.array([[0.0, 0.0, 0.0, 1.0]])
    half = math.sqrt(0.5)
    q_true = np.array([[0.0, 0.0, half, half]])  # 90 deg about z
    r = residuals(np.array([[1.0, 2.0, 3.0]]), q_true, np.array([[0.5, 2.0, 1.0]]), q_pred)
    np.testing.assert_allclose(r, [[0.5, 0.0, 2.0, 0.0, 0.0, math.pi / 2]], atol=1e-12)


def test_a_signal_mid_fold_stops_with_one_line_and_keeps_the_fold(fold_data: Path, tmp_path: Path) -> None:
    # a base run whose recipe plans 400 epochs: its fold models take long enough to be stopped
    config = load_train_config(None, [f"data.root={fold_data}", *HEAD, "optim.epochs=400"])
    fit(config, tmp_path / "run", progress=False, stop_after_epoch=1)
    out = tmp_path / "eh"
    command = [sys.executable, "-m", "pose_regressor_training.cli", "error-head", "--quiet",
               "--checkpoint", str(tmp_path / "run" / "best.pt"), "--out", str(out)]  # fmt: skip
    last = out / "folds" / "fold1of2" / "last.pt"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pose-train error-head: ")
    assert "run the same pose-train error-head command again to continue" in lines[0]
    assert 1 <= load_checkpoint(last).epoch < 400 and not (out / "best.pt").exists()
    assert not (out / "folds" / "fold1of2" / "fold_done").exists()

"""Typed configs: YAML -> dataclasses, unknown keys and wrong types are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pose_regressor_training.train_config import load_train_config
from pose_regressor_training.typed_config import ConfigError


def test_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  backbone: small_cnn\noptim:\n  lr: 0.002\n")
    config = load_train_config(
        path, ["data.root=/data/x", "optim.epochs=3", "model.dropout=0.3", "loss.params={beta: 2}"]
    )
    assert config.model.backbone == "small_cnn"
    assert config.optim.lr == 0.002 and config.optim.epochs == 3
    assert config.data.root == "/data/x"
    assert config.model.dropout == 0.3
    assert config.loss.params == {"beta": 2}


def test_numbers_written_without_a_dot_before_the_exponent_are_numbers(tmp_path: Path) -> None:
    # PyYAML (YAML 1.1) reads 1e-4 as the text '1e-4'; users, YAML 1.2 and ROS 2 mean a number
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 5E-4\n  weight_decay: 1e-5\n")
    config = load_train_config(path, ["model.dropout=2.5e-1", "loss.params={beta: 1e1}"])
    assert config.optim.lr == 5e-4 and config.optim.weight_decay == 1e-5
    assert config.model.dropout == 0.25 and config.loss.params == {"beta": 10.0}
    assert load_train_config(None, ["optim.lr=1e-4"]).optim.lr == 1e-4
    with pytest.raises(ConfigError, match=r"optim\.lr: expected a number, got '1e'"):
        load_train_config(None, ["optim.lr=1e"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=1"], "unknown key optim.lrr; valid keys under optim: optimizer, lr"),
        (["optim.epochs=many"], "optim.epochs: expected an integer"),
        (["model.pretrained=1"], "model.pretrained: expected true or false"),
        (["model.fusion=tiles"], "fusion must be one of input, mosaic, late"),
        (["nonsense"], "must look like section.key=value"),
        (["optim.optimizer=sgd"], "optim.optimizer must be one of adam, adamw"),
    ],
)
def test_bad_values_name_their_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_train_config(None, overrides)


def test_unreadable_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_train_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_train_config(bad)


CONFIGS = sorted((Path(__file__).resolve().parents[2] / "training" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads_and_builds(path: Path) -> None:
    from dataclasses import replace

    from pose_regressor.rig import preset_rig
    from pose_regressor_training.losses import build_loss, required_tuple_length
    from pose_regressor_training.models import build_model
    from pose_regressor_training.rig_symmetry import track_shift_yaw

    config = load_train_config(path, ["data.root=/tmp/anywhere"])
    assert required_tuple_length(config.loss.name, config.loss.params) >= 1
    if config.loss.name != "reprojection":  # that one needs the dataset's camera
        build_loss(config.loss.name, config.loss.params, camera=None)
    # Pretrained weights cannot be downloaded here; the architecture is what this checks.
    rig = preset_rig("quad" if "quad" in path.stem else "mono")
    step = track_shift_yaw(rig) if config.model.track_tta else 0.0  # as fit sets it
    build_model(replace(config.model, pretrained=False, num_cameras=len(rig.cameras), track_yaw_step=step))


def test_synth_quad_is_the_default_input_fusion_model() -> None:
    config = load_train_config(CONFIGS[0].parent / "synth_quad.yaml")
    assert config.model.fusion == "input" and config.augment.track
    assert config.model.rotation == "rot6d" and config.model.track_tta
    # 768 units scored without dropout (docs/results.md, 2026-12-06)
    assert (config.model.hidden_dim, config.model.covariance) == (768, "heads")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.covariance=mc"], "covariance must be one of dropout, heads, got 'mc'"),
        (["model.covariance=heads"], "covariance heads .* needs variance_head or shift_variance"),
    ],
)
def test_model_covariance_is_checked(overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_train_config(None, ["data.root=x", *overrides])

"""training/experiments/unfamiliar_views.py end to end on a tiny untrained model (a smoke test)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pose_regressor.rig import preset_rig
from pose_regressor_training.checkpoint import Checkpoint, DatasetInfo, save_checkpoint
from pose_regressor_training.cli import main
from pose_regressor_training.models import ModelConfig, build_model
from pose_regressor_training.train_config import TrainConfig

pytestmark = pytest.mark.slow  # about 7 s alone, 35 s on a busy 2-core machine

SCRIPT = Path(__file__).resolve().parents[2] / "training" / "experiments" / "unfamiliar_views.py"


def test_the_script_scores_every_condition_and_the_excluded_region(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "train"
    synth = ["synth", "--rig", "mono", "--width", "16", "--height", "16", "--frames", "9", "--quiet"]
    synth += [
        "--frames-per-trajectory",  # the script's 6 frames a condition: three trajectories of 2
        "2",
        "--workers",
        "1",
        "--exclude-region",
        "x>1.5",
        "--out",
        str(data),
    ]
    assert main(synth) == 0
    model_config = ModelConfig(backbone="small_cnn", small_cnn_width=4, small_cnn_stages=2, hidden_dim=8)
    model_config = replace(model_config, image_width=16, image_height=16)
    torch.manual_seed(0)
    config = TrainConfig()
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(
        checkpoint,
        Checkpoint(
            model_config=model_config,
            model=build_model(model_config).state_dict(),
            rig=preset_rig("mono", 16, 16),
            config=replace(config, data=replace(config.data, root=str(data))),
            dataset=DatasetInfo("folder", str(data), "train", 3, "synthetic"),
        ),
    )
    spec = importlib.util.spec_from_file_location("unfamiliar_views", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # its dataclasses look their module up
    spec.loader.exec_module(script)
    out = tmp_path / "out"
    args = ["--checkpoint", str(checkpoint), "--out", str(out), "--frames", "6", "--mc-samples", "4"]
    assert script.main([*args, "--workers", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    names = ["nominal", "lights_off", "overexposed", "camera_covered", "box_moved", "excluded_region"]
    assert list(results["conditions"]) == names
    assert results["excluded_region"] == "x>1.5"
    nominal = results["conditions"]["nominal"]
    assert nominal["position_std_ratio"] == 1.0 or results["in_distribution_frames"] < nominal["frames"]
    assert all(0.0 <= row["auroc_position_std"] <= 1.0 for row in results["conditions"].values())
    # whether the covariance stays honest there: the share of truths inside its 95% ellipsoids
    for row in results["conditions"].values():
        assert 0.0 <= row["inside_95_position"] <= 1.0 and 0.0 <= row["inside_95_rotation"] <= 1.0
    assert "inside 95%: pos / rot |" in (out / "results.md").read_text()
    assert "| lights_off | 6 |" in (out / "results.md").read_text()
    assert (out / "preview.png").is_file()
    # The flag thresholds: eval's suggestions from val by default (what the bundle carries), the
    # in-distribution p95 on request, and a given one wins.
    assert results["thresholds"]["source"] == "eval's suggestion from val"
    reference = script.Scored(
        *(np.linspace(0.0, 1.0, 21) for _ in range(4)),
        np.zeros((21, 3)),
        np.ones(21, bool),
        np.ones(21, bool),
    )
    chosen = script._thresholds(
        argparse.Namespace(thresholds="p95", max_position_std=None, max_rotation_std=2.0),
        reference,
        {"max_position_std": 0.3, "max_rotation_std": 0.05},
    )
    assert chosen == {
        "max_position_std_m": pytest.approx(0.95),
        "max_rotation_std_deg": 2.0,
        "source": "given and in-distribution p95",
    }

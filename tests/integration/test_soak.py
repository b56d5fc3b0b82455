"""A one-minute soak in CI: `pose-regressor eval-node --loop --duration 60` on a 4-camera, 30 Hz bag.

The ten-minute run (`--duration 600`) is reported in docs/node.md ("Soak"); its limits are the same
(RSS growth < 5% after warm-up, latency p99 of the last minute within 20% of the first, no
dropped sets, the node alive at the end). Here the windows are 15 s, whose p99 on a shared
2-core machine is only a handful of samples away from the maximum, so the p99 comparison is
asserted against a bound that catches queueing (2x) rather than scheduler noise.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pose_regressor.bundle import BundleCamera
from pose_regressor.rig import preset_rig
from pose_regressor_training.synth.generate import SynthConfig, render_dataset
from tests.unit.bundle_fixtures import make_bundle

pytestmark = [pytest.mark.ros, pytest.mark.slow]
QUAD = ("front", "left", "back", "right")


def test_one_minute_soak_of_four_cameras_at_30_hz(tmp_path: Path, ros_env: dict[str, str]) -> None:
    bag = tmp_path / "quad.bag"
    render_dataset(
        SynthConfig(
            out=tmp_path / "data",
            rig=preset_rig("quad", 64, 48),
            frames=60,
            fps=30.0,
            seed=3,
            bag=bag,
            progress=False,
        )
    )
    cameras = tuple(BundleCamera(name, f"/{name}/image_raw", 64, 48) for name in QUAD)
    # dropout 0: the fixture graph's 4-unit head gives NaN when a mask drops every unit
    bundle = make_bundle(tmp_path / "bundle", cameras=cameras, input_width=32, input_height=24, dropout=0.0)
    out = tmp_path / "soak"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pose_regressor.cli",
            "eval-node",
            "--bag",
            str(bag),
            "--bundle",
            str(bundle.path),
            "--out",
            str(out),
            "--loop",
            "--duration",
            "60",
        ],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    soak = metrics["soak"]
    print(run.stdout, json.dumps(soak, indent=1))
    assert run.returncode in (0, 2), run.stderr  # 2: a soak check failed; which one is asserted below
    assert 58 <= soak["duration_s"] <= 62
    assert soak["checks"]["node_alive"] and soak["checks"]["rss_growth_ok"], soak
    # Keep-latest replaces a set when the engine is late; on a shared 2-core CI machine a scheduling
    # hiccup can cost one or two of the ~1,600 sets (the 10-minute soak in docs/node.md dropped none).
    assert soak["dropped_sets"] <= 0.002 * metrics["expected_sets"], soak
    assert soak["latency_ms_p99_last_window"] < 2 * soak["latency_ms_p99_first_window"], soak
    # ~30 loops of a 2 s bag (30 Hz less the 0.1 s between loops); every pose is matched to ground
    # truth through its loop's stamp shift
    assert metrics["expected_sets"] >= 25 * 58
    assert metrics["published"] >= 0.95 * metrics["expected_sets"]
    assert metrics["frames"] == metrics["published"] and metrics["stamps_match_inputs"]
    assert metrics["node_diagnostics_last"]["nonfinite_outputs"] == "0"
    assert (out / "soak.png").stat().st_size > 10_000

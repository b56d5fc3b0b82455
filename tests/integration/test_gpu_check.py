"""scripts/gpu_check.sh's CPU part, for real (no GPU here): the report files, the skipped GPU steps
with their reason, exit 0."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.ros
def test_gpu_check_quick_runs_its_cpu_part_and_reports_what_it_skipped(
    ros_env: dict[str, str], tmp_path: Path
) -> None:
    venv = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv"))
    env = {**ros_env, "VENV": str(venv if venv.is_dir() else ROOT / ".venv")}
    run = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_report.json").read_text())
    markdown = (tmp_path / "gpu_report.md").read_text()
    skipped = {s["step"]: s["reason"] for s in report["skipped"]}
    if report["machine"]["tensorrt_unavailable"]:  # no GPU: every TensorRT step says why
        assert "TensorRT plans FP32 and their parity (small)" in skipped
        assert "bench TensorRT" in skipped and "evaluate --backend tensorrt" in skipped
        assert all(reason for reason in skipped.values())
        assert "## Skipped steps" in markdown and "bench TensorRT:" in markdown
        assert "skipped: bench TensorRT:" in run.stdout
    parity = {(p["bundle"], p["engine"]): p for p in report["parity"]}
    reference = parity[("small", "torch reference (CPU)")]
    assert reference["pass"] and reference["translation_m_max"] <= 1e-3
    assert "log_variance_max" not in reference  # an MC-dropout bundle without a variance head
    # the graphs the recipes ship: no dropout (S = 1, or one row per member), log-variance checked too
    for name, rows in (("small_heads", 1), ("small_ensemble", 2)):
        row = parity[(name, "torch reference (CPU)")]
        assert row["pass"] and row["rows"] == rows, row
        assert 0.0 <= row["log_variance_max"] <= 1e-3 and row["translation_m_max"] <= 1e-3
    assert "| small_heads | torch reference (CPU) | 1 |" in markdown and "log-var max" in markdown
    cpu = [b for b in report["bench"] if b["engine"] == "onnxruntime CPU"]
    assert cpu and cpu[0]["T"] == 4 and cpu[0]["S32_total_ms"]["p50"] > 0 and cpu[0]["mc_cost_ratio"] > 0
    assert report["evaluate"]["exit_code"] == 0 and report["evaluate"]["output_rate_ratio"] > 0.5
    assert report["failures"] == []
    assert next(t["measure"] for t in report["targets"]).startswith("4-camera resnet18 224x224, S=32, FP16")
    assert "| measure | target | measured | result |" in run.stdout

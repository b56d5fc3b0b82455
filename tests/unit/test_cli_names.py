"""The evaluations have names a user cannot confuse; the old names still work and say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from pose_regressor import cli
from pose_regressor_training import cli as train_cli


def test_the_old_evaluate_command_still_works_and_says_it_is_deprecated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = tmp_path / "junk.mcap"
    bag.write_bytes(b"not a bag")
    code = cli.main(["evaluate", "--bag", str(bag), "--bundle", str(tmp_path), "--out", str(tmp_path / "o")])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2
    assert lines[0] == "pose-regressor evaluate is deprecated: use pose-regressor eval-node (same arguments)"
    assert lines[1].startswith(f"pose-regressor eval-node: error: cannot read bag {bag}: ")
    assert len(lines) == 2


def test_the_old_pose_train_eval_command_still_works_and_says_it_is_deprecated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "runs" / "best.pt"
    code = train_cli.main(["eval", "--checkpoint", str(missing), "--mc-samples", "101"])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2
    assert lines[0] == "pose-train eval is deprecated: use pose-train eval-checkpoint (same arguments)"
    assert lines[1].startswith("pose-train eval-checkpoint: error: ") and str(missing) in lines[1]
    assert len(lines) == 2

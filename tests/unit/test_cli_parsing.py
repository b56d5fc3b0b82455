"""`pose-train` reads a command line the way users type it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pose_regressor_training.cli import parse_arguments


def test_fit_overrides_may_follow_options(tmp_path: Path) -> None:
    args = parse_arguments(
        ["fit", "--out", str(tmp_path), "data.root=D", "--quiet", "optim.epochs=2", "seed=1"]
    )
    assert args.quiet and args.overrides == ["data.root=D", "optim.epochs=2", "seed=1"]
    args = parse_arguments(["fit", "data.root=D", "--out", str(tmp_path), "optim.epochs=2"])
    assert args.out == tmp_path and args.overrides == ["data.root=D", "optim.epochs=2"]


@pytest.mark.parametrize(
    ("late", "named"),
    [(["--bogus"], "--bogus"), (["optim.epochs=2", "stray"], "optim.epochs=2 stray")],
)
def test_what_is_neither_an_option_nor_an_override_is_still_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], late: list[str], named: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_arguments(["fit", "--out", str(tmp_path), "data.root=D", "--quiet", *late])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"pose-train: error: unrecognized arguments: {named} (see pose-train --help)\n"


def test_commands_without_overrides_take_no_stray_key_value_words(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_arguments(["eval-checkpoint", "--checkpoint", "x.pt", "optim.epochs=2"])
    assert "unrecognized arguments: optim.epochs=2" in capsys.readouterr().err


def test_an_out_with_dot_dot_is_the_folder_it_names(tmp_path: Path) -> None:
    from pose_regressor.arguments import output_folder

    (tmp_path / "o" / "e" / "f").mkdir(parents=True)
    # replacing "o/e/f/.." by a rename fails (EBUSY) only after the work: it is o/e
    assert output_folder(str(tmp_path / "o" / "e" / "f" / "..")) == (tmp_path / "o" / "e").resolve()
    assert output_folder("runs/a") == Path("runs/a")  # others are kept as given (relative)


@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
def test_a_distance_variance_out_of_range_names_the_argument(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_arguments(["export", "--checkpoint", "c.pt", "--out", "b", "--distance-variance", value])
    assert exited.value.code == 2
    assert f"argument --distance-variance: must be from 0 to 1e+06, got {value}" in capsys.readouterr().err

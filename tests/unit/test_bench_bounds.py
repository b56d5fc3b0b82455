"""Issue 14, item 9, robot side: bundle.yaml sizes and counts and `pose-regressor bench` arguments have
upper bounds. The real `pose-regressor bench` runs in a subprocess on bundles written here; each bad
one is refused at once with one line naming the field or argument and its bound."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pose_regressor import bench as bench_module
from pose_regressor.bench import run_bench, write_json
from pose_regressor.bundle import (
    MAX_CAMERAS,
    MAX_HIDDEN_DIM,
    MAX_IMAGE_SIDE,
    MAX_INPUT_SIDE,
    MAX_MC_SAMPLES,
    BundleCamera,
    BundleError,
    ModelBundle,
    load_bundle,
    write_bundle,
)
from tests.unit.bundle_fixtures import make_bundle

ROBOT_CLI = [sys.executable, "-m", "pose_regressor.cli"]


def bench(bundle: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [*ROBOT_CLI, "bench", "--bundle", str(bundle), "--backend", "onnxruntime", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def assert_one_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr == f"pose-regressor bench: error: {message}\n"


def cameras(count: int, width: int, height: int) -> tuple[BundleCamera, ...]:
    return tuple(BundleCamera(f"c{k}", f"/c{k}/image_raw", width, height) for k in range(count))


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    return make_bundle(tmp_path_factory.mktemp("bench_bounds") / "good")


def test_bundle_with_a_huge_camera_is_refused_before_bench_allocates(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", cameras=cameras(2, 10**7, 10**7))
    started = time.monotonic()
    result = bench(bundle.path)
    assert_one_line(
        result, f"{bundle.yaml_path}: cameras[0].width must be in [1, {MAX_IMAGE_SIDE}], got 10000000"
    )
    assert time.monotonic() - started < 30


def test_bundle_with_absurd_mc_samples_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", mc_samples=10**9)
    assert_one_line(
        bench(bundle.path), f"{bundle.yaml_path}: model.mc_samples must be in [1, 256], got 1000000000"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"cameras": cameras(MAX_CAMERAS + 1, 16, 12)},
            f"cameras may list at most {MAX_CAMERAS} cameras, got 17",
        ),
        ({"hidden_dim": MAX_HIDDEN_DIM + 1}, f"model.hidden_dim must be in [1, {MAX_HIDDEN_DIM}], got 16385"),
        ({"input_width": MAX_INPUT_SIDE + 1}, f"input.width must be in [1, {MAX_INPUT_SIDE}], got 4097"),
        ({"covariance_scale": 1e9}, "covariance_scale must be in (0.0, 1e+06], got 1000000000.0"),
        (
            {"cameras": cameras(16, 16, 12), "input_width": 4096, "input_height": 4096},
            "the images input (16 cameras x 4096 x 4096 x 3) would take 805306368 bytes per camera set; "
            "at most 268435456 bytes",
        ),
    ],
)
def test_other_bundle_bounds(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    bundle = replace(make_bundle(tmp_path / "b"), **fields)
    write_bundle(bundle)  # bundle.yaml only: the writer checks nothing, the loader everything
    with pytest.raises(BundleError) as caught:
        load_bundle(bundle.path)
    assert str(caught.value) == f"{bundle.yaml_path}: {message}"


def test_oversized_bundle_yaml_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    with bundle.yaml_path.open("a") as handle:
        handle.write("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(
        BundleError, match=r"bundle.yaml has \d+ bytes; a bundle.yaml may have at most 1048576$"
    ):
        load_bundle(bundle.path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--mc-samples", "100000"],
            f"mc_samples must be >= 2 to measure MC-dropout cost and <= {MAX_MC_SAMPLES}, got 100000",
        ),
        (["--threads", "2000"], "threads must be an integer in [0, 256] (0: default), got 2000"),
        (
            ["--repeats", "100000000"],
            "repeats must be >= 1 and <= 10000, warmup >= 0 and <= 1000; got 100000000 and 5",
        ),
    ],
)
def test_absurd_bench_arguments_are_refused_at_once(
    good: ModelBundle, extra: list[str], message: str
) -> None:
    started = time.monotonic()
    assert_one_line(bench(good.path, *extra), message)
    assert time.monotonic() - started < 30


def test_an_ensemble_sample_count_the_node_refuses_is_refused_before_timing(tmp_path: Path) -> None:
    # two members without dropout: each gives one pose, so S is 2 (eval-folder and the node say so)
    bundle = make_bundle(tmp_path / "b", ensemble_members=2, dropout=0.0, mc_samples=2)
    assert_one_line(
        bench(bundle.path, "--mc-samples", "3", "--repeats", "10000"),
        "mc_samples: 3 samples for an ensemble of 2 models without dropout; each gives one pose, so use 2 "
        "(the bundle's mc_samples: 2)",
    )


@pytest.mark.parametrize("where", ["folder", "under_a_file"])
def test_a_json_path_that_cannot_be_written_is_refused_before_the_run(
    good: ModelBundle, tmp_path: Path, where: str
) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    target, problem = {
        "folder": (tmp_path, f"{tmp_path} is a folder; name a file (e.g. {tmp_path / 'bench.json'})"),
        "under_a_file": (
            file / "bench.json",
            f"{file} is a file, so {file / 'bench.json'} cannot be written; name a file",
        ),
    }[where]
    result = bench(good.path, "--repeats", "10000", "--json", str(target))  # minutes, were it run
    assert_one_line(result, f"argument --json: {problem} (see pose-regressor bench --help)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_camera_images_beyond_the_bench_limit_are_refused(tmp_path: Path) -> None:
    # A valid bundle (cameras up to 16384 px are legal), whose random camera sets would take 12.9 GB.
    bundle = make_bundle(tmp_path / "b", cameras=cameras(16, 16384, 16384))
    result = bench(bundle.path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        f"pose-regressor bench: error: {bundle.yaml_path}: one camera set (c0 16384x16384"
    )
    assert result.stderr.endswith(
        "takes 12884901888 bytes; bench generates at most 1073741824 bytes of images per set\n"
    )


def test_a_long_bench_reports_progress_on_stderr(
    good: ModelBundle, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_module, "PROGRESS_EVERY_S", 0.0)  # every run counts as long here
    run_bench(good, backend="onnxruntime", mc_samples=2, repeats=3, warmup=1, settle_s=0)
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("bench: ") and "repetitions" in line for line in lines)
    assert lines[0].startswith("bench: 1/4 repetitions (25%)")
    run_bench(good, backend="onnxruntime", mc_samples=2, repeats=3, warmup=1, settle_s=0, quiet=True)
    assert capsys.readouterr().err == ""


def test_json_is_written_whole_or_not_at_all(good: ModelBundle, tmp_path: Path) -> None:
    result = run_bench(good, backend="onnxruntime", mc_samples=2, repeats=1, warmup=0, settle_s=0, quiet=True)
    target = write_json(result, tmp_path / "out" / "bench.json")
    assert target.read_text().startswith("{") and sorted(p.name for p in target.parent.iterdir()) == [
        "bench.json"
    ]


def test_ctrl_c_during_bench_is_one_line_and_exit_130(good: ModelBundle) -> None:
    import signal

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pose_regressor.cli",
            "bench",
            "--bundle",
            str(good.path),
            "--repeats",
            "10000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3.0)  # imports done, timing under way
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("bench: ")]
    assert lines == ["pose-regressor bench: interrupted (SIGINT)"], err

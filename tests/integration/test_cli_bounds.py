"""Issue 14, items 5, 6, 8 and 9: the real `pose-train` command on real bad input.

Each case below runs `pose-train` (as `python -m pose_regressor_training.cli`) in a subprocess on a
bad config, dataset folder, argument or a full disk made in the test, and expects exit 2 with ONE
line on stderr that names the key, file or argument and what is wrong: no traceback, and nothing
left behind. Starting `pose-train fit` costs ~7 s of CPU in imports (mostly `import roma`, which
imports torch._dynamo), so the cases start together (3 at a time) in one module fixture and each
test checks its own result; a few cases that take the same path through the command as one of
those run `main` in this process instead.

The full disk (item 8) is a real one: a tmpfs just too small for the next checkpoint when this
process may mount one (root, CAP_SYS_ADMIN), else a file-size limit (RLIMIT_FSIZE), which makes
the same write fail with EFBIG instead of ENOSPC. `synth` and `export` meet a file-size limit
(EFBIG) while writing, to show that a failure half way leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from pose_regressor.rig import preset_rig
from pose_regressor_training.checkpoint import load_checkpoint
from pose_regressor_training.cli import main
from pose_regressor_training.data.folder import read_frames
from pose_regressor_training.synth import generate
from pose_regressor_training.synth.generate import SynthConfig, render_dataset
from tests.conftest import TINY_TRAINING
from tests.integration.startup_signal import interrupt_while_importing

CLI = [sys.executable, "-m", "pose_regressor_training.cli"]
TIMEOUT = 120


@dataclass
class Case:
    """One command line; `then` runs after it in the same worker (a rerun that depends on it)."""

    argv: list[str]
    preexec: Callable[[], None] | None = None
    then: list[str] | None = None
    watch: Path | None = None  # record what of this path (and its hidden siblings) the first run left


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    then: subprocess.CompletedProcess[str] | None = None
    left: list[str] = field(default_factory=list)


@dataclass
class Setup:
    root: Path
    data: Path
    run: Path  # a finished 1-epoch run of the tiny model on `data`
    paths: dict[str, Path] = field(default_factory=dict)
    full_disk: str = ""  # "tmpfs" or "rlimit"
    last_digest: str = ""  # sha256 of the last.pt that the full disk must leave as it was
    outcomes: dict[str, Outcome] = field(default_factory=dict)


def run_case(case: Case) -> Outcome:
    started = time.monotonic()
    first = subprocess.run(
        case.argv, capture_output=True, text=True, timeout=TIMEOUT, check=False, preexec_fn=case.preexec
    )
    left = []
    if case.watch is not None:
        names = (case.watch.name, f".{case.watch.name}.")
        left = sorted(p.name for p in case.watch.parent.iterdir() if p.name.startswith(names))
    then = None
    if case.then is not None:
        then = subprocess.run(case.then, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    return Outcome(first.returncode, first.stdout, first.stderr, time.monotonic() - started, then, left)


def run_in_process(argv: list[str]) -> Outcome:
    """`main` on the arguments of a subprocess case (after `python -m MODULE`), stderr captured."""
    started = time.monotonic()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv[len(CLI) :])
    return Outcome(code, out.getvalue(), err.getvalue(), time.monotonic() - started)


def fit_args(out: Path, data: Path, *extra: str, resume: bool = False) -> list[str]:
    options = ["--out", str(out), "--quiet", *(["--resume"] if resume else [])]
    return [*CLI, "fit", *options, f"data.root={data}", *TINY_TRAINING, *extra]


def copy_data(data: Path, dest: Path) -> Path:
    shutil.copytree(data, dest)
    return dest


def set_row(csv: Path, line: int, **values: str) -> None:
    lines = csv.read_text().splitlines()
    header = lines[0].split(",")
    fields = lines[line - 1].split(",")
    for column, value in values.items():
        fields[header.index(column)] = value
    lines[line - 1] = ",".join(fields)
    csv.write_text("\n".join(lines) + "\n")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ a full disk


def mount_tmpfs(directory: Path, size: int) -> bool:
    """Mount a tmpfs of `size` bytes on `directory`; False where this process may not."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def full_disk_case(setup: Setup) -> Case:
    """A resume of `setup.run` whose next checkpoint write meets a full disk (or a file-size limit)."""
    size = (setup.run / "last.pt").stat().st_size
    run = setup.root / "full" / "run"
    run.parent.mkdir()
    used = sum(p.stat().st_size for p in setup.run.iterdir())
    if mount_tmpfs(run.parent, used + size // 2):  # room for what is there and half a checkpoint
        setup.full_disk = "tmpfs"
        preexec = None
    else:
        setup.full_disk = "rlimit"  # any file over half a checkpoint: EFBIG

        def preexec() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    shutil.copytree(setup.run, run)
    setup.paths["full_run"] = run
    setup.last_digest = digest(run / "last.pt")
    return Case(fit_args(run, setup.data, "optim.epochs=2", resume=True), preexec)


# ---------------------------------------------------------------------------------- fixture


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("bounds")
    data = root / "data"
    render_dataset(SynthConfig(out=data, rig=preset_rig("mono", 32, 24), frames=30, seed=2, progress=False))
    run = root / "run"
    assert (
        main(["fit", "--out", str(run), "--quiet", f"data.root={data}", *TINY_TRAINING, "optim.epochs=1"])
        == 0
    )
    s = Setup(root, data, run)
    cases: dict[str, Case] = {}

    # item 5: configs
    deep = root / "deep.yaml"
    deep.write_text("optim: " + "[" * 5000 + "]" * 5000 + "\n")
    s.paths["deep"] = deep
    cases["min_lr_ratio"] = Case(fit_args(root / "r_lr", data, "optim.min_lr_ratio=-5"))
    cases["eval_every"] = Case(fit_args(root / "r_eval", data, "eval_every=0"))
    cases["deep_config"] = Case([*CLI, "fit", "--config", str(deep), "--out", str(root / "r_deep")])

    # item 6: dataset folders
    zero = copy_data(data, root / "zero_q")
    set_row(zero / "frames.csv", 4, qx="0", qy="0", qz="0", qw="0")
    dup = copy_data(data, root / "dup")
    index_on_line_3 = (dup / "frames.csv").read_text().splitlines()[2].split(",")[0]
    set_row(dup / "frames.csv", 7, index=index_on_line_3)
    s.paths["dup_index"] = Path(index_on_line_3)  # (a name, not a path: the duplicated index)
    bad_yaml = copy_data(data, root / "bad_yaml")
    (bad_yaml / "dataset.yaml").write_text("format: pose_regressor_dataset\nversion: [1\n")
    deep_yaml = copy_data(data, root / "deep_yaml")
    (deep_yaml / "dataset.yaml").write_text("format: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n")
    no_rig = copy_data(data, root / "no_rig")
    meta = yaml.safe_load((no_rig / "dataset.yaml").read_text())
    del meta["rig"]
    (no_rig / "dataset.yaml").write_text(yaml.safe_dump(meta))
    latin1 = copy_data(data, root / "latin1")
    (latin1 / "dataset.yaml").write_bytes(
        (latin1 / "dataset.yaml").read_bytes().replace(b"provenance:", b"# r\xe9sum\xe9\nprovenance:")
    )
    for name, folder in [
        ("zero_quaternion", zero),
        ("duplicate_index", dup),
        ("invalid_yaml", bad_yaml),
        ("deep_yaml", deep_yaml),
        ("missing_rig", no_rig),
        ("not_utf8", latin1),
    ]:
        s.paths[name] = folder
        cases[name] = Case(fit_args(root / f"r_{name}", folder))
    # Cases that take the same path through the command as a subprocess case above (eval_every as
    # min_lr_ratio; the other dataset.yaml forms as not_utf8) run `main` in this process: a
    # `pose-train fit` subprocess costs ~7 s of CPU.
    for name in ("eval_every", "invalid_yaml", "deep_yaml", "missing_rig"):
        s.outcomes[name] = run_in_process(cases.pop(name).argv)

    # item 8: a full disk while checkpointing
    cases["disk_full"] = full_disk_case(s)

    # item 9: absurd arguments
    synth = [*CLI, "synth", "--rig", "mono", "--width", "32", "--height", "24", "--quiet"]
    for name, fps in [("fps_inf", "inf"), ("fps_nan", "nan"), ("fps_tiny", "1e-12")]:
        cases[name] = Case([*synth, "--out", str(root / name), "--fps", fps])
    s.paths["synth_again"] = root / "synth_again"

    def tiny_files() -> None:  # no file may grow past 1000 bytes: the first PNG fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    cases["synth_again"] = Case(
        [*synth, "--out", str(root / "synth_again"), "--frames", "3", "--workers", "1"],
        preexec=tiny_files,
        then=[*synth, "--out", str(root / "synth_again"), "--frames", "3"],
        watch=root / "synth_again",
    )
    cases["export_mc"] = Case(
        [
            *CLI,
            "export",
            "--checkpoint",
            str(run / "last.pt"),
            "--out",
            str(root / "bundle"),
            "--mc-samples",
            "1000000",
        ]
    )

    def small_files() -> None:  # model.onnx is larger: EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    export = [*CLI, "export", "--checkpoint", str(run / "last.pt"), "--out", str(root / "bundle_full")]
    cases["export_full"] = Case(export, preexec=small_files)
    try:
        with ThreadPoolExecutor(3) as pool:
            futures = {name: pool.submit(run_case, case) for name, case in cases.items()}
            s.outcomes.update({name: future.result() for name, future in futures.items()})
        yield s
    finally:
        if s.full_disk == "tmpfs":
            subprocess.run(["umount", str(root / "full")], check=False)


def one_line_error(outcome: Outcome, command: str) -> str:
    """The message of the single stderr line `pose-train COMMAND: error: MESSAGE` (exit 2)."""
    assert outcome.returncode == 2, (outcome.stdout, outcome.stderr)
    assert "Traceback" not in outcome.stderr
    assert outcome.stderr.count("\n") == 1, outcome.stderr
    prefix = f"pose-train {command}: error: "
    assert outcome.stderr.startswith(prefix), outcome.stderr
    return outcome.stderr[len(prefix) : -1]


# ------------------------------------------------------------------------------- item 5


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("min_lr_ratio", "optim.min_lr_ratio must be in [0, 1], got -5.0"),
        ("eval_every", "eval_every must be in [1, 100000], got 0"),
    ],
)
def test_out_of_range_config_values_are_refused(setup: Setup, case: str, message: str) -> None:
    assert one_line_error(setup.outcomes[case], "fit") == message
    assert not (setup.root / f"r_{case.split('_')[0]}").exists()  # no run folder was made


def test_deeply_nested_config_file_is_named(setup: Setup) -> None:
    message = one_line_error(setup.outcomes["deep_config"], "fit")
    assert message == f"config {setup.paths['deep']} is nested too deeply (at most 10 levels)"


# ------------------------------------------------------------------------------- item 6


def test_all_zero_quaternion_is_rejected_at_load_naming_file_and_row(setup: Setup) -> None:
    csv = setup.paths["zero_quaternion"] / "frames.csv"
    message = one_line_error(setup.outcomes["zero_quaternion"], "fit")
    assert message == f"{csv}:4: the quaternion (qx, qy, qz, qw) = (0, 0, 0, 0) has norm 0, not 1"
    assert not (setup.root / "r_zero_quaternion").exists()


def test_duplicate_index_is_refused_naming_file_and_index(setup: Setup) -> None:
    csv = setup.paths["duplicate_index"] / "frames.csv"
    index = setup.paths["dup_index"].name
    message = one_line_error(setup.outcomes["duplicate_index"], "fit")
    assert (
        message == f"{csv}:7: index {index} appears again (first on line 3); every frame needs its own index"
    )


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        (
            "invalid_yaml",
            r"dataset file {meta} is not valid YAML: expected ',' or ']', but got .* at line 3, column 1",
        ),
        ("deep_yaml", r"dataset file {meta} is nested too deeply \(at most 10 levels\)"),
        ("missing_rig", r"{meta} has no rig \(the cameras, their intrinsics and T_base_cam\)"),
        ("not_utf8", r"dataset file {meta} is not UTF-8 text \(at byte \d+: invalid continuation byte\)"),
    ],
)
def test_broken_dataset_yaml_is_one_line_naming_it(setup: Setup, case: str, pattern: str) -> None:
    meta = re.escape(str(setup.paths[case] / "dataset.yaml"))
    message = one_line_error(setup.outcomes[case], "fit")
    assert re.fullmatch(pattern.format(meta=meta), message), message


# ------------------------------------------------------------------------------- item 8


def test_disk_full_while_checkpointing_keeps_last_pt_and_removes_the_temporary(setup: Setup) -> None:
    run = setup.paths["full_run"]
    message = one_line_error(setup.outcomes["disk_full"], "fit")
    reason, fix = (
        ("No space left on device (ENOSPC)", "free some space")
        if setup.full_disk == "tmpfs"
        else ("File too large (EFBIG)", "fix that")
    )
    print(f"full disk made with {setup.full_disk}: {message}")
    folder, last = re.escape(str(run)), re.escape(str(run / "last.pt"))
    match = re.fullmatch(
        rf"could not write checkpoint {folder}/(best|last)\.pt: {re.escape(reason)} at the end of epoch 2/2; "
        rf"its temporary file was removed; the previous checkpoint {last} "
        rf"\(epoch 1\) is intact(, and so is best\.pt from before)?; {fix}, then resume with: "
        r"pose-train fit --out .* --resume .*",
        message,
    )
    assert match, message
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "history.json", "last.pt"]  # no .tmp left
    assert digest(run / "last.pt") == setup.last_digest
    assert load_checkpoint(run / "last.pt").epoch == 1  # loads; holds epoch 1


# ------------------------------------------------------------------------------- item 9


@pytest.mark.parametrize("case", ["fps_inf", "fps_nan", "fps_tiny"])
def test_absurd_fps_is_refused_at_once(setup: Setup, case: str) -> None:
    value = {"fps_inf": "inf", "fps_nan": "nan", "fps_tiny": "1e-12"}[case]
    assert one_line_error(setup.outcomes[case], "synth") == f"--fps must be in [0.1, 1000] Hz, got {value}"
    assert setup.outcomes[case].seconds < 30
    assert not (setup.root / case).exists()
    assert not list(setup.root.glob(f".{case}.partial-*"))


def test_failed_synth_leaves_nothing_and_the_rerun_works(setup: Setup) -> None:
    """A run that fails while writing images (a file-size limit: EFBIG, as a full disk would)."""
    outcome = setup.outcomes["synth_again"]
    out = setup.paths["synth_again"]
    assert one_line_error(outcome, "synth") == (
        f"could not write the dataset {out}: File too large; the partial output was removed"
    )
    assert outcome.left == []  # neither the folder nor a hidden partial one
    rerun = outcome.then  # the same command, without --overwrite
    assert rerun is not None and rerun.returncode == 0, rerun
    assert len(read_frames(out)) == 3 and len(list((out / "images" / "front").iterdir())) == 3
    assert not list(setup.root.glob(".synth_again.*"))


def test_export_refuses_absurd_mc_samples(setup: Setup) -> None:
    message = one_line_error(setup.outcomes["export_mc"], "export")
    assert message == "argument --mc-samples: must be in [1, 256], got 1000000 (see pose-train export --help)"
    assert not (setup.root / "bundle").exists()


def test_export_on_a_full_disk_names_the_bundle_and_leaves_nothing(setup: Setup) -> None:
    message = one_line_error(setup.outcomes["export_full"], "export")
    bundle = setup.root / "bundle_full"
    assert message == f"could not write the bundle {bundle}: File too large (EFBIG); nothing was written"
    assert not list(setup.root.glob("*bundle_full*"))


# ------------------------------------------------------------------- SIGINT / SIGTERM, synth


def test_ctrl_c_while_python_imports_the_command_line_is_one_line() -> None:
    """`pose-train synth --help` spends ~0.6 s importing the command line; a Ctrl-C in that time
    printed Python's traceback (the console script now starts in console.py, which imports nothing)."""
    script = Path(sys.executable).parent / "pose-train"
    for after in ("numpy", "scipy"):
        status, lines = interrupt_while_importing([script, "synth", "--help"], after=after)
        assert (status, lines) == (130, ["pose-train: interrupted (SIGINT)"]), after


def test_ctrl_c_while_pose_regressor_imports_opencv_is_one_line() -> None:
    """`pose-regressor` imported OpenCV and numpy (~0.3 s) outside its Ctrl-C handling."""
    script = Path(sys.executable).parent / "pose-regressor"
    status, lines = interrupt_while_importing([script, "bench", "--bundle", "/nonexistent"])
    assert (status, lines) == (130, ["pose-regressor bench: interrupted (SIGINT)"])


def test_synth_stops_cleanly_on_sigterm_and_on_ctrl_c(tmp_path: Path) -> None:
    """Both signals during rendering (after the progress bar shows): one line, 143 / 130, and
    neither the output nor a hidden partial folder is left."""
    argv = [*CLI, "synth", "--rig", "mono", "--width", "32", "--height", "24", "--frames", "5000"]
    procs = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        out = tmp_path / sig.name
        procs[sig] = subprocess.Popen(
            [*argv, "--out", str(out), "--workers", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    for sig, proc in procs.items():
        assert proc.stderr is not None
        seen = b""
        while b"rendering" not in seen:  # tqdm's bar: the render workers are running
            chunk = proc.stderr.read1(4096)  # type: ignore[attr-defined]
            assert chunk, f"{sig.name}: synth ended before rendering: {seen!r}"
            seen += chunk
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # Ctrl-C reaches the whole foreground group, workers included
        else:
            proc.send_signal(sig)  # `docker stop` signals the main process only
    for sig, proc in procs.items():
        _, rest = proc.communicate(timeout=60)
        last = rest.decode().splitlines()[-1] if rest.strip() else ""
        assert proc.returncode == 128 + sig, (sig.name, rest.decode()[-2000:])
        assert last.endswith(f"pose-train synth: interrupted ({sig.name})"), rest.decode()[-2000:]
        assert "Traceback" not in rest.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_flag_share_bounds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval-checkpoint", "--checkpoint", str(tmp_path / "none.pt"), "--flag-share"]
    for value, message in (
        ("0", "must be > 0 and at most 0.5, got 0"),
        ("0.6", "must be > 0 and at most 0.5, got 0.6"),
        ("nan", "must be > 0 and at most 0.5, got nan"),
        ("five", "must be a number > 0 and at most 0.5, got 'five'"),
    ):
        with pytest.raises(SystemExit) as stopped:
            main([*base, value])
        assert stopped.value.code == 2
        assert capsys.readouterr().err == (
            f"pose-train eval-checkpoint: error: argument --flag-share: {message} "
            "(see pose-train eval-checkpoint --help)\n"
        )


def test_an_out_that_is_a_file_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command's --out names a folder; a file there (or above it) is refused by argparse,
    before an evaluation or a render runs, not at the first write after it. The file stays."""
    from pose_regressor.cli import main as robot_main

    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me\n")
    below = a_file / "run"
    missing = str(tmp_path / "none.pt")
    commands = {
        "synth": ["synth", "--rig", "mono", "--out"],
        "fit": ["fit", "--out"],
        "eval-checkpoint": ["eval-checkpoint", "--checkpoint", missing, "--out"],
        "export": ["export", "--checkpoint", missing, "--out"],
        "error-head": ["error-head", "--checkpoint", missing, "--out"],
        "import": ["import", "tum", str(tmp_path), "--out"],
        "to-bag": ["to-bag", "--data", str(tmp_path), "--out"],
        "from-bag": ["from-bag", "--bag", str(tmp_path), "--out"],
    }
    for command, argv in commands.items():
        for out, message in (
            (a_file, f"{a_file} is a file; name a folder"),
            (below, f"{a_file} is a file, so {below} cannot be a folder; name a folder"),
        ):
            with pytest.raises(SystemExit) as stopped:
                main([*argv, str(out)])
            assert stopped.value.code == 2, command
            err = capsys.readouterr().err
            assert f"pose-train {command}: error: argument --out: {message}" in err, err
    for command, argv in {
        "eval-folder": ["eval-folder", "--bundle", str(tmp_path), "--data", str(tmp_path), "--out"],
        "eval-node": ["eval-node", "--bag", str(tmp_path), "--bundle", str(tmp_path), "--out"],
    }.items():
        with pytest.raises(SystemExit) as stopped:
            robot_main([*argv, str(a_file)])
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert f"pose-regressor {command}: error: argument --out: {a_file} is a file; name a folder" in err
    assert a_file.read_text() == "keep me\n"


def test_synth_bounds_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The other bounds, in-process (the subprocess cases above cover the CLI path)."""
    base = ["synth", "--rig", "mono", "--quiet", "--out", str(tmp_path / "x")]
    cases = {
        ("--width", "100000"): "--width must be in [1, 2048], got 100000",
        ("--frames", "10000000"): "--frames must be in [3, 1000000], got 10000000",
        ("--frames-per-trajectory", "1000", "--fps", "0.5"): (
            "a trajectory of 1000 frames at 0.5 Hz lasts 2000 s; at most 1000 s "
            "(lower --frames-per-trajectory or raise --fps)"
        ),
        ("--workers", "100000"): "--workers must be in [0, 256], got 100000",
        ("--noise-std", "1e9"): "--noise-std must be in [0, 255], got 1000000000.0",
        ("--seed", "-1"): "--seed must be in [0, 4294967295], got -1",
    }
    for extra, message in cases.items():
        assert main([*base, *extra]) == 2
        assert capsys.readouterr().err == f"pose-train synth: error: {message}\n"
    bag = ["--bag", str(tmp_path / "b.bag"), "--split", "all", "--frames", "400", "--width", "2048"]
    assert main([*base, *bag, "--height", "2048"]) == 2  # found after planning, before rendering
    assert capsys.readouterr().err == (
        "pose-train synth: error: the bag's 400 camera sets (all) would hold 5033164800 bytes of images in "
        "memory; at most 4294967296 (fewer --frames, smaller images or another --split)\n"
    )
    rig = tmp_path / "rig.yaml"
    rig.write_text("cameras:\n  - {name: big, width: 100000, height: 10, hfov_deg: 90}\n")
    assert main([*base, "--rig", str(rig)]) == 2
    assert capsys.readouterr().err == (
        "pose-train synth: error: camera big is 100000x10 px; width and height must be in [1, 2048]\n"
    )
    rig.write_bytes(b"cameras: \xff\n")
    assert main([*base, "--rig", str(rig)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"pose-train synth: error: rig file {rig} is not UTF-8 text (at byte 9: invalid start byte)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rig.yaml"]


def test_synth_overwrite_keeps_the_old_output_until_the_new_one_is_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, bag = tmp_path / "data", tmp_path / "data" / "test.bag"  # a bag inside the dataset folder
    base = ["synth", "--rig", "mono", "--width", "16", "--height", "16", "--quiet", "--out", str(out)]
    assert main([*base, "--frames", "3", "--bag", str(bag)]) == 0
    before = (out / "frames.csv").read_text()
    assert main([*base, "--frames", "2", "--overwrite"]) == 2  # refused before anything is written
    assert capsys.readouterr().err == "pose-train synth: error: --frames must be in [3, 1000000], got 2\n"

    def disk_full(*args: object, **kwargs: object) -> None:  # the bag is written after the images
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(generate, "RigBagWriter", disk_full)
    assert main([*base, "--frames", "6", "--bag", str(bag), "--overwrite"]) == 2
    assert capsys.readouterr().err == (
        f"pose-train synth: error: could not write the dataset {out} or the bag {bag}: No space left on "
        "device; the partial output was removed; the existing output is unchanged\n"
    )
    monkeypatch.undo()
    assert (out / "frames.csv").read_text() == before and bag.is_dir()
    assert main([*base, "--frames", "6", "--bag", str(bag), "--overwrite", "--seed", "4"]) == 0
    frames = read_frames(out)
    assert len(frames) == 6 and bag.is_dir()
    assert np.allclose(np.linalg.norm([f.quat_xyzw for f in frames], axis=1), 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]

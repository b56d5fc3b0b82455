"""`pose-train fit` / `eval` on bad input and interruptions, through the real command line.

Unreadable images (in this process and in DataLoader workers), `--skip-bad`, a loss that becomes
NaN, SIGKILL at a random moment then `--resume`, and Ctrl-C (SIGINT). The subprocess runs use a
tiny model on a tiny rendered dataset; the kill test compares the resumed run's final weights
bit for bit with those of an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import pytest
import torch

from pose_regressor.rig import preset_rig
from pose_regressor_training import trainer as trainer_module
from pose_regressor_training.checkpoint import load_checkpoint
from pose_regressor_training.cli import main
from pose_regressor_training.data.sources import load_dataset
from pose_regressor_training.synth.generate import SynthConfig, render_dataset
from tests.conftest import TINY_TRAINING

EPOCHS = 30  # ~50 ms each: long enough to kill mid-run, short enough for the test budget
CLI = [sys.executable, "-m", "pose_regressor_training.cli"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 frames of a quad rig, 64x48: 20 train, 20 val, 20 test (whole trajectories)."""
    out = tmp_path_factory.mktemp("faults") / "data"
    render_dataset(SynthConfig(out=out, rig=preset_rig("quad", 64, 48), frames=60, seed=1, progress=False))
    return out


def overrides(root: Path, epochs: int = EPOCHS) -> list[str]:
    return [f"data.root={root}", *TINY_TRAINING, f"optim.epochs={epochs}"]


def frame_image(root: Path, split: str, frame: int, camera: str) -> Path:
    """The image of `camera` in frame `frame` (position in the split) of a dataset folder."""
    frames = load_dataset("folder", root, split)
    return frames.frames[frame].image_paths[frames.rig.names.index(camera)]


def damaged_copy(data: Path, dest: Path) -> dict[str, Path]:
    """A copy of the dataset with one missing, one empty, one truncated and one garbage image."""
    shutil.copytree(data, dest)
    bad = {
        "missing": frame_image(dest, "train", 1, "left"),
        "empty": frame_image(dest, "train", 5, "back"),
        "truncated": frame_image(dest, "train", 9, "front"),
        "garbage": frame_image(dest, "val", 0, "right"),
    }
    bad["missing"].unlink()
    bad["empty"].write_bytes(b"")
    bad["truncated"].write_bytes(bad["truncated"].read_bytes()[:200])
    bad["garbage"].write_bytes(b"not a PNG at all" * 16)
    return bad


def repair(bad: Path, data: Path, copy: Path) -> None:
    shutil.copyfile(data / bad.relative_to(copy), bad)


def model_state(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = load_checkpoint(path)
    assert checkpoint.resume is not None
    return {**{f"model.{k}": v for k, v in checkpoint.model.items()}, **checkpoint.resume.loss}


def assert_same_weights(a: Path, b: Path) -> None:
    state_a, state_b = model_state(a), model_state(b)
    assert state_a.keys() == state_b.keys()
    different = [k for k in state_a if not torch.equal(state_a[k], state_b[k])]
    assert not different, f"{a} and {b} differ in {different}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------ unreadable images


def test_unreadable_image_stops_fit_with_one_line_naming_it(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = damaged_copy(data, tmp_path / "data")
    assert main(["fit", "--out", str(tmp_path / "run"), "--quiet", *overrides(tmp_path / "data", 1)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"pose-train fit: error: image {bad['missing']} does not exist (frame 1 of data:train, camera left); "
        "pass --skip-bad to leave out frames with unreadable images\n"
    )


def test_unreadable_image_in_a_dataloader_worker_is_one_line_too(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = damaged_copy(data, tmp_path / "data")
    for name in ("missing", "truncated", "garbage"):  # only the empty one is left
        repair(bad[name], data, tmp_path / "data")
    args = ["fit", "--out", str(tmp_path / "run"), "--quiet", *overrides(tmp_path / "data", 1)]
    # One batch of all 20 frames, read by a worker process (no preload).
    assert main([*args, "data.preload=false", "num_workers=1", "optim.batch_size=20"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "worker" not in err
    assert re.fullmatch(
        rf"pose-train fit: error: image {re.escape(str(bad['empty']))} is an empty file "
        r"\(frame 5 of data:train, camera back\); "
        r"pass --skip-bad to leave out frames with unreadable images\n",
        err,
    )


def test_skip_bad_trains_on_the_good_frames_and_says_which_were_left_out(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = damaged_copy(data, tmp_path / "data")
    run = tmp_path / "run"
    assert main(["fit", "--out", str(run), "--quiet", "--skip-bad", *overrides(tmp_path / "data", 1)]) == 0
    out = capsys.readouterr().out
    assert (
        f"fit: skipped 3 of 20 train frames with unreadable images: image {bad['missing']} does not exist "
        f"(frame 1 of data:train, camera left); image {bad['empty']} is an empty file "
        f"(frame 5 of data:train, camera back); image {bad['truncated']} cannot be decoded: "
        "truncated or not an image (frame 9 of data:train, camera front)\n" in out
    )
    assert f"fit: skipped 1 of 20 val frames with unreadable images: image {bad['garbage']} cannot be" in out
    checkpoint = load_checkpoint(run / "last.pt")
    assert checkpoint.dataset.train_frames == 17
    assert checkpoint.config.data.skip_bad is True

    # eval: the same error without --skip-bad, the same skipping with it.
    repair(bad["garbage"], data, tmp_path / "data")
    test_image = frame_image(tmp_path / "data", "test", 5, "front")
    test_image.write_bytes(b"")
    eval_args = [
        "eval-checkpoint",
        "--checkpoint",
        str(run / "last.pt"),
        "--mc-samples",
        "2",
        "--calib-split",
        "",
    ]
    assert main(eval_args) == 2
    assert capsys.readouterr().err == (
        f"pose-train eval-checkpoint: error: image {test_image} is an empty file "
        "(frame 5 of data:test, camera front); "
        "pass --skip-bad to leave out frames with unreadable images\n"
    )
    assert main([*eval_args, "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        f"eval: skipped 1 of 20 test frames with unreadable images: image {test_image} is an empty file"
    )
    assert "eval test: 19 frames" in out


# ------------------------------------------------------------------------------- NaN loss


def test_nan_loss_stops_with_step_parts_and_keeps_the_last_good_checkpoint(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real divergence: the learning rate is multiplied by 1e30 after epoch 1 (2 steps). The
    # config refuses such a schedule (optim.step_gamma is a decay, in (0, 1]), so the schedule
    # function itself is patched; the weights and the loss then really blow up.
    schedule = trainer_module.lr_factor
    monkeypatch.setattr(
        trainer_module, "lr_factor", lambda step, *rest: schedule(step, *rest) * (1e30 if step >= 2 else 1.0)
    )
    diverging = [*overrides(data, 3), "optim.schedule=constant", "optim.warmup_epochs=0"]
    run = tmp_path / "run"
    assert main(["fit", "--out", str(run), "--quiet", *diverging]) == 2
    captured = capsys.readouterr()
    first, second = captured.out.splitlines()[:2]
    assert first.startswith("fit: threads: torch intra-op ")
    assert second.startswith("epoch 1/3: loss ")
    err = captured.err
    match = re.fullmatch(
        r"pose-train fit: error: loss became (nan|inf) at epoch 2/3, step (\d+) \((.*)\); training stopped; "
        rf"the last good checkpoint {re.escape(str(run / 'last.pt'))} \(epoch 1\) is kept untouched "
        r"\(lower optim.lr or check the data's poses\)\n",
        err,
    )
    assert match, err
    assert int(match[2]) >= 2  # epoch 1 took 2 steps
    assert {part.split("=")[0] for part in match[3].split(", ")} == {"total", "t", "q", "s_t", "s_q"}
    checkpoint = load_checkpoint(run / "last.pt")
    assert checkpoint.epoch == 1 and checkpoint.resume is not None and checkpoint.resume.global_step == 2
    assert all(torch.isfinite(v).all() for v in checkpoint.model.values() if v.is_floating_point())

    # Resuming the same diverging config stops again and leaves last.pt byte for byte as it was.
    before = digest(run / "last.pt")
    assert main(["fit", "--out", str(run), "--quiet", "--resume", *diverging]) == 2
    assert "(epoch 1) is kept untouched" in capsys.readouterr().err
    assert digest(run / "last.pt") == before


# ---------------------------------------------------------------------- kill, Ctrl-C, resume


def start_fit(out: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [*CLI, "fit", "--out", str(out), "--quiet", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epoch_line(stream: IO[str], epoch: int) -> float:
    """Reads the child's stdout up to its "epoch E/N" line (printed after last.pt is saved)."""
    while True:
        line = stream.readline()
        assert line, f"the run ended before epoch {epoch}"
        if line.startswith(f"epoch {epoch}/"):
            return time.monotonic()


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


class Reference:
    """The uninterrupted run: started once, in the background, while the tests interrupt theirs."""

    def __init__(self, data: Path, run: Path) -> None:
        self.run = run
        self.proc = start_fit(run, *overrides(data))

    def checkpoint(self, name: str = "last.pt") -> Path:
        if self.proc.returncode is None:
            code, _, err = finish(self.proc)
            assert code == 0, err
        assert self.proc.returncode == 0
        return self.run / name


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return Reference(data, tmp_path_factory.mktemp("reference"))


def test_sigkill_at_a_random_moment_then_resume_matches_an_uninterrupted_run(
    data: Path, tmp_path: Path, reference: Reference
) -> None:
    rng = random.Random(20240611)
    run = tmp_path / "run"
    proc = start_fit(run, *overrides(data))
    assert proc.stdout is not None
    first = wait_for_epoch_line(proc.stdout, 1)
    epoch_seconds = wait_for_epoch_line(proc.stdout, 2) - first
    # Anywhere in the rest of the run, checkpoint writes included, but before it ends.
    delay = rng.uniform(0.0, 0.6 * (EPOCHS - 2) * epoch_seconds)
    print(f"killing after {delay:.3f} s (epochs take {epoch_seconds * 1000:.0f} ms)")
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    code, _, _ = finish(proc)
    assert code == -signal.SIGKILL, "the run ended before the kill; the delay is too long"
    killed_at = load_checkpoint(run / "last.pt").epoch  # loads: the write was atomic
    print(f"last.pt held epoch {killed_at} of {EPOCHS}")
    assert 2 <= killed_at < EPOCHS

    code, out, err = finish(start_fit(run, "--resume", *overrides(data)))
    assert code == 0, err
    assert f"fit: resuming {run / 'last.pt'} at epoch {killed_at + 1}/{EPOCHS}" in out
    assert_same_weights(run / "last.pt", reference.checkpoint("last.pt"))
    assert_same_weights(run / "best.pt", reference.checkpoint("best.pt"))


@pytest.mark.parametrize(
    ("stop_signal", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_ctrl_c_or_sigterm_exits_with_a_resume_command_that_works(
    data: Path, tmp_path: Path, reference: Reference, stop_signal: signal.Signals, exit_code: int
) -> None:
    for attempt in range(3):
        run = tmp_path / f"run{attempt}"
        proc = start_fit(run, *overrides(data))
        assert proc.stdout is not None
        wait_for_epoch_line(proc.stdout, 3)
        time.sleep(random.Random(7).uniform(0.0, 0.1))
        if proc.poll() is None:
            proc.send_signal(stop_signal)
        code, out, err = finish(proc)
        # A run that had trained its last epoch before the signal landed: this reader fell behind
        # the run's output on a loaded machine (the reference run trains alongside). Not what is
        # tested; start again.
        if not (code == 0 and f"epoch {EPOCHS}/{EPOCHS}" in out):
            break
    else:
        pytest.fail("three runs finished their schedule before this test could interrupt them")
    assert code == exit_code, (err, out[-400:])
    last = run / "last.pt"
    match = re.fullmatch(
        rf"pose-train fit: interrupted at epoch (\d+)/{EPOCHS}, step (\d+); {re.escape(str(last))} "
        r"\(epoch (\d+)\) is intact; resume with: (pose-train fit .*)\n",
        err,
    )
    assert match, err
    epoch, step, saved = int(match[1]), int(match[2]), int(match[3])
    # saved == epoch when the signal came while that epoch's checkpoint was being written (held back)
    assert epoch - 1 <= saved <= epoch and step >= 2 * saved
    assert load_checkpoint(last).epoch == saved
    command = shlex.split(match[4])
    assert command[:2] == ["pose-train", "fit"] and "--resume" in command
    resumed = subprocess.run([*CLI, *command[1:]], capture_output=True, text=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(last, reference.checkpoint("last.pt"))


def test_ctrl_c_while_dataloader_workers_start_is_one_line_and_exit_130(data: Path, tmp_path: Path) -> None:
    """Issue 14: with num_workers > 0 every epoch forks its DataLoader workers; a Ctrl-C landing
    there was lost (a KeyboardInterrupt in an at-fork callback is printed and ignored, and training
    went on) or ended in a worker's traceback. Each run below is interrupted at a random moment
    of its short epochs, most of which is worker start-up."""
    epochs = 300  # a lost Ctrl-C lets the run go on for tens of seconds and exit 0
    rng = random.Random(14)
    delays = [rng.uniform(0.0, 0.3) for _ in range(6)]

    def interrupted_run(attempt: int) -> tuple[int, str]:
        extra = ["num_workers=2", "data.val_split=", "data.preload=false"]
        proc = start_fit(tmp_path / f"run{attempt}", *overrides(data, epochs), *extra)
        assert proc.stdout is not None
        wait_for_epoch_line(proc.stdout, 2)
        time.sleep(delays[attempt])
        proc.send_signal(signal.SIGINT)
        try:
            code, _, err = finish(proc, timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            return -1, f"still training 60 s after Ctrl-C (the signal was lost):\n{err}"
        return code, err

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(interrupted_run, range(len(delays))))
    for code, err in results:
        assert code == 130, err[-2000:]
        assert err.count("\n") == 1 and "Traceback" not in err and "Exception ignored" not in err, err
        assert re.match(rf"pose-train fit: interrupted at epoch \d+/{epochs}, step \d+; ", err), err

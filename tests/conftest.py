"""Shared test setup: every test session gets its own DDS domain, limited to this host."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.unit.importer_fixtures import SynthCameraPoses


def _session_domain_id() -> str:
    # A domain per run, so that concurrent runs on one machine never hear each other (0..232 are valid).
    return str(100 + os.getpid() % 100)


# Config overrides for a model small enough to train in seconds (integration tests).
TINY_TRAINING = [
    "model.backbone=small_cnn",
    "model.small_cnn_width=8",
    "model.hidden_dim=32",
    "model.image_width=32",
    "model.image_height=24",
    "optim.batch_size=8",
    "tensorboard=false",
    "threads=1",
]

os.environ.setdefault("ROS_DOMAIN_ID", _session_domain_id())
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

# A suite started as a background job (`cmd &` in a shell without job control, as some CI
# runners and nohup wrappers do) inherits SIGINT ignored, and so would every process it starts:
# the Ctrl-C tests would test nothing. A Python handler here is reset to the default in the
# children at exec, so they get Python's KeyboardInterrupt as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rendered quad-rig dataset of 60 frames at 64x48 (train, val and test splits), shared by the
    training tests; read only."""
    # imported here: the ROS tests need none of the training code
    from pose_regressor.rig import preset_rig
    from pose_regressor_training.synth.generate import SynthConfig, render_dataset

    out = tmp_path_factory.mktemp("tiny") / "data"
    render_dataset(SynthConfig(out=out, rig=preset_rig("quad", 64, 48), frames=60, seed=1, progress=False))
    return out


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SynthCameraPoses:
    """Twelve rendered mono frames and their camera poses, which the importer tests write out in
    other tools' formats (read only; one render per test module)."""
    from tests.unit.importer_fixtures import render_synth  # pycolmap and the renderer: importer tests only

    return render_synth(tmp_path_factory.mktemp("synth"))


@pytest.fixture
def ros_env() -> dict[str, str]:
    """Environment for child processes that must join this session's DDS domain."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT then prints every thread's stack: see `stop_or_dump`
    return env


def stop_or_dump(proc: subprocess.Popen[str], timeout_s: float, what: str) -> str:
    """`proc`'s stderr once it exits within `timeout_s`; otherwise it is aborted and the test fails
    with the Python stack of each of its threads (a rare hang, seen once in CI, is then diagnosable)."""
    try:
        return proc.communicate(timeout=timeout_s)[1]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            err = proc.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            err = proc.communicate()[1]
        pytest.fail(f"{what} did not end within {timeout_s:g} s; its stderr and threads:\n{err}")

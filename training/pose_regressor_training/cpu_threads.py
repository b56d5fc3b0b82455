"""How training uses the CPU cores: the OpenMP wait policy, and what `pose-train fit` says about threads.

PyTorch's CPU kernels run on GNU OpenMP (libgomp). With its default wait policy a thread that
reaches the end of a parallel region spins for a while before it sleeps. That is cheap on an idle
machine, but when another process wants the same cores the spinning threads take the CPU from the
thread still working, and every small kernel waits for a time slice. Measured on this 2-core machine
under a load average of 16 (other trainings, tests and mypy): 0.08-0.15 training steps/s with the
default policy and 2 threads, 0.25-0.36 with 1 thread, 0.78-0.89 with `OMP_WAIT_POLICY=PASSIVE` and
2 threads (scripts/bench_fit_threads.py). libgomp reads the variable once, when torch is imported,
so `prefer_passive_openmp` must run before that (the `pose-train` entry point calls it first).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
# One busy process per core is a shared machine already; above this the slowdown line says so.
BUSY_LOAD_PER_CORE = 1.0
# An epoch this much slower than the fastest one so far gets a line (another process took the cores).
SLOWDOWN_FACTOR = 2.0


def prefer_passive_openmp() -> None:
    """Sets OMP_WAIT_POLICY=PASSIVE unless the user chose a policy or torch is already imported
    (then it would be too late: libgomp has read its environment)."""
    if "torch" not in sys.modules:
        os.environ.setdefault(WAIT_POLICY_ENV, "PASSIVE")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class ThreadSetup:
    """What a training process runs with, for the line `fit` prints at its start."""

    intra_op: int
    inter_op: int
    wait_policy: str | None  # OMP_WAIT_POLICY as torch saw it; None: libgomp's default (spinning)
    loader_workers: int
    cores: int
    load: float | None  # 1-minute load average at the start

    def describe(self) -> str:
        policy = (
            self.wait_policy or "unset (libgomp spins; set OMP_WAIT_POLICY=PASSIVE before importing torch)"
        )
        line = (
            f"fit: threads: torch intra-op {self.intra_op}, inter-op {self.inter_op}, "
            f"OpenMP wait policy {policy}, DataLoader workers {self.loader_workers}, "
            f"{self.cores} core(s) available"
        )
        if self.load is not None:
            line += f", load average {self.load:.1f}"
            if self.load > BUSY_LOAD_PER_CORE * self.cores:
                line += " (other processes are using the cores: training will be slower)"
        return line


def current_setup(loader_workers: int) -> ThreadSetup:
    import torch

    return ThreadSetup(
        intra_op=torch.get_num_threads(),
        inter_op=torch.get_num_interop_threads(),
        wait_policy=os.environ.get(WAIT_POLICY_ENV) or None,
        loader_workers=loader_workers,
        cores=available_cores(),
        load=load_average(),
    )


class ThroughputWatch:
    """Notices when an epoch trains much slower than the fastest so far, and says why it may be."""

    def __init__(self, factor: float = SLOWDOWN_FACTOR) -> None:
        self.factor = factor
        self.fastest = 0.0

    def epoch(self, sets_per_second: float, load: float | None, cores: int) -> str | None:
        """A line to print for this epoch's rate, or None when it is not unusually slow."""
        if sets_per_second <= 0:
            return None
        slow = self.fastest > 0 and sets_per_second * self.factor < self.fastest
        self.fastest = max(self.fastest, sets_per_second)
        if not slow:
            return None
        line = (
            f"fit: this epoch trained at {sets_per_second:.0f} camera sets/s, "
            f"the fastest so far {self.fastest:.0f}"
        )
        if load is not None and load > BUSY_LOAD_PER_CORE * cores:
            line += f"; load average {load:.1f} on {cores} core(s): other processes are using the cores"
        return line

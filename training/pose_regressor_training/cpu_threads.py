"""How training uses the CPU cores: how OpenMP threads wait, and what `pose-train fit` says about threads.

PyTorch's CPU kernels run on GNU OpenMP (libgomp). A thread that reaches the end of a parallel
region spins `GOMP_SPINCOUNT` times (300,000 by default) before it sleeps. That is cheap on an idle
machine, but when another process wants the same cores the spinning threads take the CPU from the
thread still working, and every small kernel waits for a time slice. Measured on this 2-core machine
under a load average of 16 (other trainings, tests and mypy): 0.08-0.15 training steps/s with the
default and 2 threads, 0.25-0.36 with 1 thread, 0.78-0.89 with `OMP_WAIT_POLICY=PASSIVE` (no spinning)
and 2 threads. Never spinning has its own price once the model is small: each of the many short
kernels then waits for its threads to wake. For the default model (half-width CNN) alone, PASSIVE
trained at 20-24 steps/s against 30-31 with libgomp's default and 23-27 with `GOMP_SPINCOUNT=1000`
(the count libgomp itself uses when threads outnumber cores), which beside a spinning training kept
13.6 steps/s (PASSIVE 15.4, the default 5.8; scripts/bench_fit_threads.py, docs/performance.md).
So `pose-train` sets `GOMP_SPINCOUNT=1000` unless the user chose either variable. libgomp reads them
once, when torch is imported, so `choose_openmp_waiting` must run before that (the `pose-train`
entry point calls it first).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
SPIN_COUNT_ENV = "GOMP_SPINCOUNT"
SHORT_SPIN_COUNT = "1000"
# One busy process per core is a shared machine already; above this the slowdown line says so.
BUSY_LOAD_PER_CORE = 1.0
# An epoch this much slower than the fastest one so far gets a line (another process took the cores).
SLOWDOWN_FACTOR = 2.0


def choose_openmp_waiting() -> None:
    """Sets GOMP_SPINCOUNT=1000 (short spins, then sleep) unless the user chose OMP_WAIT_POLICY or
    GOMP_SPINCOUNT, or torch is already imported (then it would be too late: libgomp has read its
    environment)."""
    if "torch" in sys.modules or WAIT_POLICY_ENV in os.environ or SPIN_COUNT_ENV in os.environ:
        return
    os.environ[SPIN_COUNT_ENV] = SHORT_SPIN_COUNT


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
    wait_policy: str | None  # OMP_WAIT_POLICY as torch saw it; None: unset
    loader_workers: int
    cores: int
    load: float | None  # 1-minute load average at the start
    spin_count: str | None = None  # GOMP_SPINCOUNT as torch saw it; None: unset

    def describe(self) -> str:
        if self.wait_policy:
            waiting = f"OpenMP wait policy {self.wait_policy}"
            if self.spin_count:
                waiting += f", GOMP_SPINCOUNT {self.spin_count}"
        elif self.spin_count:
            waiting = f"OpenMP spin count {self.spin_count}"
        else:
            waiting = "OpenMP waiting unset (libgomp spins 300,000 times; pose-train sets 1000)"
        line = (
            f"fit: threads: torch intra-op {self.intra_op}, inter-op {self.inter_op}, "
            f"{waiting}, DataLoader workers {self.loader_workers}, "
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
        spin_count=os.environ.get(SPIN_COUNT_ENV) or None,
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


# The CPU flags that mean bfloat16 in hardware: x86's AVX512-BF16 and AMX-BF16 (`flags`), Arm's
# BF16 extension (`Features` on aarch64).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def native_bf16_in_cpuinfo(cpuinfo: str) -> bool | None:
    """Whether the text of /proc/cpuinfo names a native bfloat16 flag; None when it lists no flags."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return not NATIVE_BF16_FLAGS.isdisjoint(value.split())
    return None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 in hardware (AVX512-BF16, AMX or Arm BF16). Elsewhere oneDNN
    emulates bf16, which is slower than float32, so `optim.cpu_bf16` falls back to float32.

    The CPU's own flags decide where Linux lists them: oneDNN's check
    (`torch.ops.mkldnn._is_mkldnn_bf16_supported`) answers yes on any AVX-512 core, emulation
    included. On a 2-core AVX-512 Xeon without AVX512-BF16 a training step of a small CNN took 1.6x
    as long in bf16 as in float32 (2026-12-06), and `fit` had said "backbone in bfloat16"."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    from_flags = native_bf16_in_cpuinfo(cpuinfo)
    if from_flags is not None:
        return from_flags
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def backbone_precision_line(requested: bool, device_type: str) -> tuple[bool, str | None]:
    """(train the backbone in bf16, the line `fit` prints about it, or None when there is nothing to say)."""
    if not requested or device_type != "cpu":
        return False, None
    if cpu_has_native_bf16():
        return True, "fit: backbone in bfloat16 (optim.cpu_bf16; head, losses and validation in float32)"
    return False, (
        "fit: optim.cpu_bf16 ignored: this CPU has no native bfloat16 (AVX512-BF16, AMX or Arm BF16); float32"
    )

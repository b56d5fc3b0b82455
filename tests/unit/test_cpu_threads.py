"""What `pose-train fit` says about threads, and when it calls an epoch slow (numbers, no timing)."""

from __future__ import annotations

import os
import subprocess
import sys

from pose_regressor_training.cpu_threads import ThreadSetup, ThroughputWatch, native_bf16_in_cpuinfo


def test_setup_line_names_threads_policy_and_a_busy_machine() -> None:
    busy = ThreadSetup(intra_op=2, inter_op=2, wait_policy="PASSIVE", loader_workers=0, cores=2, load=5.5)
    assert busy.describe() == (
        "fit: threads: torch intra-op 2, inter-op 2, OpenMP wait policy PASSIVE, DataLoader workers 0, "
        "2 core(s) available, load average 5.5 (other processes are using the cores: training will be slower)"
    )
    idle = ThreadSetup(intra_op=2, inter_op=2, wait_policy=None, loader_workers=2, cores=2, load=0.4)
    assert idle.describe().endswith("DataLoader workers 2, 2 core(s) available, load average 0.4")
    assert "OpenMP waiting unset (libgomp spins 300,000 times" in idle.describe()
    short = ThreadSetup(2, 2, wait_policy=None, loader_workers=0, cores=2, load=0.4, spin_count="1000")
    assert "inter-op 2, OpenMP spin count 1000, DataLoader workers 0" in short.describe()
    both = ThreadSetup(2, 2, wait_policy="ACTIVE", loader_workers=0, cores=2, load=None, spin_count="50")
    assert "OpenMP wait policy ACTIVE, GOMP_SPINCOUNT 50, DataLoader" in both.describe()


def test_throughput_watch_flags_an_epoch_at_under_half_the_fastest() -> None:
    watch = ThroughputWatch()
    assert watch.epoch(300.0, load=0.5, cores=2) is None  # the first epoch sets the pace
    assert watch.epoch(160.0, load=0.5, cores=2) is None  # slower, but not half
    assert watch.epoch(140.0, load=0.5, cores=2) == (
        "fit: this epoch trained at 140 camera sets/s, the fastest so far 300"
    )
    line = watch.epoch(20.0, load=6.0, cores=2)
    assert line is not None and line.endswith(
        "load average 6.0 on 2 core(s): other processes are using the cores"
    )
    assert watch.epoch(320.0, load=0.5, cores=2) is None
    assert watch.fastest == 320.0


def test_the_pose_train_entry_point_sets_short_spins_before_torch_loads() -> None:
    probe = (
        "import os, sys\n"
        "from pose_regressor_training import cli\n"
        "assert 'torch' not in sys.modules, 'the entry point must not load torch before the policy'\n"
        "cli.choose_openmp_waiting()\n"
        "print(os.environ.get('OMP_WAIT_POLICY', '-'), os.environ.get('GOMP_SPINCOUNT', '-'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}

    def chosen(extra: dict[str, str]) -> str:
        run = subprocess.run(
            [sys.executable, "-c", probe], env={**env, **extra}, capture_output=True, text=True, check=True
        )
        return run.stdout.strip()

    assert chosen({}) == "- 1000"
    # a user's own choice of either variable wins, and nothing is added to it
    assert chosen({"OMP_WAIT_POLICY": "PASSIVE"}) == "PASSIVE -"
    assert chosen({"GOMP_SPINCOUNT": "300000"}) == "- 300000"


# /proc/cpuinfo as Linux writes it: an AVX-512 Xeon without AVX512-BF16 (where oneDNN's own check says
# yes and emulates), one with it, a Sapphire Rapids (AMX), a Graviton 3 (aarch64) and a Graviton 2.
AVX512_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni\n"
AVX512_BF16 = "flags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
SAPPHIRE = "flags\t\t: avx512f amx_bf16 amx_tile amx_int8\n"
GRAVITON3 = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\n"
GRAVITON2 = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm\n"


def test_native_bf16_is_read_from_the_cpus_flags_not_from_avx512_alone() -> None:
    assert native_bf16_in_cpuinfo(AVX512_ONLY) is False
    assert native_bf16_in_cpuinfo(AVX512_BF16) is True
    assert native_bf16_in_cpuinfo(SAPPHIRE) is True
    assert native_bf16_in_cpuinfo(GRAVITON3) is True
    assert native_bf16_in_cpuinfo(GRAVITON2) is False
    # no flags line (not Linux, an unreadable file): no answer here, oneDNN's check decides
    assert native_bf16_in_cpuinfo("") is None
    assert native_bf16_in_cpuinfo("processor\t: 0\nmodel name\t: bf16 lookalike\n") is None

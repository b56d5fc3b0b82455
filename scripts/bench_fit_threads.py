"""Training steps per second of the default model under each CPU thread setting, alone or beside
other trainings: the measurement behind pose_regressor_training/cpu_threads.py.

    .venv/bin/python scripts/bench_fit_threads.py [--seconds 10] [--competitors 1]

Each setting runs in its own process (libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT when torch
loads) doing real
training steps of training/configs/synth_quad.yaml's model on random batches of 32 quad-rig sets.
With --competitors N, N more processes run the same steps with torch's defaults for the whole time,
as another `pose-train fit` on the same machine would. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

OPENMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
SHORT_SPINS = {"GOMP_SPINCOUNT": "1000"}
# (label, OpenMP variables ({}: libgomp's defaults), torch intra-op threads or 0 for the default,
# the backbone in bfloat16 as optim.cpu_bf16 trains it)
SETTINGS = (
    ("torch defaults (libgomp spins 300,000 times)", {}, 0, False),
    ("1 thread", {}, 1, False),
    ("OMP_WAIT_POLICY=PASSIVE (never spin)", {"OMP_WAIT_POLICY": "PASSIVE"}, 0, False),
    ("GOMP_SPINCOUNT=1000 (pose-train's default)", SHORT_SPINS, 0, False),
    ("PASSIVE and optim.cpu_bf16 (the backbone in bfloat16)", {"OMP_WAIT_POLICY": "PASSIVE"}, 0, True),
    ("GOMP_SPINCOUNT=1000 and optim.cpu_bf16 (synth_quad.yaml)", SHORT_SPINS, 0, True),
)

STEPS = """
import sys, time
import torch
from pose_regressor_training.models import build_model
from pose_regressor_training.models.config import ModelConfig
threads, seconds, bf16 = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "bf16"
if threads > 0:
    torch.set_num_threads(threads)
config = ModelConfig(backbone="small_cnn", small_cnn_width=16, fusion="input", num_cameras=4,
                     image_width=64, image_height=48, hidden_dim=256, dropout=0.2, rotation="rot6d",
                     variance_head=True, variance_head_hidden=64)
model = build_model(config)
model.train_backbone_bf16 = bf16
optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
images = torch.rand(32, 4, 3, 48, 64)
steps, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    out = model(images, model.random_masks(32, 1))
    loss = out.t.pow(2).mean() + out.q.pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    steps += 1
print(f"{steps / (time.perf_counter() - start):.3f} {torch.get_num_threads()}")
"""


def environment(openmp: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in OPENMP_VARIABLES}, **openmp}


def measure(openmp: dict[str, str], threads: int, seconds: float, bf16: bool) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", STEPS, str(threads), str(seconds), "bf16" if bf16 else "fp32"],
        env=environment(openmp),
        capture_output=True,
        text=True,
        check=True,
    )
    rate, used = out.stdout.split()
    return float(rate), int(used)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per setting")
    parser.add_argument("--competitors", type=int, default=0, help="other trainings running meanwhile")
    args = parser.parse_args()
    total = (args.seconds + 8.0) * len(SETTINGS) + 5.0  # model build and torch import per setting
    competitors = [
        subprocess.Popen(
            [sys.executable, "-c", STEPS, "0", str(total), "fp32"],
            env=environment({}),
            stdout=subprocess.DEVNULL,
        )
        for _ in range(args.competitors)
    ]
    try:
        time.sleep(3.0 if competitors else 0.0)  # let them reach their loops
        load = os.getloadavg()[0]
        print(f"{args.competitors} competing training(s), load average {load:.1f}, {os.cpu_count()} cores\n")
        print("| setting | torch threads | training steps/s |")
        print("|---|---|---|")
        for label, openmp, threads, bf16 in SETTINGS:
            rate, used = measure(openmp, threads, args.seconds, bf16)
            print(f"| {label} | {used} | {rate:.2f} |", flush=True)
    finally:
        for process in competitors:
            process.kill()


if __name__ == "__main__":
    main()

"""One training process: its device, its place in a torchrun group (DDP) and its seeds."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pose_regressor_training.predict import resolve_device
from pose_regressor_training.train_config import TrainConfig


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistributedContext:
    """Joins the torchrun group when there is one (WORLD_SIZE > 1), else a group of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def seed_everything(seed: int) -> None:
    # numpy's global generator is not used here (code takes explicit Generators); torch's is.
    random.seed(seed)
    torch.manual_seed(seed)


def start_process(config: TrainConfig) -> tuple[torch.device, DistributedContext]:
    """This process's device and group, with torch's threads and seeds set (a seed per rank)."""
    device = resolve_device(config.device)
    ctx = init_distributed(device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed + ctx.rank)
    return device, ctx

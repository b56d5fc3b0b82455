"""Shared by the export and ensemble tests: one torch thread, and models whose poses vary."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from pose_regressor_training.models import PoseRegressor


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models: more threads only contend on a shared 2-core machine (100x slower when loaded)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spread_outputs(model: PoseRegressor, images: torch.Tensor) -> None:
    """An untrained (or one-epoch) tiny model predicts about one pose for every image: BatchNorm at
    its default statistics, a 1e-3 head. Give BatchNorm the statistics of `images` [B, T, 3, H, W]
    and the output layers unit-scale weights, so that poses vary by metres with the images and a
    parity check means something. Leaves the model in eval mode."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    with torch.no_grad():
        for _ in range(2):
            model(images)
        torch.nn.init.normal_(model.fc_out.weight, std=0.3)
        for head in (model.fc_log_variance, model.fc_error_log_variance):
            layers = [m for m in head.modules() if isinstance(m, torch.nn.Linear)] if head else []
            for layer in layers:
                torch.nn.init.normal_(layer.weight, std=0.3)
            if head is model.fc_error_log_variance and layers:
                torch.nn.init.constant_(layers[-1].bias, -2.0)  # untrained, it would add nothing
    model.eval()

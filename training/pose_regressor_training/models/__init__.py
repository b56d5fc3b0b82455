"""Absolute pose regression models: torchvision backbones, camera fusion, MC-dropout head."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pose_regressor_training.models.config import ModelConfig

if TYPE_CHECKING:
    from pose_regressor_training.models.model import PoseOutput, PoseRegressor, build_model

__all__ = ["ModelConfig", "PoseOutput", "PoseRegressor", "build_model"]


def __getattr__(name: str) -> Any:
    # The model imports torch (seconds); loading a config needs only ModelConfig, so load it late.
    if name in ("PoseOutput", "PoseRegressor", "build_model"):
        from pose_regressor_training.models import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

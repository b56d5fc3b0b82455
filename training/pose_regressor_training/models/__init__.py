"""Absolute pose regression models: torchvision backbones, camera fusion, MC-dropout head."""

from pose_regressor_training.models.config import ModelConfig
from pose_regressor_training.models.model import PoseOutput, PoseRegressor, build_model

__all__ = ["ModelConfig", "PoseOutput", "PoseRegressor", "build_model"]

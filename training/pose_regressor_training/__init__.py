"""pose_regressor_training: datasets, synthetic scenes, models, losses, training, evaluation, export."""

__version__ = "0.1.0"

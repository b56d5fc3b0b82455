"""Augmentation settings, kept apart from the torch code so that loading a config imports no torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (see `pose_regressor_training.augment` for the operations and their order).

    Attributes:
        enabled: False returns every batch unchanged.
        crop_scale: (min, max) fraction of the image area kept by the random resized crop.
        crop_ratio: (min, max) crop aspect relative to the image aspect, sampled log-uniformly.
            ``crop_scale = crop_ratio = (1, 1)`` turns the crop off.
        brightness, contrast, saturation: factors uniform in [max(0, 1 - x), 1 + x]; 0 turns off.
        hue: hue shift uniform in [-hue, hue] (fraction of the colour circle, <= 0.5); 0 turns off.
        blur_prob: probability of a Gaussian blur, per camera.
        blur_sigma: (min, max) blur sigma in pixels.
        noise_std: std of additive Gaussian noise in [0, 1] image units; 0 turns off.
        track: random cyclic camera shift with the matching label yaw (rigs evenly spaced in yaw only).
        camera_dropout: probability that one camera of a sample (chosen uniformly) is black; 0 turns
            off. Trains the model to localize from the other cameras (a covered or failed one).
    """

    enabled: bool = True
    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.05
    blur_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    noise_std: float = 0.01
    track: bool = False
    camera_dropout: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"augment.crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        lo, hi = self.crop_ratio
        if not 0.0 < lo <= hi:
            raise ValueError(f"augment.crop_ratio must satisfy 0 < min <= max, got {self.crop_ratio}")
        for name in ("brightness", "contrast", "saturation", "noise_std"):
            if getattr(self, name) < 0.0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"augment.hue must be in [0, 0.5], got {self.hue}")
        if not 0.0 <= self.camera_dropout <= 1.0:
            raise ValueError(f"augment.camera_dropout must be in [0, 1], got {self.camera_dropout}")
        if not 0.0 <= self.blur_prob <= 1.0:
            raise ValueError(f"augment.blur_prob must be in [0, 1], got {self.blur_prob}")
        lo, hi = self.blur_sigma
        if not 0.0 < lo <= hi:
            raise ValueError(f"augment.blur_sigma must satisfy 0 < min <= max, got {self.blur_sigma}")

    @property
    def crops(self) -> bool:
        return self.crop_scale != (1.0, 1.0) or self.crop_ratio != (1.0, 1.0)

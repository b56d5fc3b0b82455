"""Training-time augmentation of image batches and their pose labels.

Batch layout (what the training loop passes after `images_to_unit_float`):

* ``images``  float [B, T, 3, H, W] in [0, 1]: B samples, T cameras in rig order, RGB;
* ``t``       float [B, 3]  translation of ``T_map_base`` (metres);
* ``q``       float [B, 4]  rotation of ``T_map_base``, unit quaternion xyzw, w >= 0.

`Augmenter.__call__` returns a new ``(images, t, q)`` with the same shapes, dtypes and range. All
randomness comes from its `torch.Generator` (CPU by default), so a seeded generator reproduces a
run and its state can be checkpointed. Operations, in order:

1. Track shift (``track=True``, label-changing, exact): a random cyclic shift of the camera order
   with the matching yaw of the label; see `apply_track_shift` and `track_shift_yaw`.
2. Random resized crop: a crop of ``crop_scale`` of the image area, with aspect ``crop_ratio`` times
   the image aspect (log-uniform), at a uniform position, resized back to H x W (bilinear). One crop
   per sample, shared by all its cameras (they are one rig, and a common zoom keeps them
   consistent), independent across samples. The label is kept: the crop acts like a small change of
   intrinsics (zoom plus a shift of the principal point), the usual approximation in absolute pose
   regression. Implemented with torchvision's ``roi_align`` (a batched crop-and-resize with the same
   bilinear sampling as ``resized_crop``), one call for the whole batch instead of one per sample.
3. Colour jitter per camera (independent factors for every camera of every sample, as the cameras
   have their own exposure and white balance): brightness, contrast, saturation with torchvision's
   ColorJitter ranges and blend formulas (``rgb_to_grayscale`` for the grey images), then hue, in
   that fixed order. torchvision's ``adjust_*`` take one factor per call, so the blends are written
   out to take a factor per image in one batched operation (a per-image loop is ~30x slower); the
   hue shift is a rotation about the grey axis of the RGB cube, which approximates the HSV shift.
4. Gaussian blur per camera with probability ``blur_prob``, sigma uniform in ``blur_sigma`` (pixels):
   kernel 2 * ceil(3 sigma) + 1 and reflect padding as torchvision's ``gaussian_blur``, one grouped
   convolution for all blurred images.
5. Additive Gaussian noise per pixel, std ``noise_std`` (in [0, 1] units), then clipped to [0, 1].

Steps 2-5 keep the labels unchanged. An operation whose strength is zero is skipped exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import roma
import torch
from numpy.typing import NDArray
from torchvision.ops import roi_align
from torchvision.transforms.v2 import functional as tvf

from pose_regressor.rig import Rig

FloatArray = NDArray[np.float64]

#: Default tolerances for the track-symmetry check of the rig extrinsics.
TRACK_ATOL_M = 1e-3
TRACK_ATOL_RAD = 1e-3


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (see the module docstring for the operations and their order).

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
        if not 0.0 <= self.blur_prob <= 1.0:
            raise ValueError(f"augment.blur_prob must be in [0, 1], got {self.blur_prob}")
        lo, hi = self.blur_sigma
        if not 0.0 < lo <= hi:
            raise ValueError(f"augment.blur_sigma must satisfy 0 < min <= max, got {self.blur_sigma}")

    @property
    def crops(self) -> bool:
        return self.crop_scale != (1.0, 1.0) or self.crop_ratio != (1.0, 1.0)


class Augmenter:
    """Applies an `AugmentConfig` to batches ``(images [B, T, 3, H, W], t [B, 3], q [B, 4])``.

    Args:
        config: the augmentation settings.
        rig: the rig the images come from (T cameras in rig order); with ``config.track`` its
            extrinsics must allow the track shift (`track_shift_yaw` raises ValueError otherwise).
        generator: source of all randomness; None creates a CPU generator with a random seed.
            Available as `self.generator` (e.g. to checkpoint its state).
    """

    def __init__(self, config: AugmentConfig, rig: Rig, generator: torch.Generator | None = None) -> None:
        self.config = config
        self.rig = rig
        if generator is None:
            generator = torch.Generator()
            generator.seed()
        self.generator = generator
        # Δ (rad) of one track-shift step; None when the track shift is off.
        self.track_yaw = track_shift_yaw(rig) if config.enabled and config.track else None

    def __call__(
        self, images: torch.Tensor, t: torch.Tensor, q: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Augmented ``(images, t, q)``; shapes and dtypes are kept, images stay in [0, 1]."""
        self._check(images, t, q)
        if not self.config.enabled:
            return images, t, q
        with torch.no_grad():
            if self.track_yaw is not None:
                shifts = torch.randint(
                    images.shape[1],
                    (images.shape[0],),
                    generator=self.generator,
                    device=self.generator.device,
                )
                images, q = apply_track_shift(images, q, shifts, self.track_yaw)
            if self.config.crops:
                images = self._crop(images)
            images = self._photometric(images)
        return images, t, q

    # ------------------------------------------------------------------ operations

    def _uniform(self, shape: tuple[int, ...], lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        """Uniform float64 samples on the generator's device, moved to the CPU."""
        u = torch.rand(shape, generator=self.generator, dtype=torch.float64, device=self.generator.device)
        return (lo + (hi - lo) * u).cpu()

    def _crop(self, images: torch.Tensor) -> torch.Tensor:
        batch, cameras, _, height, width = images.shape
        cfg = self.config
        area = height * width * self._uniform((batch,), *cfg.crop_scale)
        log_ratio = self._uniform((batch,), math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]))
        aspect = torch.exp(log_ratio) * (width / height)  # crop width / crop height
        crop_w = torch.sqrt(area * aspect).clamp(max=width)
        crop_h = torch.sqrt(area / aspect).clamp(max=height)
        left = self._uniform((batch,)) * (width - crop_w)
        top = self._uniform((batch,)) * (height - crop_h)
        # One box (x1, y1, x2, y2) per sample, repeated for its cameras: [B*T, 5] with the image index.
        boxes = torch.stack([left, top, left + crop_w, top + crop_h], dim=-1).repeat_interleave(
            cameras, dim=0
        )
        index = torch.arange(batch * cameras, dtype=torch.float64)[:, None]
        rois = torch.cat([index, boxes], dim=-1).to(images.device, images.dtype)
        flat = images.reshape(batch * cameras, *images.shape[2:])
        # Bilinear crop-and-resize of every box in one call; aligned=True puts pixel centres at
        # (i + 0.5) like resized_crop, and a full-image box returns the image exactly.
        out: torch.Tensor = roi_align(flat, rois, (height, width), 1.0, 1, True)
        return out.clamp_(0.0, 1.0).reshape(images.shape)

    def _photometric(self, images: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        flat = images.reshape(-1, *images.shape[2:])  # [N = B*T, 3, H, W]: one entry per camera image
        n = flat.shape[0]

        def factors(strength: float) -> torch.Tensor:  # ColorJitter's range, one factor per image
            f = self._uniform((n,), max(0.0, 1.0 - strength), 1.0 + strength)
            return f.to(flat.device, flat.dtype)[:, None, None, None]

        out = flat
        if cfg.brightness > 0:
            out = (out * factors(cfg.brightness)).clamp_(0.0, 1.0)  # blend with black
        if cfg.contrast > 0:
            mean = tvf.rgb_to_grayscale(out).mean(dim=(-3, -2, -1), keepdim=True)
            out = _blend(out, mean, factors(cfg.contrast))
        if cfg.saturation > 0:
            out = _blend(out, tvf.rgb_to_grayscale(out), factors(cfg.saturation))
        if cfg.hue > 0:
            out = _rotate_hue(out, self._uniform((n,), -cfg.hue, cfg.hue))
        if cfg.blur_prob > 0:
            chosen = self._uniform((n,)) < cfg.blur_prob
            sigma = self._uniform((n,), *cfg.blur_sigma)
            if bool(chosen.any()):
                out = out.clone() if out is flat else out
                index = chosen.nonzero()[:, 0].to(out.device)
                out[index] = _gaussian_blur(out[index], sigma[chosen])
        if cfg.noise_std > 0:
            noise = torch.randn(
                out.shape, generator=self.generator, dtype=out.dtype, device=self.generator.device
            )
            out = (out + cfg.noise_std * noise.to(out.device)).clamp_(0.0, 1.0)
        return out.reshape(images.shape)

    def _check(self, images: torch.Tensor, t: torch.Tensor, q: torch.Tensor) -> None:
        num_cameras = len(self.rig.cameras)
        if images.ndim != 5 or images.shape[1] != num_cameras or images.shape[2] != 3:
            raise ValueError(
                f"images must have shape [B, {num_cameras}, 3, H, W] (B samples of the rig's "
                f"{num_cameras} camera(s), RGB), got {list(images.shape)}"
            )
        if not images.is_floating_point():
            raise ValueError(f"images must be float in [0, 1] (see images_to_unit_float), got {images.dtype}")
        batch = images.shape[0]
        if t.shape != (batch, 3) or q.shape != (batch, 4):
            raise ValueError(
                f"labels must be t [{batch}, 3] and q [{batch}, 4], got {list(t.shape)} and {list(q.shape)}"
            )


def _blend(image: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """torchvision's colour-jitter blend ``ratio * image + (1 - ratio) * other`` with a ratio per image."""
    return (ratio * image + (1.0 - ratio) * other).clamp_(0.0, 1.0)


def _rotate_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Hue shift by `shift` turns ([N], fraction of the colour circle) of images [N, 3, H, W].

    A rotation of the RGB cube about its grey diagonal (the linear ``hue-rotate`` of CSS/SVG
    filters), so it runs as one batched 3 x 3 product with a different angle per image; it keeps
    grey pixels and approximates an HSV hue shift (torchvision's adjust_hue takes one factor per call).
    """
    angle = 2.0 * math.pi * shift.to(torch.float64)
    k = torch.full((3,), 1.0 / math.sqrt(3.0), dtype=torch.float64)
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=torch.float64)
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    rot = cos * torch.eye(3, dtype=torch.float64) + sin * cross + (1.0 - cos) * torch.outer(k, k)
    rotated = torch.einsum("nij,njhw->nihw", rot.to(images.device, images.dtype), images)
    return rotated.clamp_(0.0, 1.0)


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of images [M, 3, H, W] with a sigma (pixels) per image, reflect padding.

    Like torchvision's gaussian_blur (kernel 2 * ceil(3 sigma) + 1, reflect border) but with one
    sigma per image in a single grouped convolution; the kernel is cut to fit the image.
    """
    m, channels, height, width = images.shape
    radius = min(math.ceil(3.0 * float(sigma.max())), min(height, width) - 1)
    if radius < 1:
        return images
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x[None, :] / sigma.to(torch.float64)[:, None]) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    kernel = kernel.to(images.device, images.dtype)  # [M*3, K]
    grouped = images.reshape(1, m * channels, height, width)
    padded = torch.nn.functional.pad(grouped, (radius, radius, radius, radius), mode="reflect")
    rows = torch.nn.functional.conv2d(padded, kernel[:, None, None, :], groups=m * channels)
    blurred = torch.nn.functional.conv2d(rows, kernel[:, None, :, None], groups=m * channels)
    return blurred.reshape(images.shape)


# ---------------------------------------------------------------------- track augmentation


def track_shift_yaw(rig: Rig, atol_m: float = TRACK_ATOL_M, atol_rad: float = TRACK_ATOL_RAD) -> float:
    """The yaw step Δ (radians, signed) of the rig's track symmetry, or ValueError why there is none.

    The track shift is exact when camera ``i+1`` (cyclically, in rig order) is camera ``i`` turned
    by Δ about base z: ``T_base_cam[i+1] = Rz(Δ) · T_base_cam[i]`` (rotation *and* translation), with
    ``|Δ| = 360° / T`` and identical intrinsics. Then the robot yawed by ``kΔ`` about its own z puts
    camera ``i`` exactly where camera ``i+k`` was. Δ > 0 when the rig order turns left
    (counter-clockwise seen from above, e.g. the quad preset front, left, back, right: Δ = +90°),
    Δ < 0 when it turns right. Cameras may be tilted, as long as they are all tilted alike.

    Raises:
        ValueError: fewer than 2 cameras, different intrinsics, cameras that differ by more than a yaw
            about base z (e.g. tilted differently), uneven yaw spacing, or translations that are not
            the same mount rotated (tolerances `atol_m`, `atol_rad`).
    """
    cams = rig.cameras
    n = len(cams)
    if n < 2:
        raise ValueError(
            f"track augmentation needs a rig of 2 or more cameras evenly spaced in yaw; this rig has {n}"
        )
    first = dataclasses.astuple(cams[0].intrinsics)
    for cam in cams[1:]:
        if not np.allclose(dataclasses.astuple(cam.intrinsics), first, rtol=0.0, atol=1e-6):
            raise ValueError(
                f"track augmentation needs identical intrinsics on all cameras; "
                f"{cam.name!r} has {cam.intrinsics}, {cams[0].name!r} has {cams[0].intrinsics}"
            )
    relative = cams[1].rotation_matrix() @ cams[0].rotation_matrix().T
    if abs(relative[2, 2] - 1.0) > atol_rad**2 / 2 + 1e-12:
        tilt = math.degrees(math.acos(float(np.clip(relative[2, 2], -1.0, 1.0))))
        raise ValueError(
            f"track augmentation needs cameras that differ only by a yaw about base z; "
            f"{cams[1].name!r} is {cams[0].name!r} rotated about another axis (z tilted by {tilt:.3g}°), "
            "e.g. the cameras are pitched or rolled differently"
        )
    step = 2.0 * math.pi / n
    first_step = math.atan2(relative[1, 0], relative[0, 0])
    delta = step if abs(_wrap(first_step - step)) <= abs(_wrap(first_step + step)) else -step
    for i in range(n):
        a, b = cams[i], cams[(i + 1) % n]
        rz = _rot_z(delta)
        rot_err = _angle_between(rz @ a.rotation_matrix(), b.rotation_matrix())
        if rot_err > atol_rad:
            yaws = ", ".join(f"{c.name} {math.degrees(c.yaw()):.1f}°" for c in cams)
            raise ValueError(
                f"track augmentation needs cameras evenly spaced in yaw by 360°/{n} = "
                f"{math.degrees(step):.4g}° in rig order, all mounted alike; {b.name!r} is off by "
                f"{math.degrees(rot_err):.3g}° from {a.name!r} turned by {math.degrees(delta):.4g}° "
                f"about base z (yaws: {yaws})"
            )
        t_err = float(np.linalg.norm(rz @ a.translation - b.translation))
        if t_err > atol_m:
            raise ValueError(
                f"track augmentation needs symmetric mounting positions: {b.name!r} at "
                f"{np.round(b.translation, 4).tolist()} m should be {a.name!r}'s position turned by "
                f"{math.degrees(delta):.4g}° about base z, {np.round(rz @ a.translation, 4).tolist()} m "
                f"(off by {t_err:.3g} m)"
            )
    return delta


def apply_track_shift(
    images: torch.Tensor, q: torch.Tensor, shifts: torch.Tensor, yaw_step: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift each sample's cameras cyclically by ``k`` and yaw its label by ``kΔ`` in the base frame.

    For sample b with ``k = shifts[b]``: camera ``i`` gets the image camera ``(i + k) mod T`` saw, and
    ``T_map_base ← T_map_base · Rz(k · yaw_step)`` (right-multiplication: a yaw about the robot's own
    z axis at the same position, so ``t`` is unchanged). With ``yaw_step`` from `track_shift_yaw`
    the result is exactly what the rig sees at the new pose.

    Args:
        images: [B, T, 3, H, W] (any dtype).
        q: [B, 4] xyzw rotation of ``T_map_base``.
        shifts: [B] integer shifts k (any integers; taken modulo T).
        yaw_step: Δ in radians.

    Returns:
        ``(images, q)``: shifted images and rotated labels (unit, w >= 0, q's dtype).
    """
    batch, num_cameras = images.shape[:2]
    k = shifts.reshape(batch).long().cpu()
    index = (torch.arange(num_cameras) + k[:, None]) % num_cameras  # [B, T]: source camera of camera i
    rows = torch.arange(batch)[:, None]
    shifted = images[rows.to(images.device), index.to(images.device)]
    q_yaw = yaw_quaternions(yaw_step * k.to(torch.float64)).to(q.dtype).to(q.device)
    q_new: torch.Tensor = roma.quat_product(q, q_yaw)
    q_new = torch.where(q_new[..., 3:4] < 0, -q_new, q_new)
    return shifted, q_new


def yaw_quaternions(angles: torch.Tensor) -> torch.Tensor:
    """Rotations about z by `angles` (radians, any shape) -> xyzw quaternions (..., 4)."""
    half = 0.5 * angles
    zeros = torch.zeros_like(half)
    return torch.stack([zeros, zeros, torch.sin(half), torch.cos(half)], dim=-1)


def _rot_z(angle: float) -> FloatArray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _angle_between(r_a: FloatArray, r_b: FloatArray) -> float:
    cos = (float(np.trace(r_a.T @ r_b)) - 1.0) / 2.0
    return math.acos(min(1.0, max(-1.0, cos)))


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi

"""Training-time augmentation of image batches and their pose labels.

Batch layout (what the training loop passes after `images_to_unit_float`):

* ``images``  float [B, T, 3, H, W] in [0, 1]: B samples, T cameras in rig order, RGB;
* ``t``       float [B, 3]  translation of ``T_map_base`` (metres);
* ``q``       float [B, 4]  rotation of ``T_map_base``, unit quaternion xyzw, w >= 0.

`Augmenter.__call__` returns a new ``(images, t, q)`` with the same shapes, dtypes and range. All
randomness comes from its `torch.Generator` (CPU by default), so a seeded generator reproduces a
run and its state can be checkpointed. Operations, in order:

1. Track shift (``track=True``, label-changing, exact): a random cyclic shift of the camera order
   with the matching yaw of the label; see `apply_track_shift` and `track_shift_yaw`. With
   ``tuple_length`` K > 1 the batch is B/K tuples of K consecutive frames (the tuple losses), and
   one shift is drawn per tuple: independent shifts would put 90° and 180° yaw jumps into the
   relative motion that MapNet's and VLocNet's terms compare.
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
6. Camera dropout (``camera_dropout`` p, rigs of 2+ cameras): with probability p per sample, one
   camera chosen uniformly is set to black, as a covered or failed camera reads. The model learns
   to localize from the others; on the quad rig p 0.1 halved the error with a covered camera and
   cost some accuracy on clean sets (docs/results.md, "Training with a camera blacked out").

Steps 2-6 keep the labels unchanged. An operation whose strength is zero is skipped exactly.
"""

from __future__ import annotations

import math

import torch
from torchvision.ops import roi_align
from torchvision.transforms.v2 import functional as tvf

from pose_regressor.rig import Rig
from pose_regressor_training.augment_config import AugmentConfig
from pose_regressor_training.rig_symmetry import apply_track_shift, track_shift_yaw

__all__ = ["AugmentConfig", "Augmenter"]


class Augmenter:
    """Applies an `AugmentConfig` to batches ``(images [B, T, 3, H, W], t [B, 3], q [B, 4])``.

    ``rig`` holds the T cameras in rig order; with ``config.track`` its extrinsics must allow the track
    shift (`track_shift_yaw` raises ValueError otherwise). ``generator`` is the source of all randomness
    (None: a CPU generator with a random seed), kept as `self.generator` to checkpoint its state.
    """

    def __init__(self, config: AugmentConfig, rig: Rig, generator: torch.Generator | None = None) -> None:
        self.config = config
        self.rig = rig
        if generator is None:
            generator = torch.Generator()
            generator.seed()
        self.generator = generator
        # Δ (rad) of one track-shift step; None when the track shift is off.
        self.track_yaw: float | None = None
        if config.enabled and config.track:
            try:
                self.track_yaw = track_shift_yaw(rig)
            except ValueError as exc:
                raise ValueError(f"augment.track: {exc} (set augment.track=false)") from None
        if config.enabled and config.camera_dropout > 0 and len(rig.cameras) < 2:
            raise ValueError(
                "augment.camera_dropout: blacking out one camera needs a rig of 2 or more cameras; "
                f"this rig has {len(rig.cameras)} (set augment.camera_dropout=0)"
            )

    def __call__(
        self, images: torch.Tensor, t: torch.Tensor, q: torch.Tensor, tuple_length: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Augmented ``(images, t, q)``; shapes and dtypes are kept, images stay in [0, 1].

        ``tuple_length``: the batch holds tuples of that many consecutive samples, which share one
        track shift."""
        self._check(images, t, q)
        if tuple_length < 1 or images.shape[0] % tuple_length:
            raise ValueError(
                f"augment: a batch of {images.shape[0]} samples is not made of tuples of {tuple_length}"
            )
        if not self.config.enabled:
            return images, t, q
        with torch.no_grad():
            if self.track_yaw is not None:
                shifts = torch.randint(
                    images.shape[1],
                    (images.shape[0] // tuple_length,),
                    generator=self.generator,
                    device=self.generator.device,
                ).repeat_interleave(tuple_length)
                images, q = apply_track_shift(images, q, shifts, self.track_yaw)
            if self.config.crops:
                images = self._crop(images)
            images = self._photometric(images)
            if self.config.camera_dropout > 0:
                images = self._drop_cameras(images)
        return images, t, q

    # ------------------------------------------------------------------ operations

    def _uniform(self, shape: tuple[int, ...], lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        """Uniform float64 samples on the generator's device, moved to the CPU."""
        # drawn where the generator lives (torch requires it); the box and factor maths run on the CPU
        u = torch.rand(shape, generator=self.generator, dtype=torch.float64, device=self.generator.device)
        return (lo + (hi - lo) * u).cpu()

    def _crop(self, images: torch.Tensor) -> torch.Tensor:
        batch, cameras, _, height, width = images.shape
        cfg = self.config
        area = height * width * self._uniform((batch,), *cfg.crop_scale)
        log_ratio = self._uniform((batch,), math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]))
        aspect = torch.exp(log_ratio) * (width / height)  # crop width / crop height
        # a large scale with an extreme aspect can ask for more than the image holds
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

        # Every step below writes into `out` in place (with a new tensor per step a batch of
        # synth_quad.yaml took 19.4 ms instead of 12.2: scripts/bench_augment.py), so `out` is
        # never the caller's tensor.
        # Brightness blends with black.
        out = (flat * factors(cfg.brightness)).clamp_(0.0, 1.0) if cfg.brightness > 0 else flat.clone()
        if cfg.contrast > 0:
            mean = tvf.rgb_to_grayscale(out).mean(dim=(-3, -2, -1), keepdim=True)
            _blend_(out, mean, factors(cfg.contrast))
        if cfg.saturation > 0:
            _blend_(out, tvf.rgb_to_grayscale(out), factors(cfg.saturation))
        if cfg.hue > 0:
            out = _rotate_hue(out, self._uniform((n,), -cfg.hue, cfg.hue))
        if cfg.blur_prob > 0:
            chosen = self._uniform((n,)) < cfg.blur_prob
            sigma = self._uniform((n,), *cfg.blur_sigma)
            if bool(chosen.any()):
                index = chosen.nonzero()[:, 0].to(out.device)
                out[index] = _gaussian_blur(out[index], sigma[chosen])
        if cfg.noise_std > 0:
            # normal_ rather than randn: the same distribution at half the cost on a CPU generator
            noise = torch.empty(out.shape, dtype=out.dtype, device=self.generator.device)
            noise.normal_(generator=self.generator)
            out.add_(noise.to(out.device), alpha=cfg.noise_std).clamp_(0.0, 1.0)
        return out.reshape(images.shape)

    def _drop_cameras(self, images: torch.Tensor) -> torch.Tensor:
        """One uniformly chosen camera of each chosen sample set to black (after the photometric
        steps, so a dropped camera is exactly 0, as a covered lens reads)."""
        batch, cameras = images.shape[:2]
        chosen = self._uniform((batch,)) < self.config.camera_dropout
        camera = (self._uniform((batch,)) * cameras).long().clamp_(max=cameras - 1)
        rows = chosen.nonzero()[:, 0]
        images[rows.to(images.device), camera[rows].to(images.device)] = 0.0
        return images

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


def _blend_(image: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """torchvision's colour-jitter blend ``ratio * image + (1 - ratio) * other`` with a ratio per image,
    written into ``image`` (one pass over it: ``image + (1 - ratio) * (other - image)``)."""
    return image.lerp_(other, 1.0 - ratio).clamp_(0.0, 1.0)


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
    # one kernel for all (one grouped conv), sized for the largest sigma; reflect padding needs radius < side
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

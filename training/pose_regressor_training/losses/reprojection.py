"""The geometric reprojection loss (``reprojection``) through the rig's reference camera.

Poses are ``T_map_base`` (metres, xyzw). The camera pose is ``T_map_cam = T_map_base · T_base_cam``, its
optical frame z forward, x right, y down; pixels follow ``u = fx·x/z + cx``, ``v = fy·y/z + cy``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pose_regressor_training.losses.base import CameraSpec, PoseBatch, PoseLoss, output
from pose_regressor_training.losses.geometry import compose, normalize_quaternion, rotation_matrix


@dataclass(frozen=True)
class ReprojectionParams:
    """``grid_size``: n for the n×n pixel grid of the default points; ``depths``: their depths (m) along the
    optical axis of the ground-truth camera; ``min_depth``: depth (m) that points at or behind the predicted
    camera are clamped to; ``max_error_px``: per-point error clip (pixels); ``normalize``: divide the mean
    error by the image diagonal (pixels → fraction of the diagonal)."""

    grid_size: int = 5
    depths: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    min_depth: float = 0.1
    max_error_px: float = 100.0
    normalize: bool = False

    def __post_init__(self) -> None:
        if self.grid_size < 1:
            raise ValueError(f"reprojection loss: grid_size must be >= 1, got {self.grid_size}")
        if not (math.isfinite(self.min_depth) and self.min_depth > 0):
            raise ValueError(f"reprojection loss: min_depth must be > 0, got {self.min_depth}")
        # grid points at or within min_depth would all be masked out by forward's validity test
        if not self.depths or not all(math.isfinite(d) and d > self.min_depth for d in self.depths):
            raise ValueError(
                f"reprojection loss: depths must be a non-empty list of depths > min_depth={self.min_depth}, "
                f"got {self.depths}"
            )
        if not (self.max_error_px > 0):
            raise ValueError(f"reprojection loss: max_error_px must be > 0, got {self.max_error_px}")


class ReprojectionLoss(PoseLoss):
    """Geometric reprojection loss (Kendall & Cipolla, CVPR 2017, "Geometric loss functions for camera pose
    regression with deep learning"): the mean over 3-D points ``X_i`` of ``‖π(T, X_i) - π(T̂, X_i)‖₂`` in
    pixels, ``π`` the pinhole projection of the reference camera placed at ``T_map_base · T_base_cam``.

    Points: by default a fixed set in front of the *ground-truth* camera, the n×n grid of pixel centres
    ``((i + ½)·W/n, (j + ½)·H/n)`` unprojected at each of ``depths`` and moved to map with the true camera
    pose (so ``π(T, X_i)`` are the grid pixels). ``forward(..., points=X)`` takes scene points instead,
    map frame ``[B, N, 3]`` (shared by the K frames) or ``[B, K, N, 3]``; those not at least ``min_depth``
    in front of the true camera are left out.

    Robustness: a point's depth in the predicted camera is clamped to ``>= min_depth`` (points behind it
    stay finite) and each point's error is clipped at ``max_error_px`` (clipped points give no gradient),
    so a prediction facing away yields a finite loss ``<= max_error_px``. Because of the clip and since it
    does not constrain poses far off, use it as a fine-tuning stage after training with ``homoscedastic``.
    No learned parameters. Parts: ``"reproj_px"`` (mean clipped error in pixels).
    """

    name = "reprojection"
    params_type = ReprojectionParams
    params: ReprojectionParams
    grid_cam: Tensor  # [N, 3] default points in the camera optical frame (buffer)
    t_base_cam: Tensor  # [3] (buffer)
    q_base_cam: Tensor  # [4] xyzw, unit (buffer)

    def __init__(self, params: ReprojectionParams | None = None, camera: CameraSpec | None = None) -> None:
        super().__init__(params or ReprojectionParams())
        if camera is None:
            raise ValueError(
                "reprojection loss needs the reference camera: pass camera=CameraSpec(...) "
                "(intrinsics and T_base_cam of the rig's first camera) to build_loss"
            )
        self.camera = camera
        self.register_buffer("grid_cam", _grid_points(camera, self.params), persistent=False)
        self.register_buffer(
            "t_base_cam", torch.tensor(camera.t_base_cam, dtype=torch.float32), persistent=False
        )
        q = torch.tensor(camera.q_base_cam_xyzw, dtype=torch.float32)
        # CameraSpec accepts norms within 1e-3 of 1; compose() needs an exactly unit quaternion
        self.register_buffer("q_base_cam", q / torch.linalg.vector_norm(q), persistent=False)

    @classmethod
    def from_params(cls, params: Any, camera: CameraSpec | None = None) -> PoseLoss:
        return cls(params, camera)

    def forward(self, pred: PoseBatch, target: PoseBatch, points: Tensor | None = None) -> dict[str, Tensor]:
        self.check_pair(pred, target)
        dtype = pred.t.dtype
        t_bc = self.t_base_cam.to(dtype).expand_as(pred.t)
        q_bc = self.q_base_cam.to(dtype).expand_as(pred.q)
        t_cam, q_cam = compose(target.t, normalize_quaternion(target.q), t_bc, q_bc)
        t_cam_hat, q_cam_hat = compose(pred.t, normalize_quaternion(pred.q), t_bc, q_bc)
        rot, rot_hat = rotation_matrix(q_cam), rotation_matrix(q_cam_hat)
        if points is None:
            # X_map = R_map_cam · X_cam + t_map_cam for the fixed grid, per sample and frame: [B, K, N, 3].
            world = torch.einsum("bkij,nj->bkni", rot, self.grid_cam.to(dtype)) + t_cam[:, :, None, :]
        elif points.ndim == 3 and points.shape[0] == pred.batch_size and points.shape[-1] == 3:
            world = points.to(dtype)[:, None].expand(-1, pred.tuple_length, -1, -1)
        elif points.ndim == 4 and points.shape[:2] == pred.t.shape[:2] and points.shape[-1] == 3:
            world = points.to(dtype)
        else:
            raise ValueError(
                f"reprojection loss: points must be [B, N, 3] or [B, K, N, 3] with [B, K] = "
                f"{list(pred.t.shape[:2])}, got {list(points.shape)}"
            )
        min_depth = self.params.min_depth
        uv, depth = self._project(world, t_cam, rot)
        uv_hat, _ = self._project(world, t_cam_hat, rot_hat)
        # a point behind the *true* camera has no true pixel to compare against
        valid = (depth >= min_depth).to(dtype)
        error = torch.linalg.vector_norm(uv_hat - uv, dim=-1).clamp(max=self.params.max_error_px)
        # clamp: no valid point gives a loss of 0, not 0/0 = NaN
        reproj_px = (error * valid).sum() / valid.sum().clamp(min=1.0)
        total = reproj_px / self.camera.diagonal_px if self.params.normalize else reproj_px
        return output(total, reproj_px=reproj_px)

    def _project(self, world: Tensor, t_cam: Tensor, rot: Tensor) -> tuple[Tensor, Tensor]:
        """Pixels ``[B, K, N, 2]`` and (unclamped) depths ``[B, K, N]`` of map points in the camera
        ``T_map_cam = (rot, t_cam)``; the division uses the depth clamped to ``>= min_depth``."""
        cam = torch.einsum("bkji,bknj->bkni", rot, world - t_cam[:, :, None, :])  # R^T (X - t)
        depth = cam[..., 2]
        z = depth.clamp(min=self.params.min_depth)
        c = self.camera
        u = c.fx * cam[..., 0] / z + c.cx
        v = c.fy * cam[..., 1] / z + c.cy
        return torch.stack((u, v), dim=-1), depth


def _grid_points(camera: CameraSpec, params: ReprojectionParams) -> Tensor:
    """The default points ``[n·n·len(depths), 3]`` in the optical frame: pixel-grid centres unprojected."""
    n = params.grid_size
    u = (torch.arange(n, dtype=torch.float64) + 0.5) * camera.width / n
    v = (torch.arange(n, dtype=torch.float64) + 0.5) * camera.height / n
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    rays = torch.stack(
        ((uu - camera.cx) / camera.fx, (vv - camera.cy) / camera.fy, torch.ones_like(uu)), dim=-1
    ).reshape(-1, 3)
    depths = torch.tensor(params.depths, dtype=torch.float64)
    return (depths[:, None, None] * rays[None]).reshape(-1, 3).to(torch.float32)

"""Batched rigid-pose algebra in torch for the losses (thin wrappers over roma, differentiable).

Conventions: a pose ``(t, q)`` is ``T_ab`` (maps points of frame ``b`` into frame ``a``,
``p_a = R(q) p_b + t``); ``t`` is ``[..., 3]`` in metres, ``q`` is ``[..., 4]`` **xyzw**.
Functions taking predicted quaternions normalize them where stated; none of them
canonicalizes the hemisphere of its output unless stated (the distances below are sign-invariant).
"""

from __future__ import annotations

from typing import Literal

import roma
import torch
from torch import Tensor

Norm = Literal["l1", "l2"]
Rotation = Literal["quat", "logq"]

NORMS: tuple[str, ...] = ("l1", "l2")
ROTATIONS: tuple[str, ...] = ("quat", "logq")


def normalize_quaternion(q: Tensor) -> Tensor:
    """``q / ‖q‖`` along the last axis (xyzw kept)."""
    out: Tensor = roma.quat_normalize(q)
    return out


def align_hemisphere(q: Tensor, reference: Tensor) -> Tensor:
    """``q`` with its sign flipped where ``<q, reference> < 0``: ``q`` moved into ``reference``'s hemisphere.

    ``q`` and ``-q`` are the same rotation; comparing a prediction against the aligned target makes a
    quaternion distance measure rotation difference rather than sign choice.
    """
    dot = (q * reference).sum(dim=-1, keepdim=True)
    return torch.where(dot < 0, -q, q)


def vector_distance(a: Tensor, b: Tensor, norm: Norm = "l2") -> Tensor:
    """Per-vector distance ``‖a - b‖`` over the last axis: ``"l1"`` sum of |·|, ``"l2"`` Euclidean."""
    if norm == "l1":
        return (a - b).abs().sum(dim=-1)
    if norm == "l2":
        distance: Tensor = torch.linalg.vector_norm(a - b, dim=-1)
        return distance
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def quaternion_distance(q_pred: Tensor, q_target: Tensor, norm: Norm = "l2") -> Tensor:
    """``‖q - q̂/‖q̂‖‖`` with the target ``q`` moved into the hemisphere of the normalized prediction ``q̂``."""
    q_hat = normalize_quaternion(q_pred)
    return vector_distance(q_hat, align_hemisphere(q_target, q_hat), norm)


def log_quaternion(q: Tensor) -> Tensor:
    """MapNet's log map of a unit quaternion, ``log q = (v/‖v‖)·arccos(|w|)``: half the rotation vector.

    Sign-invariant (``log q = log -q``): roma takes the shortest arc. Normalizes ``q`` first.
    """
    rotvec: Tensor = roma.unitquat_to_rotvec(normalize_quaternion(q))
    # roma's rotation vector is θ·axis; MapNet's log map is (θ/2)·axis
    return 0.5 * rotvec


def rotation_distance(
    q_pred: Tensor, q_target: Tensor, rotation: Rotation = "quat", norm: Norm = "l2"
) -> Tensor:
    """Rotation error per element: ``"quat"`` quaternion distance, ``"logq"`` ``‖log q - log q̂‖``."""
    if rotation == "quat":
        return quaternion_distance(q_pred, q_target, norm)
    if rotation == "logq":
        return vector_distance(log_quaternion(q_pred), log_quaternion(q_target), norm)
    raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")


def compose(t_ab: Tensor, q_ab: Tensor, t_bc: Tensor, q_bc: Tensor) -> tuple[Tensor, Tensor]:
    """``T_ac = T_ab · T_bc``: ``t_ac = t_ab + R(q_ab) t_bc``, ``q_ac = q_ab ⊗ q_bc`` (unit quaternions)."""
    # inputs are unit by contract, so skip roma's renormalization
    t_ac = t_ab + roma.quat_action(q_ab, t_bc, is_normalized=True)
    q_ac: Tensor = roma.quat_product(q_ab, q_bc)
    return t_ac, q_ac


def consecutive_relative_poses(t: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """``T_i^-1 T_j`` for consecutive frames ``j = i + 1`` of ``[B, K, ·]`` poses → ``[B, K-1, ·]``.

    ``t_rel = R_i^T (t_j - t_i)`` (the motion expressed in frame ``i``), ``q_rel = q_i^* ⊗ q_j``.
    ``q`` is normalized first; ``q_rel`` is unit but not hemisphere-canonicalized.
    """
    # before quat_action(is_normalized=True): a raw prediction's norm would scale t_rel
    q = normalize_quaternion(q)
    q_i_inv = roma.quat_conjugation(q[:, :-1])
    t_rel = roma.quat_action(q_i_inv, t[:, 1:] - t[:, :-1], is_normalized=True)
    q_rel: Tensor = roma.quat_product(q_i_inv, q[:, 1:])
    return t_rel, q_rel


def rotation_matrix(q: Tensor) -> Tensor:
    """``R(q)`` ``[..., 3, 3]`` of (normalized) xyzw quaternions."""
    rot: Tensor = roma.unitquat_to_rotmat(normalize_quaternion(q))
    return rot

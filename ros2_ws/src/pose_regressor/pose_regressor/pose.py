"""Rigid-body pose algebra for camera relocalization (ROS-free, numpy + scipy only).

Conventions (fixed for the whole project):

* Units: metres and radians.  Degrees appear only in reported rotation errors
  (:func:`rotation_error_deg`).
* A pose ``(t, q)`` is ``T_map_base``: the rigid transform that maps points expressed in
  ``base_link`` into ``map``, ``p_map = R(q) @ p_base + t``.  More generally ``(t_ab, q_ab)``
  is ``T_ab``, mapping points of frame ``b`` into frame ``a``; composition chains as
  ``T_ac = T_ab * T_bc``.
* ``t`` has shape ``(..., 3)``; ``q`` is a unit quaternion of shape ``(..., 4)`` in **xyzw**
  order (scalar last, as in :class:`scipy.spatial.transform.Rotation` and ROS messages).
* Canonical quaternions lie in the ``w >= 0`` hemisphere.  Every quaternion returned by
  this module is unit-norm and canonical (except :func:`canonical_hemisphere`, which only
  flips signs and does not normalize).
* All functions accept leading batch dimensions ``...`` and broadcast them with numpy rules
  unless stated otherwise; all outputs are ``float64``.
* Rotation vectors are axis * angle in radians; 6-D tangent vectors and covariances are
  ordered ``x, y, z, rot_x, rot_y, rot_z`` (REP-103 / ``PoseWithCovariance`` order).

Malformed input (wrong trailing shape, non-broadcastable batches, non-finite values,
zero-norm quaternions, non-rigid matrices) raises :class:`ValueError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.spatial.transform import Rotation

__all__ = [
    "Pose",
    "canonical_hemisphere",
    "compose",
    "from_matrix",
    "inverse",
    "mean_pose",
    "mean_quaternion",
    "normalize_quaternion",
    "pose_covariance",
    "quaternion_to_rotvec",
    "relative_pose",
    "rotation_error_deg",
    "rotvec_to_quaternion",
    "to_matrix",
    "transform_points",
    "translation_error",
]

FloatArray = npt.NDArray[np.float64]

#: Quaternions with a norm below this are rejected as degenerate.
_MIN_QUAT_NORM = 1e-12


# --------------------------------------------------------------------------- validation helpers


def _as_vectors(x: npt.ArrayLike, size: int, name: str) -> FloatArray:
    """Return ``x`` as float64 with trailing dimension ``size``; reject bad shapes/non-finite."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] != size:
        raise ValueError(f"{name} must have shape (..., {size}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return arr


def _as_quaternions(q: npt.ArrayLike, name: str = "q") -> FloatArray:
    """Validate an xyzw quaternion array and return it unit-norm and canonical."""
    return _normalize(_as_vectors(q, 4, name), name)


def _normalize(q: FloatArray, name: str) -> FloatArray:
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < _MIN_QUAT_NORM):
        raise ValueError(f"{name} contains zero-norm (or near-zero-norm < {_MIN_QUAT_NORM:g}) quaternions")
    return canonical_hemisphere(q / norm)


def _batch_shape(*arrays_and_core: tuple[FloatArray, int], what: str) -> tuple[int, ...]:
    """Broadcast the batch dimensions (all but the last ``core`` dims) of several arrays."""
    shapes = [a.shape[: a.ndim - core] for a, core in arrays_and_core]
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"{what}: batch dimensions {shapes} cannot be broadcast together") from None


def _rotation(q: FloatArray) -> Any:
    """scipy Rotation holding a flat ``(N, 4)`` stack of the (already validated) quaternions."""
    return Rotation.from_quat(q.reshape(-1, 4))


def _quat_out(rot: Any, batch: tuple[int, ...]) -> FloatArray:
    """Canonical ``(*batch, 4)`` float64 quaternions from a flat scipy Rotation."""
    quat = np.asarray(rot.as_quat(), dtype=np.float64).reshape(*batch, 4)
    return canonical_hemisphere(quat)


def _rotation_matrices(q: FloatArray) -> FloatArray:
    """``(..., 3, 3)`` rotation matrices of validated quaternions ``(..., 4)``."""
    mats = np.asarray(_rotation(q).as_matrix(), dtype=np.float64)
    return mats.reshape(*q.shape[:-1], 3, 3)


def _quat_product(q_a: FloatArray, q_b: FloatArray) -> FloatArray:
    """Hamilton product ``q_a * q_b`` (apply ``q_b`` first), broadcast over batch dims."""
    batch = _batch_shape((q_a, 1), (q_b, 1), what="quaternion product")
    rot_a = _rotation(np.broadcast_to(q_a, (*batch, 4)))
    rot_b = _rotation(np.broadcast_to(q_b, (*batch, 4)))
    return _quat_out(rot_a * rot_b, batch)


def _apply(rot_mats: FloatArray, vectors: FloatArray) -> FloatArray:
    """``R @ v`` for ``R`` of shape ``(..., 3, 3)`` and ``v`` of shape ``(..., 3)`` (broadcast)."""
    return np.asarray(np.matmul(rot_mats, vectors[..., None])[..., 0], dtype=np.float64)


# --------------------------------------------------------------------------- quaternions


def normalize_quaternion(q: npt.ArrayLike) -> FloatArray:
    """Return ``q`` (``(..., 4)``, xyzw) scaled to unit norm and moved to the ``w >= 0`` hemisphere.

    Raises:
        ValueError: wrong trailing shape, non-finite entries, or a (near-)zero-norm quaternion.
    """
    return _as_quaternions(q)


def canonical_hemisphere(q: npt.ArrayLike) -> FloatArray:
    """Flip the sign of quaternions (``(..., 4)``, xyzw) whose scalar part ``w`` is negative.

    ``q`` and ``-q`` represent the same rotation; the canonical representative has ``w >= 0``.
    No normalization is performed and ``w == 0`` is left unchanged.
    """
    arr = np.asarray(q, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] != 4:
        raise ValueError(f"q must have shape (..., 4), got {arr.shape}")
    return np.where(arr[..., 3:4] < 0.0, -arr, arr)


def rotvec_to_quaternion(r: npt.ArrayLike) -> FloatArray:
    """Convert rotation vectors ``r`` (``(..., 3)``, axis * angle, radians) to canonical xyzw quaternions."""
    rv = _as_vectors(r, 3, "r")
    return _quat_out(Rotation.from_rotvec(rv.reshape(-1, 3)), rv.shape[:-1])


def quaternion_to_rotvec(q: npt.ArrayLike) -> FloatArray:
    """Convert xyzw quaternions ``(..., 4)`` to rotation vectors ``(..., 3)`` (axis * angle, radians).

    The quaternion is normalized and canonicalized first, so the returned angle (the norm)
    lies in ``[0, pi]``; ``q`` and ``-q`` give the same result.
    """
    qn = _as_quaternions(q)
    rv = np.asarray(_rotation(qn).as_rotvec(), dtype=np.float64)
    return rv.reshape(*qn.shape[:-1], 3)


# --------------------------------------------------------------------------- pose algebra


def compose(
    t_ab: npt.ArrayLike, q_ab: npt.ArrayLike, t_bc: npt.ArrayLike, q_bc: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Compose ``T_ac = T_ab * T_bc``.

    ``(t_ab, q_ab)`` maps frame ``b`` into ``a`` and ``(t_bc, q_bc)`` maps ``c`` into ``b``;
    the result maps ``c`` into ``a``: ``t_ac = t_ab + R_ab t_bc``, ``q_ac = q_ab * q_bc``.

    Returns:
        ``(t_ac (..., 3), q_ac (..., 4))`` with broadcast batch dims, ``q_ac`` canonical.
    """
    tab = _as_vectors(t_ab, 3, "t_ab")
    qab = _as_quaternions(q_ab, "q_ab")
    tbc = _as_vectors(t_bc, 3, "t_bc")
    qbc = _as_quaternions(q_bc, "q_bc")
    # only to reject batches that cannot broadcast, with a clear message
    _batch_shape((tab, 1), (qab, 1), (tbc, 1), (qbc, 1), what="compose")
    t_ac = tab + _apply(_rotation_matrices(qab), tbc)
    q_ac = _quat_product(qab, qbc)
    # Translation and rotation batches may differ if e.g. only the t's carry a batch dim.
    batch = np.broadcast_shapes(t_ac.shape[:-1], q_ac.shape[:-1])
    return np.broadcast_to(t_ac, (*batch, 3)).copy(), np.broadcast_to(q_ac, (*batch, 4)).copy()


def inverse(t_ab: npt.ArrayLike, q_ab: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Invert ``T_ab`` to ``T_ba``: ``q_ba = q_ab^-1``, ``t_ba = -R_ab^T t_ab``.

    Returns:
        ``(t_ba (..., 3), q_ba (..., 4))`` with broadcast batch dims, ``q_ba`` canonical.
    """
    tab = _as_vectors(t_ab, 3, "t_ab")
    qab = _as_quaternions(q_ab, "q_ab")
    batch = _batch_shape((tab, 1), (qab, 1), what="inverse")
    rot_t = np.swapaxes(_rotation_matrices(qab), -1, -2)
    t_ba = -_apply(rot_t, tab)
    q_ba = _quat_out(_rotation(qab).inv(), qab.shape[:-1])
    return np.broadcast_to(t_ba, (*batch, 3)).copy(), np.broadcast_to(q_ba, (*batch, 4)).copy()


def relative_pose(
    t_i: npt.ArrayLike, q_i: npt.ArrayLike, t_j: npt.ArrayLike, q_j: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Relative pose ``T_ij = T_i^-1 * T_j``: the pose of frame ``j`` expressed in frame ``i``.

    With ``T_i = T_map_i`` and ``T_j = T_map_j`` the result maps points of ``j`` into ``i``.
    """
    t_inv, q_inv = inverse(t_i, q_i)
    return compose(t_inv, q_inv, t_j, q_j)


def transform_points(t: npt.ArrayLike, q: npt.ArrayLike, points: npt.ArrayLike) -> FloatArray:
    """Apply ``T = (t, q)`` to ``points`` (``(..., 3)``): ``p' = R(q) p + t``.

    For ``T_map_base`` this maps points given in ``base_link`` into ``map``.  Batch dims of
    the pose and the points broadcast, so a single pose ``(3,), (4,)`` transforms ``(N, 3)``.
    """
    tt = _as_vectors(t, 3, "t")
    qq = _as_quaternions(q)
    pts = _as_vectors(points, 3, "points")
    _batch_shape((tt, 1), (qq, 1), (pts, 1), what="transform_points")
    return _apply(_rotation_matrices(qq), pts) + tt


def to_matrix(t: npt.ArrayLike, q: npt.ArrayLike) -> FloatArray:
    """Homogeneous ``(..., 4, 4)`` matrix ``[[R(q), t], [0, 0, 0, 1]]`` of the pose ``(t, q)``."""
    tt = _as_vectors(t, 3, "t")
    qq = _as_quaternions(q)
    batch = _batch_shape((tt, 1), (qq, 1), what="to_matrix")
    mat = np.zeros((*batch, 4, 4), dtype=np.float64)
    mat[..., :3, :3] = _rotation_matrices(qq)
    mat[..., :3, 3] = tt
    mat[..., 3, 3] = 1.0
    return mat


def from_matrix(m: npt.ArrayLike, *, atol: float = 1e-3) -> tuple[FloatArray, FloatArray]:
    """Split homogeneous matrices ``(..., 4, 4)`` into ``(t (..., 3), q (..., 4))`` (q canonical).

    Slightly noisy rotation blocks are projected onto the nearest rotation by scipy
    (``Rotation.from_matrix``).  ``atol`` bounds the bottom row's deviation from ``[0, 0, 0, 1]``
    and ``|R^T R - I|`` (element-wise); larger deviations are rejected as non-rigid.

    Raises:
        ValueError: wrong shape, non-finite values, bottom row not ``[0, 0, 0, 1]``,
            ``det(R) <= 0`` (reflection / degenerate) or ``R`` far from orthonormal.
    """
    mat = np.asarray(m, dtype=np.float64)
    if mat.ndim < 2 or mat.shape[-2:] != (4, 4):
        raise ValueError(f"m must have shape (..., 4, 4), got {mat.shape}")
    if not np.all(np.isfinite(mat)):
        raise ValueError("m contains non-finite values (nan or inf)")
    if not np.allclose(mat[..., 3, :], [0.0, 0.0, 0.0, 1.0], rtol=0.0, atol=atol):
        raise ValueError("m is not a rigid transform: bottom row must be [0, 0, 0, 1]")
    rot = mat[..., :3, :3]
    if np.any(np.linalg.det(rot) <= 0.0):
        raise ValueError("m is not a rigid transform: rotation block has det <= 0 (reflection or singular)")
    gram = np.matmul(np.swapaxes(rot, -1, -2), rot)
    if np.any(np.abs(gram - np.eye(3)) > atol):
        raise ValueError(
            f"m is not a rigid transform: rotation block is not orthonormal within atol={atol:g}"
        )
    batch = mat.shape[:-2]
    q = _quat_out(Rotation.from_matrix(rot.reshape(-1, 3, 3)), batch)
    return mat[..., :3, 3].copy(), q


# --------------------------------------------------------------------------- errors


def translation_error(t_gt: npt.ArrayLike, t_pred: npt.ArrayLike) -> FloatArray:
    """Euclidean distance ``|t_pred - t_gt|`` in metres, shape ``(...)`` (broadcast)."""
    a = _as_vectors(t_gt, 3, "t_gt")
    b = _as_vectors(t_pred, 3, "t_pred")
    _batch_shape((a, 1), (b, 1), what="translation_error")
    return np.asarray(np.linalg.norm(b - a, axis=-1), dtype=np.float64)


def rotation_error_deg(q_gt: npt.ArrayLike, q_pred: npt.ArrayLike) -> FloatArray:
    """Geodesic angle of ``q_gt^-1 * q_pred`` in **degrees**, in ``[0, 180]``, shape ``(...)``.

    Sign-invariant (``q`` and ``-q`` give the same error).  Computed as
    ``2 * atan2(|vec|, |w|)`` of the relative quaternion, which is accurate near 0 and 180.
    """
    a = _as_quaternions(q_gt, "q_gt")
    b = _as_quaternions(q_pred, "q_pred")
    batch = _batch_shape((a, 1), (b, 1), what="rotation_error_deg")
    rot_a = _rotation(np.broadcast_to(a, (*batch, 4)))
    rot_b = _rotation(np.broadcast_to(b, (*batch, 4)))
    rel = np.asarray((rot_a.inv() * rot_b).as_quat(), dtype=np.float64).reshape(*batch, 4)
    angle = 2.0 * np.arctan2(np.linalg.norm(rel[..., :3], axis=-1), np.abs(rel[..., 3]))
    return np.asarray(np.degrees(angle), dtype=np.float64)


# --------------------------------------------------------------------------- statistics


def _weights(weights: npt.ArrayLike | None, n: int) -> FloatArray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0.0):
        raise ValueError("weights must be finite and non-negative")
    total = float(w.sum())
    if total <= 0.0:
        raise ValueError("weights must have a positive sum")
    return w / total


def _samples(x: npt.ArrayLike, size: int, name: str) -> FloatArray:
    arr = _as_vectors(x, size, name)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"{name} must have shape (S, {size}) with S >= 1, got {arr.shape}")
    return arr


def mean_quaternion(q: npt.ArrayLike, weights: npt.ArrayLike | None = None) -> FloatArray:
    """Weighted average rotation of ``q`` (``(S, 4)``, xyzw) after Markley et al. (2007).

    The mean is the unit eigenvector of the largest eigenvalue of ``sum_i w_i q_i q_i^T``
    (inputs normalized first), which minimizes the weighted sum of squared chordal
    (Frobenius) distances of the rotation matrices.  Invariant to the sign of each sample.
    Ill-defined if the top eigenvalue is repeated (e.g. two samples 180 deg apart).
    ``S >= 1``; ``weights`` ``(S,)`` are non-negative with a positive sum (default: uniform).
    Returns a canonical unit quaternion ``(4,)``.
    """
    qs = _normalize(_samples(q, 4, "q"), "q")
    w = _weights(weights, qs.shape[0])
    scatter = np.einsum("s,si,sj->ij", w, qs, qs)
    _, vecs = np.linalg.eigh(0.5 * (scatter + scatter.T))  # ascending eigenvalues
    # an eigenvector's sign is arbitrary: _normalize puts it in w >= 0
    return _normalize(vecs[:, -1], "mean quaternion")


def mean_pose(
    t: npt.ArrayLike, q: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> tuple[FloatArray, FloatArray]:
    """Weighted mean pose of ``S`` samples: arithmetic mean of ``t`` ``(S, 3)`` and Markley mean of ``q``.

    Returns:
        ``(t_mean (3,), q_mean (4,))`` with ``q_mean`` canonical.
    """
    ts = _samples(t, 3, "t")
    qs = _samples(q, 4, "q")
    if ts.shape[0] != qs.shape[0]:
        raise ValueError(f"t and q must have the same number of samples, got {ts.shape[0]} and {qs.shape[0]}")
    w = _weights(weights, ts.shape[0])
    return np.asarray(w @ ts, dtype=np.float64), mean_quaternion(qs, weights)


def pose_covariance(
    t: npt.ArrayLike,
    q: npt.ArrayLike,
    t_mean: npt.ArrayLike | None = None,
    q_mean: npt.ArrayLike | None = None,
) -> FloatArray:
    """Sample covariance ``(6, 6)`` of pose samples in the map-frame tangent space.

    Residuals, ordered ``x, y, z, rot_x, rot_y, rot_z`` (REP-103 / ``PoseWithCovariance``):

    * translation: ``t_i - t_mean`` (metres, map frame);
    * rotation: ``r_i = rotvec(q_i * q_mean^-1)`` (radians), i.e. ``R_i = Exp(r_i) R_mean`` —
      a left (map-frame) perturbation of the mean.

    The covariance is ``sum_i e_i e_i^T / (S - 1)`` about the given means (not re-centred),
    made exactly symmetric.  Missing means default to :func:`mean_pose` of the samples.

    Raises:
        ValueError: fewer than 2 samples, mismatched sample counts, or malformed input.
    """
    ts = _samples(t, 3, "t")
    qs = _samples(q, 4, "q")
    n = ts.shape[0]
    if qs.shape[0] != n:
        raise ValueError(f"t and q must have the same number of samples, got {n} and {qs.shape[0]}")
    if n < 2:
        raise ValueError(f"pose_covariance needs at least 2 samples (divides by S - 1), got {n}")
    qn = _normalize(qs, "q")
    tm = np.mean(ts, axis=0) if t_mean is None else _as_vectors(t_mean, 3, "t_mean")
    qm = mean_quaternion(qn) if q_mean is None else _as_quaternions(q_mean, "q_mean")
    if tm.shape != (3,) or qm.shape != (4,):
        raise ValueError(f"t_mean and q_mean must have shapes (3,) and (4,), got {tm.shape} and {qm.shape}")
    rot_res = np.asarray((_rotation(qn) * Rotation.from_quat(qm).inv()).as_rotvec(), dtype=np.float64)
    resid = np.concatenate([ts - tm, rot_res], axis=1)
    cov = resid.T @ resid / (n - 1)
    return np.asarray(0.5 * (cov + cov.T), dtype=np.float64)


# --------------------------------------------------------------------------- Pose dataclass


# eq=False: a generated __eq__ would compare arrays with ==, whose truth value is ambiguous
@dataclass(frozen=True, eq=False)
class Pose:
    """Single rigid pose ``T_ab`` (e.g. ``T_map_base``): maps points of frame ``b`` into ``a``.

    ``t`` is a ``(3,)`` translation in metres, ``q`` a ``(4,)`` xyzw quaternion; ``q`` is
    normalized and canonicalized (``w >= 0``) on construction.  Both arrays are stored as
    read-only float64 copies.  ``a @ b`` composes (``T_ab @ T_bc = T_ac``).  Equality is
    identity-based (use :func:`numpy.allclose` on the fields to compare values).
    """

    t: FloatArray
    q: FloatArray

    def __post_init__(self) -> None:
        t = np.array(self.t, dtype=np.float64)
        if t.shape != (3,):
            raise ValueError(f"Pose.t must have shape (3,), got {t.shape}")
        if not np.all(np.isfinite(t)):
            raise ValueError("Pose.t contains non-finite values (nan or inf)")
        q_in = np.asarray(self.q, dtype=np.float64)
        if q_in.shape != (4,):
            raise ValueError(f"Pose.q must have shape (4,), got {q_in.shape}")
        q = _as_quaternions(q_in, "Pose.q").copy()
        t.setflags(write=False)
        q.setflags(write=False)
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "q", q)

    @classmethod
    def identity(cls) -> Pose:
        """The identity transform (``t = 0``, ``q = [0, 0, 0, 1]``)."""
        return cls(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))

    @classmethod
    def from_matrix(cls, m: npt.ArrayLike) -> Pose:
        """Pose from a ``(4, 4)`` homogeneous rigid matrix (see :func:`from_matrix`)."""
        mat = np.asarray(m, dtype=np.float64)
        if mat.shape != (4, 4):
            raise ValueError(f"Pose.from_matrix expects shape (4, 4), got {mat.shape}")
        t, q = from_matrix(mat)
        return cls(t, q)

    def matrix(self) -> FloatArray:
        """``(4, 4)`` homogeneous matrix."""
        return to_matrix(self.t, self.q)

    def inverse(self) -> Pose:
        """``T_ba`` for ``self = T_ab``."""
        return Pose(*inverse(self.t, self.q))

    def compose(self, other: Pose) -> Pose:
        """``self * other`` (``T_ab * T_bc = T_ac``)."""
        return Pose(*compose(self.t, self.q, other.t, other.q))

    def __matmul__(self, other: Pose) -> Pose:
        if not isinstance(other, Pose):
            return NotImplemented
        return self.compose(other)

    def transform_points(self, points: npt.ArrayLike) -> FloatArray:
        """Map ``points`` (``(..., 3)``) from frame ``b`` into frame ``a``."""
        return transform_points(self.t, self.q, points)

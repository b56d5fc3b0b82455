"""Property-based tests of pose_regressor.pose against scipy.spatial.transform.Rotation.

Conventions under test: poses are T_ab (points of b into a), t in metres, q unit xyzw with w >= 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import Phase, assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from pose_regressor.pose import (
    Pose,
    canonical_hemisphere,
    compose,
    from_matrix,
    inverse,
    mean_pose,
    mean_quaternion,
    normalize_quaternion,
    pose_covariance,
    quaternion_to_rotvec,
    relative_pose,
    rotation_error_deg,
    rotvec_to_quaternion,
    to_matrix,
    transform_points,
    translation_error,
)

Array = npt.NDArray[np.float64]

SETTINGS = settings(max_examples=60, deadline=None)
FEW = settings(max_examples=15, deadline=None)

# --------------------------------------------------------------------------- strategies

_unit_float = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)
# Raw (un-normalized) 4-vectors with norm bounded away from 0.
raw_quats = (
    st.tuples(_unit_float, _unit_float, _unit_float, _unit_float)
    .map(np.array)
    .filter(lambda v: bool(np.linalg.norm(v) > 0.1))
)
quats = raw_quats.map(lambda v: v / np.linalg.norm(v))
translations = st.tuples(*[st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False)] * 3).map(np.array)
seeds = st.integers(0, 2**32 - 1)


def quat_batch(n: int) -> st.SearchStrategy[Array]:
    return st.lists(quats, min_size=n, max_size=n).map(np.array)


def trans_batch(n: int) -> st.SearchStrategy[Array]:
    return st.lists(translations, min_size=n, max_size=n).map(np.array)


# --------------------------------------------------------------------------- helpers


def scipy_matrix(t: Array, q: Array) -> Array:
    """Independent 4x4 built from scipy's Rotation."""
    m = np.eye(4)
    m[:3, :3] = Rotation.from_quat(q).as_matrix()
    m[:3, 3] = t
    return m


def assert_same_rotation(q1: npt.ArrayLike, q2: npt.ArrayLike, atol: float = 1e-9) -> None:
    """Equal up to the sign ambiguity q ~ -q (checked per batch element)."""
    a = np.asarray(q1, dtype=np.float64)
    b = np.asarray(q2, dtype=np.float64)
    assert a.shape == b.shape
    dist = np.minimum(np.linalg.norm(a - b, axis=-1), np.linalg.norm(a + b, axis=-1))
    assert np.all(dist < atol), dist


def assert_canonical(q: npt.ArrayLike) -> None:
    a = np.asarray(q)
    assert a.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(a, axis=-1), 1.0, atol=1e-12)
    assert np.all(a[..., 3] >= 0.0)


# --------------------------------------------------------------------------- quaternion basics


@SETTINGS
@given(raw_quats, st.floats(0.01, 1e3))
def test_normalize_quaternion_unit_canonical_same_rotation(v: Array, scale: float) -> None:
    q = normalize_quaternion(v * scale)
    assert_canonical(q)
    assert_same_rotation(q, v / np.linalg.norm(v))
    np.testing.assert_allclose(
        Rotation.from_quat(q).as_matrix(), Rotation.from_quat(v).as_matrix(), atol=1e-12
    )


@SETTINGS
@given(st.lists(raw_quats, min_size=1, max_size=6).map(np.array))
def test_normalize_quaternion_vectorized(v: Array) -> None:
    batched = normalize_quaternion(v.reshape(1, -1, 4))
    assert batched.shape == (1, v.shape[0], 4)
    for i in range(v.shape[0]):
        np.testing.assert_array_equal(batched[0, i], normalize_quaternion(v[i]))


@pytest.mark.parametrize(
    "bad",
    [np.zeros(4), np.array([0.0, 0.0, 0.0, 1e-15]), np.array([np.nan, 0, 0, 1]), np.array([np.inf, 0, 0, 1])],
)
def test_normalize_quaternion_rejects_degenerate(bad: Array) -> None:
    with pytest.raises(ValueError, match=r"zero-norm|non-finite"):
        normalize_quaternion(bad)
    with pytest.raises(ValueError):
        normalize_quaternion(np.stack([np.array([0.0, 0.0, 0.0, 1.0]), bad]))


@pytest.mark.parametrize("shape", [(), (3,), (5,), (2, 3)])
def test_normalize_quaternion_rejects_bad_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\)"):
        normalize_quaternion(np.ones(shape))


@SETTINGS
@given(st.lists(raw_quats, min_size=1, max_size=6).map(np.array), st.floats(0.1, 10.0))
def test_canonical_hemisphere_flips_only_sign(v: Array, scale: float) -> None:
    for x in (v * scale, -v * scale):
        c = canonical_hemisphere(x)
        assert np.all(c[..., 3] >= 0.0)
        np.testing.assert_allclose(np.linalg.norm(c, axis=-1), np.linalg.norm(x, axis=-1))  # not normalized
        flipped = x[..., 3] < 0
        np.testing.assert_array_equal(c[flipped], -x[flipped])
        np.testing.assert_array_equal(c[~flipped], x[~flipped])


# --------------------------------------------------------------------------- compose / inverse / relative


@SETTINGS
@given(translations, quats, translations, quats)
def test_compose_matches_scipy_and_matrices(t_ab: Array, q_ab: Array, t_bc: Array, q_bc: Array) -> None:
    t_ac, q_ac = compose(t_ab, q_ab, t_bc, q_bc)
    assert t_ac.shape == (3,) and q_ac.shape == (4,)
    assert_canonical(q_ac)
    r_ac = Rotation.from_quat(q_ab) * Rotation.from_quat(q_bc)
    assert_same_rotation(q_ac, r_ac.as_quat())
    expected = scipy_matrix(t_ab, q_ab) @ scipy_matrix(t_bc, q_bc)
    np.testing.assert_allclose(to_matrix(t_ac, q_ac), expected, atol=1e-9)
    np.testing.assert_allclose(t_ac, t_ab + Rotation.from_quat(q_ab).apply(t_bc), atol=1e-9)


@FEW
@given(trans_batch(5), quat_batch(5), translations, quats)
def test_compose_broadcasts_batch_dims(t_b: Array, q_b: Array, t1: Array, q1: Array) -> None:
    t_ac, q_ac = compose(t_b, q_b, t1, q1)  # (5,) batch with a single pose
    assert t_ac.shape == (5, 3) and q_ac.shape == (5, 4)
    t_ca, q_ca = compose(t1, q1, t_b.reshape(5, 1, 3), q_b.reshape(5, 1, 4))
    assert t_ca.shape == (5, 1, 3) and q_ca.shape == (5, 1, 4)
    for i in range(5):
        np.testing.assert_allclose(
            to_matrix(t_ac[i], q_ac[i]), scipy_matrix(t_b[i], q_b[i]) @ scipy_matrix(t1, q1), atol=1e-9
        )
        np.testing.assert_allclose(
            to_matrix(t_ca[i, 0], q_ca[i, 0]), scipy_matrix(t1, q1) @ scipy_matrix(t_b[i], q_b[i]), atol=1e-9
        )
    # Translation-only batch with a single rotation still yields a consistent batch.
    t_x, q_x = compose(t_b, q1, t1, q1)
    assert t_x.shape == (5, 3) and q_x.shape == (5, 4)


def test_compose_rejects_incompatible_batches() -> None:
    with pytest.raises(ValueError, match="broadcast"):
        compose(
            np.zeros((2, 3)),
            np.tile([0.0, 0, 0, 1], (2, 1)),
            np.zeros((3, 3)),
            np.tile([0.0, 0, 0, 1], (3, 1)),
        )
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\)"):
        compose(np.zeros(4), [0.0, 0, 0, 1], np.zeros(3), [0.0, 0, 0, 1])


@SETTINGS
@given(translations, quats)
def test_inverse_round_trip_and_matrix_inverse(t: Array, q: Array) -> None:
    t_inv, q_inv = inverse(t, q)
    assert_canonical(q_inv)
    np.testing.assert_allclose(to_matrix(t_inv, q_inv), np.linalg.inv(scipy_matrix(t, q)), atol=1e-9)
    assert_same_rotation(q_inv, Rotation.from_quat(q).inv().as_quat())
    t_id, q_id = compose(t, q, t_inv, q_inv)
    np.testing.assert_allclose(t_id, 0.0, atol=1e-9)
    assert_same_rotation(q_id, [0.0, 0.0, 0.0, 1.0], atol=1e-12)
    t_back, q_back = inverse(t_inv, q_inv)
    np.testing.assert_allclose(t_back, t, atol=1e-9)
    assert_same_rotation(q_back, q)


@SETTINGS
@given(translations, quats, translations, quats)
def test_relative_pose_matches_matrix_formula(t_i: Array, q_i: Array, t_j: Array, q_j: Array) -> None:
    t_ij, q_ij = relative_pose(t_i, q_i, t_j, q_j)
    expected = np.linalg.inv(scipy_matrix(t_i, q_i)) @ scipy_matrix(t_j, q_j)
    np.testing.assert_allclose(to_matrix(t_ij, q_ij), expected, atol=1e-9)
    assert_same_rotation(q_ij, (Rotation.from_quat(q_i).inv() * Rotation.from_quat(q_j)).as_quat())
    # T_i * T_ij == T_j
    t_j2, q_j2 = compose(t_i, q_i, t_ij, q_ij)
    np.testing.assert_allclose(t_j2, t_j, atol=1e-9)
    assert_same_rotation(q_j2, q_j)


@SETTINGS
@given(translations, quats, trans_batch(4))
def test_transform_points_matches_scipy(t: Array, q: Array, pts: Array) -> None:
    out = transform_points(t, q, pts)
    assert out.shape == (4, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out, Rotation.from_quat(q).apply(pts) + t, atol=1e-9)
    homog = np.hstack([pts, np.ones((4, 1))]) @ scipy_matrix(t, q).T
    np.testing.assert_allclose(out, homog[:, :3], atol=1e-9)
    # batched poses, one point each; -q is the same transform
    per_pose = transform_points(np.stack([t, t]), np.stack([q, -q]), pts[:2])
    np.testing.assert_allclose(per_pose, out[:2], atol=1e-9)


# --------------------------------------------------------------------------- matrices


@SETTINGS
@given(translations, quats)
def test_to_from_matrix_round_trip(t: Array, q: Array) -> None:
    m = to_matrix(t, q)
    assert m.shape == (4, 4) and m.dtype == np.float64
    np.testing.assert_allclose(m, scipy_matrix(t, q), atol=1e-12)
    np.testing.assert_array_equal(m[3], [0.0, 0.0, 0.0, 1.0])
    t2, q2 = from_matrix(m)
    np.testing.assert_allclose(t2, t, atol=1e-12)
    assert_canonical(q2)
    assert_same_rotation(q2, q)


@FEW
@given(trans_batch(3), quat_batch(3))
def test_to_from_matrix_batched(t: Array, q: Array) -> None:
    m = to_matrix(t.reshape(3, 1, 3), q.reshape(3, 1, 4))
    assert m.shape == (3, 1, 4, 4)
    t2, q2 = from_matrix(m)
    assert t2.shape == (3, 1, 3) and q2.shape == (3, 1, 4)
    np.testing.assert_allclose(t2[:, 0], t, atol=1e-12)
    assert_same_rotation(q2[:, 0], q)


@SETTINGS
@given(translations, quats, seeds)
def test_from_matrix_reorthonormalizes_noise(t: Array, q: Array, seed: int) -> None:
    m = scipy_matrix(t, q)
    m[:3, :3] += np.random.default_rng(seed).normal(scale=1e-6, size=(3, 3))
    t2, q2 = from_matrix(m)
    assert_canonical(q2)
    assert float(rotation_error_deg(q, q2)) < 1e-3
    r2 = to_matrix(t2, q2)[:3, :3]
    np.testing.assert_allclose(r2.T @ r2, np.eye(3), atol=1e-12)
    assert np.linalg.det(r2) == pytest.approx(1.0, abs=1e-12)


def test_from_matrix_rejects_non_rigid() -> None:
    good = scipy_matrix(np.array([1.0, 2.0, 3.0]), Rotation.from_euler("xyz", [0.1, 0.2, 0.3]).as_quat())
    reflect = good.copy()
    reflect[:3, :3] = reflect[:3, :3] @ np.diag([1.0, 1.0, -1.0])
    bottom = good.copy()
    bottom[3, 0] = 0.5
    scaled = good.copy()
    scaled[:3, :3] *= 2.0
    singular = good.copy()
    singular[:3, :3] = 0.0
    nonfinite = good.copy()
    nonfinite[0, 3] = np.nan
    with pytest.raises(ValueError, match="det"):
        from_matrix(reflect)
    with pytest.raises(ValueError, match="bottom row"):
        from_matrix(bottom)
    with pytest.raises(ValueError, match="orthonormal"):
        from_matrix(scaled)
    with pytest.raises(ValueError, match="det"):
        from_matrix(singular)
    with pytest.raises(ValueError, match="non-finite"):
        from_matrix(nonfinite)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4, 4\)"):
        from_matrix(np.eye(3))
    with pytest.raises(ValueError, match="det"):  # one bad element of a batch poisons it
        from_matrix(np.stack([good, reflect]))


# --------------------------------------------------------------------------- errors


@SETTINGS
@given(trans_batch(3), trans_batch(3))
def test_translation_error(a: Array, b: Array) -> None:
    err = translation_error(a, b)
    assert err.shape == (3,) and err.dtype == np.float64
    np.testing.assert_allclose(err, np.sqrt(((a - b) ** 2).sum(axis=1)), rtol=1e-12)
    np.testing.assert_allclose(translation_error(a[0], b), np.linalg.norm(b - a[0], axis=1), rtol=1e-12)
    assert translation_error([0.0, 0.0, 0.0], [3.0, 4.0, 0.0]) == pytest.approx(5.0)


@SETTINGS
@given(quat_batch(4), quat_batch(4))
def test_rotation_error_matches_scipy_and_is_sign_invariant(q_gt: Array, q_pred: Array) -> None:
    err = rotation_error_deg(q_gt, q_pred)
    assert err.shape == (4,) and err.dtype == np.float64
    expected = np.degrees((Rotation.from_quat(q_gt).inv() * Rotation.from_quat(q_pred)).magnitude())
    np.testing.assert_allclose(err, expected, atol=1e-6)
    assert np.all((err >= 0.0) & (err <= 180.0))
    np.testing.assert_allclose(rotation_error_deg(-q_gt, q_pred), err, atol=1e-9)
    np.testing.assert_allclose(rotation_error_deg(q_gt, -q_pred), err, atol=1e-9)
    np.testing.assert_allclose(rotation_error_deg(q_pred, q_gt), err, atol=1e-9)  # symmetric
    np.testing.assert_allclose(rotation_error_deg(q_gt, q_gt), 0.0, atol=1e-6)


@SETTINGS
@given(quats, st.floats(1e-10, 3.14), st.tuples(_unit_float, _unit_float, _unit_float).map(np.array))
def test_rotation_error_known_angle_incl_tiny(q: Array, angle: float, axis: Array) -> None:
    assume(np.linalg.norm(axis) > 0.1)
    axis = axis / np.linalg.norm(axis)
    q_pred = (Rotation.from_quat(q) * Rotation.from_rotvec(angle * axis)).as_quat()
    # acos(|w|) would collapse to 0 below ~1e-8 rad; atan2 keeps relative precision.
    assert float(rotation_error_deg(q, q_pred)) == pytest.approx(np.degrees(angle), rel=1e-6, abs=1e-9)


def test_rotation_error_tiny_angle_exact() -> None:
    q_pred = Rotation.from_rotvec([1e-9, 0.0, 0.0]).as_quat()
    assert float(rotation_error_deg([0.0, 0.0, 0.0, 1.0], q_pred)) == pytest.approx(
        np.degrees(1e-9), rel=1e-9
    )
    assert float(rotation_error_deg([0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0])) == pytest.approx(180.0)


# --------------------------------------------------------------------------- rotation vectors


rotvecs = st.tuples(_unit_float, _unit_float, _unit_float).map(
    lambda v: np.array(v) * (np.pi - 1e-3) / np.sqrt(3)
)


@SETTINGS
@given(st.lists(rotvecs, min_size=1, max_size=5).map(np.array))
def test_rotvec_round_trip_and_scipy(r: Array) -> None:
    q = rotvec_to_quaternion(r)
    assert q.shape == (*r.shape[:-1], 4)
    assert_canonical(q)
    assert_same_rotation(q, Rotation.from_rotvec(r).as_quat())
    np.testing.assert_allclose(quaternion_to_rotvec(q), r, atol=1e-9)
    np.testing.assert_allclose(quaternion_to_rotvec(-q), r, atol=1e-9)


@SETTINGS
@given(quat_batch(3))
def test_quaternion_to_rotvec_matches_scipy(q: Array) -> None:
    r = quaternion_to_rotvec(q)
    assert r.shape == (3, 3)
    assert np.all(np.linalg.norm(r, axis=-1) <= np.pi + 1e-12)
    np.testing.assert_allclose(
        Rotation.from_rotvec(r).as_matrix(), Rotation.from_quat(q).as_matrix(), atol=1e-9
    )
    assert_same_rotation(rotvec_to_quaternion(r), q)
    np.testing.assert_allclose(np.linalg.norm(r, axis=-1), Rotation.from_quat(q).magnitude(), atol=1e-9)


def test_rotvec_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\)"):
        rotvec_to_quaternion(np.zeros(4))
    with pytest.raises(ValueError, match="non-finite"):
        rotvec_to_quaternion([np.nan, 0.0, 0.0])
    with pytest.raises(ValueError, match="zero-norm"):
        quaternion_to_rotvec(np.zeros(4))


# --------------------------------------------------------------------------- means


def _cluster(q0: Array, seed: int, n: int, std: float) -> tuple[Array, Array]:
    rng = np.random.default_rng(seed)
    r = rng.normal(scale=std, size=(n, 3))
    r = np.concatenate([r, -r])  # antithetic pairs: the Markley mean is then exactly q0
    return (Rotation.from_rotvec(r) * Rotation.from_quat(q0)).as_quat(), r


@SETTINGS
@given(quats, seeds)
def test_mean_quaternion_recovers_cluster_centre(q0: Array, seed: int) -> None:
    samples, _ = _cluster(q0, seed, 25, 0.05)
    m = mean_quaternion(samples)
    assert m.shape == (4,)
    assert_canonical(m)
    assert float(rotation_error_deg(q0, m)) < 1e-9
    # Without the antithetic symmetry, the mean is still within a few std / sqrt(S).
    lopsided = samples[:25]
    assert float(rotation_error_deg(q0, mean_quaternion(lopsided))) < np.degrees(5 * 0.05 * np.sqrt(3 / 25))


@SETTINGS
@given(quats, seeds, st.lists(st.booleans(), min_size=50, max_size=50))
def test_mean_quaternion_sign_invariant(q0: Array, seed: int, flips: list[bool]) -> None:
    samples, _ = _cluster(q0, seed, 25, 0.3)
    flipped = np.where(np.array(flips)[:, None], -samples, samples)
    np.testing.assert_allclose(mean_quaternion(flipped), mean_quaternion(samples), atol=1e-12)
    w = np.random.default_rng(seed).uniform(0.1, 1.0, size=50)
    np.testing.assert_allclose(mean_quaternion(flipped, w), mean_quaternion(samples, w), atol=1e-12)


@SETTINGS
@given(st.lists(quats, min_size=1, max_size=8).map(np.array), seeds)
def test_mean_quaternion_matches_scipy(q: Array, seed: int) -> None:
    w = np.asarray(np.random.default_rng(seed).uniform(0.1, 2.0, size=q.shape[0]), dtype=np.float64)
    # Ill-conditioned (tied top eigenvalues) sets have no unique mean: require a spectral gap.
    weight_options: list[Array | None] = [None, w]
    for weights in weight_options:
        ww: Array = np.ones(q.shape[0]) if weights is None else weights
        ev = np.linalg.eigvalsh(np.einsum("s,si,sj->ij", ww, q, q) / ww.sum())
        assume(ev[-1] - ev[-2] > 1e-3)
        ours = mean_quaternion(q, weights)
        assert_canonical(ours)
        assert_same_rotation(ours, Rotation.from_quat(q).mean(weights=weights).as_quat(), atol=1e-6)


def test_mean_quaternion_weights_and_shapes() -> None:
    a = Rotation.from_rotvec([0.0, 0.0, 0.2]).as_quat()
    b = Rotation.from_rotvec([0.0, 0.0, -0.2]).as_quat()
    assert_same_rotation(mean_quaternion(np.stack([a, b]), [1.0, 0.0]), a, atol=1e-12)
    assert_same_rotation(mean_quaternion(np.stack([a, b])), [0.0, 0.0, 0.0, 1.0], atol=1e-12)
    assert_same_rotation(mean_quaternion(a[None]), a, atol=1e-12)
    with pytest.raises(ValueError, match="non-negative"):
        mean_quaternion(np.stack([a, b]), [1.0, -1.0])
    with pytest.raises(ValueError, match="positive sum"):
        mean_quaternion(np.stack([a, b]), [0.0, 0.0])
    with pytest.raises(ValueError, match=r"weights must have shape"):
        mean_quaternion(np.stack([a, b]), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"\(S, 4\)"):
        mean_quaternion(a)
    with pytest.raises(ValueError, match=r"\(S, 4\)"):
        mean_quaternion(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="zero-norm"):
        mean_quaternion(np.stack([a, np.zeros(4)]))


@SETTINGS
@given(trans_batch(6), quat_batch(6), seeds)
def test_mean_pose_weighted(t: Array, q: Array, seed: int) -> None:
    w = np.random.default_rng(seed).uniform(0.1, 2.0, size=6)
    t_m, q_m = mean_pose(t, q, w)
    np.testing.assert_allclose(t_m, (w[:, None] * t).sum(axis=0) / w.sum(), atol=1e-9)
    np.testing.assert_array_equal(q_m, mean_quaternion(q, w))
    t_u, _ = mean_pose(t, q)
    np.testing.assert_allclose(t_u, t.mean(axis=0), atol=1e-9)
    with pytest.raises(ValueError, match="same number of samples"):
        mean_pose(t[:5], q)


# --------------------------------------------------------------------------- covariance


_STD = np.array([0.3, 0.1, 0.05, 0.02, 0.04, 0.01])
_CORR = np.eye(6)
_CORR[0, 1] = _CORR[1, 0] = 0.6
_CORR[2, 5] = _CORR[5, 2] = -0.5
_CORR[3, 4] = _CORR[4, 3] = 0.4
_CORR[0, 3] = _CORR[3, 0] = 0.3
COV_TRUE = _CORR * np.outer(_STD, _STD)


def _gaussian_pose_samples(t0: Array, q0: Array, seed: int, n: int) -> tuple[Array, Array, Array]:
    e = np.random.default_rng(seed).multivariate_normal(np.zeros(6), COV_TRUE, size=n)
    t = t0 + e[:, :3]
    q = (Rotation.from_rotvec(e[:, 3:]) * Rotation.from_quat(q0)).as_quat()  # R_i = Exp(r_i) R0
    return t, q, e


# No shrinking: each example draws 20000 samples, shrinking a failure would take minutes.
@settings(max_examples=5, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(translations, quats, seeds)
def test_pose_covariance_recovers_known_gaussian(t0: Array, q0: Array, seed: int) -> None:
    t, q, e = _gaussian_pose_samples(t0, q0, seed, 20000)
    cov = pose_covariance(t, q)
    assert cov.shape == (6, 6) and cov.dtype == np.float64
    np.testing.assert_array_equal(cov, cov.T)
    scale = np.sqrt(np.outer(np.diag(COV_TRUE), np.diag(COV_TRUE)))
    # vs the generating covariance: sampling error ~ 1/sqrt(20000) = 0.7 % of scale
    assert np.all(np.abs(cov - COV_TRUE) < 0.05 * scale), (cov - COV_TRUE) / scale
    # vs the empirical covariance of the drawn perturbations (much tighter: only the mean estimate differs)
    assert np.all(np.abs(cov - np.cov(e.T)) < 2e-3 * scale), (cov - np.cov(e.T)) / scale
    # about the true means, residuals are exactly the drawn perturbations
    cov_true_mean = pose_covariance(t, q, t_mean=t0, q_mean=q0)
    np.testing.assert_allclose(cov_true_mean, e.T @ e / (len(e) - 1), rtol=1e-9, atol=1e-15)
    # right (body-frame) perturbation would smear rot-z variance elsewhere unless R0 is about z;
    # check the map-frame diagonal explicitly.
    np.testing.assert_allclose(np.diag(cov)[3:], _STD[3:] ** 2, rtol=0.05)


@FEW
@given(trans_batch(5), quats, seeds)
def test_pose_covariance_small_sample_formula(t: Array, q0: Array, seed: int) -> None:
    r = np.random.default_rng(seed).normal(scale=0.1, size=(5, 3))
    q = (Rotation.from_rotvec(r) * Rotation.from_quat(q0)).as_quat()
    cov = pose_covariance(t, q)
    np.testing.assert_array_equal(cov, cov.T)
    t_m, q_m = mean_pose(t, q)
    res_rot = (Rotation.from_quat(q) * Rotation.from_quat(q_m).inv()).as_rotvec()
    res = np.hstack([t - t_m, res_rot])
    np.testing.assert_allclose(cov, res.T @ res / 4, rtol=1e-9, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(cov) > -1e-9)  # PSD
    # sign flips of individual samples don't matter
    np.testing.assert_allclose(pose_covariance(t, -q), cov, rtol=1e-9, atol=1e-12)


def test_pose_covariance_errors() -> None:
    q = np.array([[0.0, 0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="at least 2 samples"):
        pose_covariance(np.zeros((1, 3)), q)
    with pytest.raises(ValueError, match="same number of samples"):
        pose_covariance(np.zeros((3, 3)), np.tile(q, (2, 1)))
    with pytest.raises(ValueError, match=r"\(S, 3\)"):
        pose_covariance(np.zeros(3), q[0])
    with pytest.raises(ValueError, match="t_mean and q_mean"):
        pose_covariance(np.zeros((2, 3)), np.tile(q, (2, 1)), t_mean=np.zeros((2, 3)))


# --------------------------------------------------------------------------- Pose dataclass


@SETTINGS
@given(translations, raw_quats, translations, quats)
def test_pose_dataclass_delegates(t1: Array, v1: Array, t2: Array, q2: Array) -> None:
    a = Pose(t1, v1 * 3.0)
    assert_canonical(a.q)
    assert_same_rotation(a.q, v1 / np.linalg.norm(v1))
    b = Pose(t2, q2)
    np.testing.assert_allclose(a.matrix(), scipy_matrix(t1, v1 / np.linalg.norm(v1)), atol=1e-12)
    ab = a @ b
    np.testing.assert_allclose(ab.matrix(), a.matrix() @ b.matrix(), atol=1e-9)
    np.testing.assert_array_equal(a.compose(b).t, ab.t)
    np.testing.assert_allclose(a.inverse().matrix(), np.linalg.inv(a.matrix()), atol=1e-9)
    c = Pose.from_matrix(a.matrix())
    np.testing.assert_allclose(c.t, a.t, atol=1e-12)
    assert_same_rotation(c.q, a.q)
    np.testing.assert_allclose(a.transform_points(t2), Rotation.from_quat(a.q).apply(t2) + t1, atol=1e-9)


def test_pose_identity_frozen_and_validation() -> None:
    ident = Pose.identity()
    np.testing.assert_array_equal(ident.matrix(), np.eye(4))
    p = Pose(np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 0.0, -2.0]))
    np.testing.assert_array_equal(p.q, [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal((p @ ident).matrix(), p.matrix())
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.t = np.zeros(3)  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        p.t[0] = 5.0
    with pytest.raises(ValueError, match=r"Pose.t must have shape \(3,\)"):
        Pose(np.zeros(4), np.array([0.0, 0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"Pose.q must have shape \(4,\)"):
        Pose(np.zeros(3), np.array([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="zero-norm"):
        Pose(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        Pose.from_matrix(np.eye(4)[None])

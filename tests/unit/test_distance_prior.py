"""The distance prior: position variance that grows away from the training path, in the estimate
and in the bundle (`pose_regressor.distance_prior`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.spatial import cKDTree

from pose_regressor.bundle import (
    TRAINING_POSITIONS_FILE,
    YAML_FILE,
    BundleError,
    load_bundle,
    preprocess,
    write_bundle,
    write_training_positions,
)
from pose_regressor.distance_prior import MAX_TRAINING_POSITIONS, DistancePrior
from pose_regressor.engines import load_engine
from pose_regressor.localizer import Localizer
from pose_regressor.pipeline import LocalizationResult
from pose_regressor.uncertainty import CovarianceScale, dropout_masks, estimate_from_samples
from tests.unit.bundle_fixtures import CAMERA_SIZE, make_bundle
from tests.unit.pipeline_fixtures import bundle_pipeline, publish_one_set

LINE = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])


def test_the_variance_is_k_times_the_squared_distance_to_the_nearest_training_position() -> None:
    prior = DistancePrior(LINE, 2.0)
    np.testing.assert_allclose(
        prior.nearest_distances(np.array([[3.0, 4.0, 0.0], [10.0, 0.0, 1.0]])), [5.0, 1.0]
    )
    assert prior.variance(np.array([3.0, 4.0, 0.0])) == pytest.approx(50.0)
    assert prior.variance(np.array([10.0, 0.0, 0.0])) == 0.0


def test_nearest_distances_in_chunks_match_a_kd_tree() -> None:
    rng = np.random.default_rng(0)
    positions, points = rng.normal(size=(3000, 3)), rng.normal(size=(2500, 3)) * 2
    prior = DistancePrior(positions, 1.0)  # 4M elements per chunk: 1,333 points at a time
    np.testing.assert_allclose(
        prior.nearest_distances(points), cKDTree(positions).query(points)[0], atol=1e-12
    )


@pytest.mark.parametrize(
    ("positions", "k", "message"),
    [
        (np.zeros((4, 2)), 1.0, "shape (N, 3)"),
        (np.zeros((0, 3)), 1.0, "shape (N, 3)"),
        (np.zeros((MAX_TRAINING_POSITIONS + 1, 3)), 1.0, "shape (N, 3)"),
        (np.array([[0.0, np.nan, 0.0]]), 1.0, "finite"),
        (LINE, 0.0, "position_distance_variance must be in (0, "),
        (LINE, -1.0, "position_distance_variance must be in (0, "),
        (LINE, float("inf"), "position_distance_variance must be in (0, "),
    ],
)
def test_bad_priors_are_refused(positions: np.ndarray, k: float, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        DistancePrior(positions, k)


def test_the_estimate_adds_the_prior_to_the_position_variance_before_the_calibration() -> None:
    t = np.array([[3.0, 4.0, 0.0], [3.0, 4.0, 0.0]])  # no spread: the prior alone
    q = np.tile([0.0, 0.0, 0.0, 1.0], (2, 1))
    scale = CovarianceScale(0.5, 2.0)
    plain = estimate_from_samples(t, q, scale)
    with_prior = estimate_from_samples(t, q, scale, distance_prior=DistancePrior(LINE, 2.0))
    # 2 x 5^2 = 50 per position axis, times the position scale 0.5; rotation untouched
    np.testing.assert_allclose(
        with_prior.covariance - plain.covariance, np.diag([25.0] * 3 + [0.0] * 3), atol=1e-12
    )
    np.testing.assert_array_equal(with_prior.translation, plain.translation)


def _bundle_with_prior(root: Path, k: float = 0.5) -> Path:
    bundle = make_bundle(root, distance_prior=DistancePrior(LINE, k))
    write_training_positions(root, DistancePrior(LINE, k))
    write_bundle(bundle)
    return root


def test_a_bundle_carries_its_training_positions_and_the_localizer_uses_them(tmp_path: Path) -> None:
    root = _bundle_with_prior(tmp_path / "b")
    data = yaml.safe_load((root / YAML_FILE).read_text())
    assert data["distance_prior"] == {
        "variance_per_squared_distance": 0.5,
        "file": TRAINING_POSITIONS_FILE,
        "positions": 2,
    }
    bundle = load_bundle(root)
    assert bundle.distance_prior is not None and bundle.distance_prior.k == 0.5
    np.testing.assert_array_equal(bundle.distance_prior.positions, LINE)
    plain = make_bundle(tmp_path / "plain")
    images = [np.full((CAMERA_SIZE[1], CAMERA_SIZE[0], 3), 7, np.uint8)] * 2
    with_prior = Localizer(bundle, backend="onnxruntime", threads=1).localize(images)
    without = Localizer(plain, backend="onnxruntime", threads=1).localize(images)
    np.testing.assert_allclose(with_prior.translation, without.translation)
    extra = 0.5 * np.min(np.sum((LINE - with_prior.translation) ** 2, axis=1))
    scale = bundle.covariance_scale.position  # make_bundle's 2.5
    np.testing.assert_allclose(
        np.diag(with_prior.covariance - without.covariance), [scale * extra] * 3 + [0.0] * 3, rtol=1e-9
    )


def _edit(root: Path, **prior: object) -> None:
    data = yaml.safe_load((root / YAML_FILE).read_text())
    data["distance_prior"].update(prior)
    (root / YAML_FILE).write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / TRAINING_POSITIONS_FILE).unlink(), "train_positions.npy does not exist"),
        (
            lambda root: _edit(root, file="../elsewhere.npy"),
            "distance_prior.file must be train_positions.npy",
        ),
        (lambda root: _edit(root, positions=3), "must hold float positions of shape (3, 3)"),
        (
            lambda root: _edit(root, variance_per_squared_distance=0),
            "distance_prior.variance_per_squared_distance",
        ),
        (
            lambda root: _edit(root, variance_per_squared_distance="big"),
            "distance_prior.variance_per_squared_distance",
        ),
        (lambda root: _edit(root, extra=1), "distance_prior must be a mapping of exactly"),
        (lambda root: np.save(root / TRAINING_POSITIONS_FILE, np.array([[0.0, np.inf, 0.0]] * 2)), "finite"),
        (
            lambda root: np.save(root / TRAINING_POSITIONS_FILE, np.zeros((2, 3), dtype=np.int64)),
            "float positions",
        ),
        (
            lambda root: np.save(root / TRAINING_POSITIONS_FILE, np.array([{"a": 1}] * 2, dtype=object)),
            "cannot read",
        ),
        (lambda root: (root / TRAINING_POSITIONS_FILE).write_bytes(b"\x93NUMPY garbage"), "cannot read"),
        (
            lambda root: (root / TRAINING_POSITIONS_FILE).write_bytes(b"0" * 10_000),
            "is larger than 2 positions",
        ),
    ],
)
def test_a_damaged_distance_prior_is_refused_in_one_line(
    tmp_path: Path, damage: Callable[[Path], object], message: str
) -> None:
    root = _bundle_with_prior(tmp_path / "b")
    damage(root)
    with pytest.raises(BundleError, match=re.escape(message)) as caught:
        load_bundle(root)
    assert "\n" not in str(caught.value)


def test_the_pipeline_publishes_the_covariance_with_the_prior(tmp_path: Path) -> None:
    """The node's pipeline: the bundle's prior in PipelineConfig gives the Localizer's covariance."""
    bundle = load_bundle(_bundle_with_prior(tmp_path / "b", k=3.0))
    images = [np.full((CAMERA_SIZE[1], CAMERA_SIZE[0], 3), 40 * i, np.uint8) for i in (1, 2)]
    expected = Localizer(bundle, backend="onnxruntime", mc_samples=4, seed=5, threads=1).localize(images)
    results: list[LocalizationResult] = []
    engine = load_engine(bundle, "onnxruntime", threads=1)
    pipe = bundle_pipeline(bundle, engine, results, mc_samples=4, seed=5)
    publish_one_set(pipe, images, results)
    np.testing.assert_allclose(results[0].estimate.covariance, expected.covariance, rtol=1e-9, atol=1e-15)
    # the same engine rows without the prior: the pipeline's position variance is larger by the
    # calibrated k d^2, its rotation block the same
    masks = dropout_masks(4, bundle.hidden_dim, bundle.dropout, np.random.default_rng(5))
    out = engine.infer_outputs(preprocess(images, bundle), masks)
    without = estimate_from_samples(out.translation, out.rotation, bundle.covariance_scale)
    extra = bundle.covariance_scale.position * 3.0 * np.min(np.sum((LINE - without.translation) ** 2, axis=1))
    assert extra > 1.0
    np.testing.assert_allclose(
        np.diag(results[0].estimate.covariance - without.covariance), [extra] * 3 + [0.0] * 3, rtol=1e-9
    )
    with pytest.raises(ValueError, match="distance_prior"):
        pipe.reconfigure(distance_prior=None)

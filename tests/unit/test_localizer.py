"""`Localizer`, the Python API of the README: the same numbers as the engine and the MC estimate,
and the README's example runs as written (on a test bundle)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pose_regressor.bundle import load_bundle, preprocess
from pose_regressor.engines import load_engine
from pose_regressor.localizer import Localizer
from pose_regressor.uncertainty import CovarianceScale, dropout_masks, estimate_from_samples
from tests.unit.bundle_fixtures import make_bundle

README = Path(__file__).resolve().parents[2] / "README.md"


def _images(seed: int, count: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(count)]


# a plain scale, and a calibration with an exponent per group (what eval fits on 200+ val frames)
SHAPED = CovarianceScale(2.5, 0.5, position_exponent=2.0, rotation_exponent=3.0, position_reference_std=0.01,
                         rotation_reference_std=0.01)  # fmt: skip


@pytest.mark.parametrize("scale", [CovarianceScale.uniform(2.5), SHAPED], ids=["plain", "exponents"])
def test_localize_equals_preprocess_infer_estimate(tmp_path: Path, scale: CovarianceScale) -> None:
    bundle = make_bundle(tmp_path / "b", covariance_scale=scale)
    assert load_bundle(bundle.path).covariance_scale == scale  # through bundle.yaml
    images = _images(1)
    localizer = Localizer(bundle.path, backend="onnxruntime", mc_samples=8, seed=3)
    estimate = localizer.localize(images)
    engine = load_engine(bundle, "onnxruntime")
    masks = dropout_masks(8, bundle.hidden_dim, bundle.dropout, np.random.default_rng(3))
    t, q = engine.infer(preprocess(images, bundle), masks)
    expected = estimate_from_samples(t, q, scale)
    if scale.has_exponents:  # the exponent is applied, not dropped on the way
        plain = estimate_from_samples(t, q, CovarianceScale(2.5, 0.5))
        assert not np.allclose(plain.covariance, expected.covariance, rtol=1e-3)
    np.testing.assert_allclose(estimate.translation, expected.translation, atol=1e-9)
    np.testing.assert_allclose(estimate.quat_xyzw, expected.quat_xyzw, atol=1e-9)
    np.testing.assert_allclose(estimate.covariance, expected.covariance, rtol=1e-9, atol=1e-15)
    assert estimate.samples == 8 and localizer.camera_names == list(bundle.camera_names)


def test_zero_samples_is_the_deterministic_pose_and_defaults_come_from_the_bundle(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", mc_samples=5)
    assert Localizer(bundle, backend="onnxruntime").mc_samples == 5
    deterministic = Localizer(bundle, backend="onnxruntime", mc_samples=0)
    first, second = (deterministic.localize(_images(2)) for _ in range(2))
    assert first.samples == 1
    np.testing.assert_array_equal(first.translation, second.translation)


@pytest.mark.parametrize("samples", [-1, 257])
def test_mc_samples_out_of_range(tmp_path: Path, samples: int) -> None:
    with pytest.raises(ValueError, match=r"mc_samples must be in \[0, 256\]"):
        Localizer(make_bundle(tmp_path / "b"), backend="onnxruntime", mc_samples=samples)


def test_wrong_images_are_one_clear_error(tmp_path: Path) -> None:
    localizer = Localizer(make_bundle(tmp_path / "b"), backend="onnxruntime")
    with pytest.raises(ValueError, match="expected 2 images"):
        localizer.localize(_images(0, count=1))
    with pytest.raises(ValueError, match="must be RGB"):
        localizer.localize([np.zeros((4, 4), np.uint8)] * 2)


def test_the_readme_python_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README has one Python example"
    bundle = make_bundle(tmp_path / "bundle")
    code = blocks[0].replace('"out/demo/bundle"', repr(str(bundle.path)))
    assert code != blocks[0], "the example loads out/demo/bundle"
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "(6, 6)" in printed

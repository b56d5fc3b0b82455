"""`pose_regressor.engines` on a hand-built bundle: ONNX Runtime results, input checks, `load_engine`."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pose_regressor.bundle import ModelBundle
from pose_regressor.engines import (
    EngineError,
    EngineInputError,
    EngineUnavailableError,
    load_engine,
    tensorrt_unavailable_reasons,
)
from pose_regressor.engines.onnxruntime_engine import OnnxRuntimeEngine
from pose_regressor.uncertainty import dropout_masks
from tests.unit.bundle_fixtures import HIDDEN, INPUT_SIZE, expected_outputs, make_bundle

SHAPE = (2, INPUT_SIZE[1], INPUT_SIZE[0], 3)


@pytest.fixture
def bundle(tmp_path: Path) -> ModelBundle:
    return make_bundle(tmp_path / "bundle")


@pytest.fixture
def engine(bundle: ModelBundle) -> OnnxRuntimeEngine:
    return OnnxRuntimeEngine(bundle, providers=["CPUExecutionProvider"], threads=1)


def _images(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, SHAPE, dtype=np.uint8)


def test_onnxruntime_computes_the_graph_with_reused_buffers(engine: OnnxRuntimeEngine) -> None:
    rng = np.random.default_rng(0)
    results = []
    for call, s in enumerate([1, 8, 8, 3, 8, 1]):  # changing S and images between calls
        images = _images(call)
        masks = dropout_masks(s, HIDDEN, 0.25, rng) if call else engine.deterministic_mask()
        t, q = engine.infer(images, masks)
        t_ref, q_ref = expected_outputs(images, masks)
        assert t.dtype == q.dtype == np.float64 and t.shape == (s, 3) and q.shape == (s, 4)
        np.testing.assert_allclose(t, t_ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(q, q_ref, rtol=1e-5, atol=1e-6)
        results.append((t.copy(), t))
    for copy, returned in results:  # returned arrays never alias the engine's buffers
        np.testing.assert_array_equal(returned, copy)


def test_describe(engine: OnnxRuntimeEngine) -> None:
    description = engine.describe()
    assert (description.backend, description.device, description.precision) == ("onnxruntime", "cpu", "fp32")
    assert description.details["providers"] == ["CPUExecutionProvider"]
    assert description.details["intra_op_threads"] == 1
    assert str(description) == "onnxruntime on cpu (fp32)"


BAD_INPUTS: dict[str, tuple[Any, Any, str]] = {
    "float images": (
        np.zeros(SHAPE, np.float32),
        np.ones((1, HIDDEN), np.float32),
        r"images must be uint8 RGB .* got float32",
    ),
    "list images": ([[0]], np.ones((1, HIDDEN), np.float32), r"images must be a numpy array, got list"),
    "wrong T": (
        np.zeros((1, *SHAPE[1:]), np.uint8),
        np.ones((1, HIDDEN), np.float32),
        r"images must have shape \[T, H, W, 3\] = \[2, 6, 8, 3\] \(2 cameras: front, rear; 8x6 pixels after "
        r"pose_regressor.bundle.preprocess\), got \[1, 6, 8, 3\]",
    ),
    "wrong H W": (
        np.zeros((2, 12, 16, 3), np.uint8),
        np.ones((1, HIDDEN), np.float32),
        r"got \[2, 12, 16, 3\]",
    ),
    "channels first": (
        np.zeros((2, 3, 6, 8), np.uint8),
        np.ones((1, HIDDEN), np.float32),
        r"got \[2, 3, 6, 8\]",
    ),
    "wrong D": (
        np.zeros(SHAPE, np.uint8),
        np.ones((4, HIDDEN + 1), np.float32),
        r"masks must have shape \[S, D\] with S >= 1 and D = 4, got \[4, 5\]",
    ),
    "1-D masks": (np.zeros(SHAPE, np.uint8), np.ones(HIDDEN, np.float32), r"got \[4\]"),
    "no samples": (np.zeros(SHAPE, np.uint8), np.ones((0, HIDDEN), np.float32), r"got \[0, 4\]"),
    "bool masks": (np.zeros(SHAPE, np.uint8), np.ones((1, HIDDEN), bool), r"masks must be floating point"),
    "list masks": (np.zeros(SHAPE, np.uint8), [[1.0] * HIDDEN], r"masks must be a numpy array, got list"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_input_validation(engine: OnnxRuntimeEngine, case: str) -> None:
    images, masks, message = BAD_INPUTS[case]
    with pytest.raises(EngineInputError, match=message):
        engine.infer(images, masks)


def test_float64_masks_are_accepted(engine: OnnxRuntimeEngine) -> None:
    t64, _ = engine.infer(_images(0), np.ones((2, HIDDEN), np.float64))
    t32, _ = engine.infer(_images(0), np.ones((2, HIDDEN), np.float32))
    np.testing.assert_array_equal(t64, t32)


def test_auto_picks_onnxruntime_cpu_and_says_why(
    bundle: ModelBundle, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pose_regressor.engines"):
        engine = load_engine(str(bundle.path), threads=1)  # a path works too
    assert isinstance(engine, OnnxRuntimeEngine)
    assert engine.describe().device == "cpu"
    lines = [r.getMessage() for r in caplog.records if r.name == "pose_regressor.engines"]
    assert len(lines) == 1
    assert lines[0].startswith("inference engine: onnxruntime on cpu (fp32)")
    assert "skipped tensorrt (" in lines[0] and "onnxruntime CUDA (" in lines[0]
    assert "`tensorrt` Python package is not installed" in lines[0]


def test_unknown_backend(bundle: ModelBundle) -> None:
    with pytest.raises(ValueError, match=r"unknown inference backend 'cuda'; choose one of auto, tensorrt, "):
        load_engine(bundle, "cuda")


def test_tensorrt_backend_says_why_it_is_unavailable(bundle: ModelBundle) -> None:
    reasons = tensorrt_unavailable_reasons()
    assert reasons  # no TensorRT on this machine
    with pytest.raises(EngineUnavailableError, match=r"TensorRT backend unavailable: .*") as info:
        load_engine(bundle, "tensorrt")
    for reason in reasons:
        assert reason in str(info.value)


def test_missing_provider(bundle: ModelBundle) -> None:
    with pytest.raises(
        EngineUnavailableError, match=r"lacks execution provider\(s\) \['NoSuchExecutionProvider'\]"
    ):
        load_engine(bundle, "onnxruntime", providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="providers can only be given with backend='onnxruntime'"):
        load_engine(bundle, providers=["CPUExecutionProvider"])


def test_graph_that_does_not_match_bundle_yaml(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", graph_hidden=HIDDEN - 1)
    with pytest.raises(
        EngineError, match=r"takes images \[2, 6, 8, 3\] and dropout_mask \['S', 3\], but bundle.yaml"
    ):
        load_engine(bundle, "onnxruntime")


def test_corrupt_graph(bundle: ModelBundle) -> None:
    data = bundle.onnx_path.read_bytes()
    bundle.onnx_path.write_bytes(data[:1] + b"\xff" * (len(data) - 1))  # passes the cheap header check
    with pytest.raises(EngineError, match="ONNX Runtime cannot load"):
        load_engine(bundle, "onnxruntime")


def test_torch_backend_needs_model_pt(bundle: ModelBundle) -> None:
    with pytest.raises(EngineError, match=r"has no model.pt \(export the bundle with pose-train export\)"):
        load_engine(bundle, "torch")


def test_robot_modules_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import pose_regressor.bundle, pose_regressor.engines, pose_regressor.engines.onnxruntime_engine\n"
        "import pose_regressor.engines.torch_engine\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'pose_regressor_training' not in sys.modules, 'training package imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr

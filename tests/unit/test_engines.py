"""`pose_regressor.engines` on a hand-built bundle: ONNX Runtime results, input checks, `load_engine`."""

from __future__ import annotations

import importlib.metadata
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomllib

import pose_regressor.engines as engines_module
from pose_regressor.bundle import ModelBundle
from pose_regressor.engines import (
    EngineDescription,
    EngineError,
    EngineInputError,
    EngineUnavailableError,
    InferenceEngine,
    load_engine,
    tensorrt_unavailable_reasons,
)
from pose_regressor.engines.onnxruntime_engine import OnnxRuntimeEngine
from pose_regressor.uncertainty import dropout_masks
from tests.unit.bundle_fixtures import HIDDEN, INPUT_SIZE, expected_outputs, make_bundle

SHAPE = (2, INPUT_SIZE[1], INPUT_SIZE[0], 3)
REPO = Path(__file__).resolve().parents[2]


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


def test_robot_engine_modules_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import pose_regressor.bundle, pose_regressor.engines, pose_regressor.engines.onnxruntime_engine\n"
        "import pose_regressor.engines.tensorrt_engine, pose_regressor.engines.cuda_memory\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'pose_regressor_training' not in sys.modules, 'training package imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------- engines registered by entry points
class StubEngine(InferenceEngine):
    """An engine another distribution might register: returns zeros."""

    backend = "torch"

    def __init__(self, bundle: ModelBundle, device: str = "cpu") -> None:
        super().__init__(bundle)
        self.device = device

    def _infer(self, images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = masks.shape[0]
        return np.zeros((s, 3)), np.tile([0.0, 0.0, 0.0, 1.0], (s, 1))

    def describe(self) -> EngineDescription:
        return EngineDescription(self.backend, self.device, "fp32")


@pytest.fixture
def entry_point_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Installs a distribution (a bare .dist-info on sys.path) declaring `entry_points.txt` lines
    under a group of this test's own, which `load_engine` then reads."""
    group = f"pose_regressor.engines.test{tmp_path.name}"
    monkeypatch.setattr(engines_module, "ENGINE_ENTRY_POINTS", group)

    def install(lines: str) -> None:
        info = tmp_path / "site" / "engine_plugin-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: engine-plugin\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[{group}]\n{lines}\n")
        monkeypatch.syspath_prepend(str(tmp_path / "site"))

    return install


def test_load_engine_finds_a_registered_torch_engine(
    bundle: ModelBundle, entry_point_group: Callable[[str], None]
) -> None:
    entry_point_group(f"torch = {__name__}:StubEngine")
    engine = load_engine(bundle, "torch", device="cuda:1")
    assert isinstance(engine, StubEngine) and engine.device == "cuda:1"
    t, q = engine.infer(_images(0), np.ones((3, HIDDEN), np.float32))
    assert t.shape == (3, 3) and q.shape == (3, 4)


def test_unregistered_torch_backend_names_the_package_to_install(
    bundle: ModelBundle, entry_point_group: Callable[[str], None]
) -> None:
    entry_point_group("other = math:sqrt")  # the group exists, without a torch engine
    with pytest.raises(
        EngineUnavailableError,
        match=r"^torch backend unavailable: install the training package \(pose_regressor_training\); ",
    ):
        load_engine(bundle, "torch")


def test_a_registered_engine_that_cannot_be_imported_is_unavailable(
    bundle: ModelBundle, entry_point_group: Callable[[str], None]
) -> None:
    entry_point_group("torch = no_such_module_here.engine:TorchEngine")
    with pytest.raises(
        EngineUnavailableError,
        match=r"^torch backend unavailable: cannot load no_such_module_here.engine:TorchEngine "
        r"\(ModuleNotFoundError: No module named 'no_such_module_here'\)$",
    ):
        load_engine(bundle, "torch")


def test_the_training_distribution_registers_its_torch_engine() -> None:
    # What `make setup` installs: the declaration in training/pyproject.toml names the real class.
    pyproject = tomllib.loads((REPO / "training" / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"]["pose_regressor.engines"]
    assert declared == {"torch": "pose_regressor_training.torch_engine:TorchEngine"}
    point = importlib.metadata.EntryPoint("torch", declared["torch"], "pose_regressor.engines")
    engine_class = point.load()
    assert issubclass(engine_class, InferenceEngine) and engine_class.backend == "torch"

"""`TensorRTEngine` without a GPU: cache key, plan usability, atomic writes, precision / INT8 guards,
`load_engine` fallbacks, and the whole engine run against a fake `tensorrt` module on CPU memory.

The fake (`FakeTensorRT`) implements the slice of the TensorRT 10 Python API the engine uses, as
documented: it "builds" a plan recording the profile and flags, drives the INT8 calibrator, and
executes the bundle_fixtures graph by reading and writing the tensor addresses it is given. Those
come from `HostMemory`, a `DeviceMemory` on CPU memory standing in for cudart, so buffer handling,
shapes and copies are exercised for real. It checks our reading of the API, not TensorRT or CUDA
themselves: the tests marked ``gpu`` do that where TensorRT and a CUDA device exist.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import importlib.util
import json
import logging
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

import pose_regressor.engines as engines_module
from pose_regressor import files
from pose_regressor.bundle import BundleCamera, ModelBundle
from pose_regressor.engines import (
    EngineError,
    EngineInputError,
    EngineUnavailableError,
    load_engine,
    tensorrt_plan,
)
from pose_regressor.engines import tensorrt_engine as trt_engine
from pose_regressor.engines.cuda_memory import GpuInfo, cuda_binding_installed, import_cudart
from pose_regressor.engines.onnxruntime_engine import OnnxRuntimeEngine
from pose_regressor.engines.tensorrt_engine import TensorRTEngine
from pose_regressor.engines.tensorrt_plan import (
    atomic_write_bytes,
    int8_calibration_problem,
    parse_version,
    plan_cache_key,
    plan_metadata,
    plan_problem,
    profile_shapes,
    resolve_precision,
)
from pose_regressor.uncertainty import dropout_masks
from tests.unit.bundle_fixtures import HIDDEN, expected_log_variance, expected_outputs, make_bundle
from tests.unit.fake_cudart import FakeCudart

SHAPES = {"images": ((2, 6, 8, 3),) * 3, "dropout_mask": ((1, 4), (8, 4), (8, 4))}
KEY_ARGS: dict[str, Any] = {
    "gpu_name": "NVIDIA GeForce RTX 4090",
    "compute_capability": (8, 9),
    "trt_version": "10.3.0",
    "precision": "fp16",
    "shapes": SHAPES,
}
SAFE = re.compile(r"^[a-z0-9._-]+$")
REAL_OPEN_GPU = trt_engine._open_gpu  # the `fake` fixture replaces it; one test puts it back


# ------------------------------------------------------------------------------- the fake
class FakeTensorRT:
    """A `tensorrt` module stand-in (see the module docstring); `state` records what happened."""

    MAGIC = b"FAKEPLAN"

    def __init__(self, version: str = "10.3.0", fast_fp16: bool | None = True) -> None:
        self.version = version
        self.fast_fp16 = fast_fp16
        self.parse_ok = True
        self.build_ok = True
        self.builds: list[dict[str, Any]] = []
        self.calibration_batches = 0
        self.executions = 0
        self.stream = 0  # the stream handle execute_async_v3 must get (HostMemory's: 0)
        self.module = self._module()

    def _module(self) -> types.ModuleType:
        fake = self
        m = types.ModuleType("tensorrt")
        m.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
        m.__version__ = self.version

        class Severity(enum.IntEnum):
            INTERNAL_ERROR = 0
            ERROR = 1
            WARNING = 2
            INFO = 3
            VERBOSE = 4

        class ILogger:
            def __init__(self) -> None:
                pass

        ILogger.Severity = Severity  # type: ignore[attr-defined]
        m.ILogger = ILogger
        m.DataType = enum.Enum("DataType", "FLOAT HALF INT8 INT32 UINT8")
        m.TensorIOMode = enum.Enum("TensorIOMode", "NONE INPUT OUTPUT")
        m.MemoryPoolType = enum.Enum("MemoryPoolType", "WORKSPACE")
        m.BuilderFlag = enum.Enum("BuilderFlag", "FP16 INT8 TF32")

        class IInt8EntropyCalibrator2:
            def __init__(self) -> None:
                pass

        m.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

        class Network:
            def __init__(self) -> None:
                self.inputs: list[types.SimpleNamespace] = []
                self.outputs: list[str] = []

            @property
            def num_inputs(self) -> int:
                return len(self.inputs)

            def get_input(self, i: int) -> types.SimpleNamespace:
                return self.inputs[i]

        class OnnxParser:
            def __init__(self, network: Network, logger: Any) -> None:
                self.network, self.errors = network, []

            def parse_from_file(self, path: str) -> bool:
                try:
                    model = onnx.load(path)
                except Exception as exc:
                    self.errors = [f"cannot load: {exc}"]
                    return False
                if not fake.parse_ok:
                    self.errors = ["In node 3 (Conv): UNSUPPORTED_NODE"]
                    return False
                self.network.inputs = [types.SimpleNamespace(name=i.name) for i in model.graph.input]
                self.network.outputs = [o.name for o in model.graph.output]
                return True

            @property
            def num_errors(self) -> int:
                return len(self.errors)

            def get_error(self, i: int) -> str:
                return self.errors[i]

        class Profile:
            def __init__(self) -> None:
                self.shapes: dict[str, list[list[int]]] = {}

            def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
                self.shapes[name] = [list(low), list(opt), list(high)]

        class Config:
            def __init__(self) -> None:
                self.flags: set[str] = {"TF32"}  # TensorRT's default: TF32 allowed for FP32 layers
                self.pools: dict[str, int] = {}
                self.profiles: list[Profile] = []
                self.int8_calibrator: Any = None
                self.calibration_profile: Profile | None = None

            def set_memory_pool_limit(self, pool: Any, size: int) -> None:
                self.pools[pool.name] = size

            def set_flag(self, flag: Any) -> None:
                self.flags.add(flag.name)

            def clear_flag(self, flag: Any) -> None:
                self.flags.discard(flag.name)

            def add_optimization_profile(self, profile: Profile) -> int:
                self.profiles.append(profile)
                return len(self.profiles) - 1

            def set_calibration_profile(self, profile: Profile) -> bool:
                self.calibration_profile = profile
                return True

        class Builder:
            def __init__(self, logger: Any) -> None:
                self.logger = logger

            @property
            def platform_has_fast_fp16(self) -> bool:
                if fake.fast_fp16 is None:
                    raise AttributeError("platform_has_fast_fp16")  # TensorRT 11 removed it
                return fake.fast_fp16

            def create_network(self, flags: int) -> Network:
                assert flags == 0
                return Network()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def create_builder_config(self) -> Config:
                return Config()

            def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
                record = {
                    "flags": sorted(config.flags),
                    "pools": dict(config.pools),
                    "profile": config.profiles[0].shapes,
                    "calibration_batches": 0,
                }
                fake.builds.append(record)
                if not fake.build_ok:
                    self.logger.log(Severity.ERROR, "[fake] no implementation for a layer")
                    return None
                if "INT8" in config.flags:
                    record["calibration_profile"] = config.calibration_profile.shapes  # type: ignore[union-attr]
                    record["calibration_batches"] = fake.calibrate(config.int8_calibrator)
                meta = {
                    "version": fake.version,
                    "profile": record["profile"],
                    "flags": record["flags"],
                    "outputs": network.outputs,
                }
                return fake.MAGIC + json.dumps(meta).encode()

        class Context:
            def __init__(self, engine: Engine) -> None:
                self.engine = engine
                self.addresses: dict[str, int] = {}
                self.shapes: dict[str, tuple[int, ...]] = {}

            def set_tensor_address(self, name: str, address: int) -> bool:
                self.addresses[name] = address
                return True

            def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
                low, _, high = self.engine.profile[name]
                if not all(a <= b <= c for a, b, c in zip(low, shape, high, strict=True)):
                    return False
                self.shapes[name] = tuple(shape)
                return True

            def execute_async_v3(self, stream: int) -> bool:
                assert stream == fake.stream, f"execute_async_v3 got stream {stream}, not the engine's"
                fake.executions += 1
                images = read(self.addresses["images"], self.shapes["images"], np.uint8)
                masks = read(self.addresses["dropout_mask"], self.shapes["dropout_mask"], np.float32)
                t, q = expected_outputs(images.copy(), masks.copy())
                s = masks.shape[0]
                read(self.addresses["translation"], (s, 3), np.float32)[:] = t
                read(self.addresses["rotation"], (s, 4), np.float32)[:] = q
                if "log_variance" in self.engine.names:
                    read(self.addresses["log_variance"], (s, 6), np.float32)[:] = expected_log_variance(masks)
                return True

        class Engine:
            def __init__(self, meta: dict[str, Any]) -> None:
                self.profile = dict(meta["profile"])
                self.names = ("images", "dropout_mask", *meta["outputs"])  # the parsed graph's outputs
                self.num_io_tensors = len(self.names)

            def get_tensor_name(self, i: int) -> str:
                return self.names[i]

            def get_tensor_mode(self, name: str) -> Any:
                return m.TensorIOMode.INPUT if name in self.names[:2] else m.TensorIOMode.OUTPUT

            def get_tensor_dtype(self, name: str) -> Any:
                return m.DataType.UINT8 if name == "images" else m.DataType.FLOAT

            def get_tensor_profile_shape(self, name: str, index: int) -> list[list[int]]:
                assert index == 0
                return self.profile[name]

            def create_execution_context(self) -> Context:
                return Context(self)

        class Runtime:
            def __init__(self, logger: Any) -> None:
                self.logger = logger

            def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
                if not bytes(data).startswith(fake.MAGIC):
                    self.logger.log(Severity.ERROR, "[fake] the plan is not a serialized engine")
                    return None
                meta = json.loads(bytes(data)[len(fake.MAGIC) :])
                if meta["version"] != fake.version:
                    self.logger.log(Severity.ERROR, "[fake] plan built by another TensorRT version")
                    return None
                return Engine(meta)

        m.Builder, m.OnnxParser, m.Runtime = Builder, OnnxParser, Runtime
        return m

    def calibrate(self, calibrator: Any) -> int:
        assert calibrator.get_batch_size() == 1
        if calibrator.read_calibration_cache() is not None:
            return 0
        batches = 0
        while (pointers := calibrator.get_batch(["dropout_mask", "images"])) is not None:
            masks = read(pointers[0], (8, HIDDEN), np.float32)
            images = read(pointers[1], (2, 6, 8, 3), np.uint8)
            assert set(np.unique(masks)) <= {0.0, np.float32(1 / 0.75)}
            assert images.any()
            batches += 1
        calibrator.write_calibration_cache(b"fake calibration table")
        self.calibration_batches += batches
        return batches


def read(address: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A numpy view of `shape` elements of `dtype` at host address `address`."""
    count = int(np.prod(shape))
    ctype = ctypes.c_uint8 if dtype == np.uint8 else ctypes.c_float
    return np.ctypeslib.as_array((ctype * count).from_address(address)).reshape(shape)


class HostMemory:
    """`DeviceMemory` on CPU memory: "device" buffers are host allocations the fake TensorRT reads."""

    stream = 0  # the fake's execute_async_v3 checks that it gets this handle

    def __init__(self) -> None:
        self.buffers: list[np.ndarray] = []
        self.copies = 0
        self.synchronized = 0

    def device_buffer(self, nbytes: int) -> int:
        buffer = np.full(nbytes, 0xAB, np.uint8)  # garbage, like cudaMalloc'd memory
        self.buffers.append(buffer)
        return int(buffer.ctypes.data)

    def host_array(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.zeros(shape, dtype)

    def upload(self, device: int, host: np.ndarray) -> None:
        assert host.flags.c_contiguous
        ctypes.memmove(device, host.ctypes.data, host.nbytes)
        self.copies += 1

    def download(self, host: np.ndarray, device: int) -> None:
        assert host.flags.c_contiguous
        ctypes.memmove(host.ctypes.data, device, host.nbytes)
        self.copies += 1

    def synchronize(self) -> None:
        self.synchronized += 1

    def activate(self) -> None:
        pass

    def close(self) -> None:
        self.buffers.clear()


FAKE_GPU = "NVIDIA Fake GPU 40GB"


@pytest.fixture
def bundle(tmp_path: Path) -> ModelBundle:
    return make_bundle(tmp_path / "bundle")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTensorRT]:
    """The fake `tensorrt` importable, a fake GPU (CPU memory), and `load_engine` seeing both."""
    state = FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", state.module)
    monkeypatch.setattr(
        trt_engine, "_open_gpu", lambda index: (GpuInfo(FAKE_GPU, (8, 0), index), HostMemory())
    )
    monkeypatch.setattr(engines_module, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(engines_module, "cuda_binding_installed", lambda: True)
    yield state


def _images(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (2, 6, 8, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------ pure helpers
def test_cache_key_is_deterministic_distinct_and_filename_safe() -> None:
    key = plan_cache_key(**KEY_ARGS)
    assert key == plan_cache_key(**KEY_ARGS)
    assert SAFE.match(key) and len(key) <= 100
    assert key.startswith("nvidia-geforce-rtx-4090_sm89_trt10.3.0_fp16_")
    shapes_as_lists = {k: [list(s) for s in v] for k, v in SHAPES.items()}
    assert plan_cache_key(**{**KEY_ARGS, "shapes": shapes_as_lists}) == key  # tuples or lists alike
    variants = [
        {"gpu_name": "NVIDIA A100-SXM4-40GB"},
        {"gpu_name": "NVIDIA GeForce RTX 4090 "},  # slugs alike, digest differs
        {"compute_capability": (8, 6)},
        {"trt_version": "10.3.1"},
        {"precision": "fp32"},
        {"precision": "int8"},
        {"shapes": {**SHAPES, "dropout_mask": ((1, 4), (8, 4), (16, 4))}},
        {"shapes": {**SHAPES, "dropout_mask": ((1, 4), (4, 4), (8, 4))}},
        {"shapes": {**SHAPES, "images": ((4, 6, 8, 3),) * 3}},
    ]
    keys = {plan_cache_key(**{**KEY_ARGS, **v}) for v in variants}
    assert len(keys) == len(variants) and key not in keys
    odd = plan_cache_key('Orin (nvgpu)/../../etc: "x" ' * 5, (8, 7), "10.3.0.30+cuda12.6", "fp16", SHAPES)
    assert SAFE.match(odd) and len(odd) <= 100 and "/" not in odd and ".." not in odd.split("_")[0]


def test_plan_metadata_round_trips_through_json() -> None:
    meta = plan_metadata(**KEY_ARGS, onnx_sha256="ab" * 32)
    assert meta["key"] == plan_cache_key(**KEY_ARGS)
    assert json.loads(json.dumps(meta)) == meta  # so a sidecar read back compares equal
    assert meta["compute_capability"] == [8, 9] and meta["shapes"]["dropout_mask"][2] == [8, 4]


def test_plan_problem_decides_whether_a_cached_plan_is_usable() -> None:
    expected = plan_metadata(**KEY_ARGS, onnx_sha256="ab" * 32)
    good = {**expected, "plan_bytes": 1234, "built_at": "x", "build_seconds": 3.0}
    assert plan_problem(1234, good, expected) is None
    assert plan_problem(None, good, expected) == "no cached plan"
    assert "empty" in str(plan_problem(0, good, expected))
    assert "no readable sidecar" in str(plan_problem(1234, None, expected))
    assert "truncated or replaced" in str(plan_problem(1000, good, expected))
    assert "onnx_sha256 differs" in str(plan_problem(1234, {**good, "onnx_sha256": "cd" * 32}, expected))
    assert "tensorrt differs" in str(plan_problem(1234, {**good, "tensorrt": "10.2.0"}, expected))
    assert "format differs" in str(plan_problem(1234, {**good, "format": "other"}, expected))
    missing = {k: v for k, v in good.items() if k != "key"}
    assert "key differs" in str(plan_problem(1234, missing, expected))


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "engines" / "a.plan"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second version")
    assert target.read_bytes() == b"second version"
    assert oct(target.stat().st_mode & 0o777) == "0o644"

    def fail(_fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"third")
    assert target.read_bytes() == b"second version"  # the old file is untouched
    assert [p.name for p in target.parent.iterdir()] == ["a.plan"]


@pytest.mark.parametrize(
    ("version", "problem"),
    [
        ("10.0.1", None),
        ("10.1.0", None),  # deprecated, still there
        ("10.14.1.48", None),
        ("11.0.0", "removed in 11.0): use --precision fp16"),
        ("11.4.0", "explicit"),
        ("8.6.1", "older than 10.0"),
    ],
)
def test_int8_guard_follows_the_tensorrt_version(version: str, problem: str | None) -> None:
    result = int8_calibration_problem(version)
    if problem is None:
        assert result is None
    else:
        assert result is not None and problem in result


def test_resolve_precision() -> None:
    assert resolve_precision("fp16", "10.3.0", True) == ("fp16", None)
    assert resolve_precision("fp32", "10.3.0", True) == ("fp32", None)
    precision, note = resolve_precision("fp16", "10.3.0", False)
    assert precision == "fp32" and "no fast FP16" in str(note)
    precision, note = resolve_precision("fp16", "11.0.0", None)
    assert precision == "fp32" and "removed BuilderFlag.FP16" in str(note)
    assert resolve_precision("int8", "10.0.1", True) == ("int8", None)
    precision, note = resolve_precision("int8", "10.8.0", True)
    assert precision == "int8" and "deprecated since TensorRT 10.1" in str(note)
    with pytest.raises(EngineError, match=r"use --precision fp16 \(or fp32\), or quantize explicitly"):
        resolve_precision("int8", "11.1.0", None)
    with pytest.raises(ValueError, match="precision must be one of fp16, fp32, int8"):
        resolve_precision("bf16", "10.3.0", True)


def test_parse_version_and_profile_shapes(bundle: ModelBundle) -> None:
    assert parse_version("10.3.0.26") == (10, 3, 0, 26)
    assert parse_version("10.0.0b6") == (10, 0, 0)
    assert parse_version("11") == (11, 0, 0) >= (11, 0)
    with pytest.raises(ValueError, match="not a version"):
        parse_version("tensorrt")
    assert profile_shapes(bundle) == {
        "images": ((2, 6, 8, 3),) * 3,
        "dropout_mask": ((1, HIDDEN), (8, HIDDEN), (8, HIDDEN)),
    }
    assert profile_shapes(bundle, 32)["dropout_mask"] == ((1, HIDDEN), (8, HIDDEN), (32, HIDDEN))
    assert profile_shapes(bundle, 4)["dropout_mask"] == ((1, HIDDEN), (4, HIDDEN), (4, HIDDEN))


# ------------------------------------------------------------------------- on this machine
def test_tensorrt_here_is_unavailable_and_says_why(bundle: ModelBundle) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    with pytest.raises(EngineUnavailableError, match=r"`tensorrt` Python package is not installed"):
        load_engine(bundle, "tensorrt")
    with pytest.raises(EngineUnavailableError, match=r"`tensorrt` Python package cannot be imported"):
        TensorRTEngine(bundle)


def test_auto_falls_back_to_onnxruntime_and_logs_it(
    bundle: ModelBundle, caplog: pytest.LogCaptureFixture
) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    with caplog.at_level(logging.INFO, logger="pose_regressor.engines"):
        engine = load_engine(bundle, threads=1)
    assert isinstance(engine, OnnxRuntimeEngine)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "pose_regressor.engines"]
    assert "skipped tensorrt (the `tensorrt` Python package is not installed" in line


def test_robot_modules_stay_torch_free() -> None:
    code = (
        "import sys\n"
        "import pose_regressor.engines.tensorrt_engine, pose_regressor.bench\n"
        "assert 'torch' not in sys.modules and 'tensorrt' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


# Runs in a fresh interpreter where torch and the training package cannot be imported at all.
NO_TORCH_SCRIPT = """
import importlib.abc, importlib.util, sys, types

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "pose_regressor_training"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocked())
if importlib.util.find_spec("tensorrt") is None:  # a stand-in: the engine only reads its version first
    stand_in = types.ModuleType("tensorrt")
    stand_in.__version__ = "10.3.0"
    sys.modules["tensorrt"] = stand_in

from pose_regressor.bundle import load_bundle
from pose_regressor.engines import EngineUnavailableError
from pose_regressor.engines.tensorrt_engine import TensorRTEngine

try:
    TensorRTEngine(load_bundle(sys.argv[1]))
except EngineUnavailableError as exc:
    print(exc)
assert "torch" not in sys.modules and "pose_regressor_training" not in sys.modules
"""


def test_engine_without_torch_gets_to_the_first_cuda_call(bundle: ModelBundle) -> None:
    if engines_module.cuda_device_count() > 0:
        pytest.skip("a CUDA GPU is here: the first CUDA call succeeds (the gpu tests cover that)")
    assert cuda_binding_installed(), "cuda-bindings (requirements/dev.txt) must be installed"
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH_SCRIPT, str(bundle.path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # One line naming the CUDA call and CUDA's error (no driver here, so it cannot count devices).
    (line,) = result.stdout.splitlines()
    assert re.fullmatch(
        r"TensorRT backend unavailable: no usable CUDA GPU: CUDA cudaGetDeviceCount failed: "
        r"cudaError\w+ \(.+\)",
        line,
    ), line


# --------------------------------------------------------------------- against the fake API
def test_builds_caches_and_runs_a_plan(
    bundle: ModelBundle, fake: FakeTensorRT, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pose_regressor.engines"):
        engine = load_engine(bundle, "tensorrt", workspace_mb=64)
    assert isinstance(engine, TensorRTEngine)
    assert len(fake.builds) == 1
    build = fake.builds[0]
    assert build["flags"] == ["FP16", "TF32"] and build["pools"] == {"WORKSPACE": 64 << 20}
    assert build["profile"] == {"images": [[2, 6, 8, 3]] * 3, "dropout_mask": [[1, 4], [8, 4], [8, 4]]}
    assert "building a fp16 TensorRT plan" in caplog.text and "(no cached plan)" in caplog.text
    key = engine.plan_path.stem
    assert engine.plan_path.parent == bundle.engines_dir and key.startswith(
        "nvidia-fake-gpu-40gb_sm80_trt10.3.0_fp16_"
    )
    assert sorted(p.name for p in bundle.engines_dir.iterdir()) == [f"{key}.json", f"{key}.plan"]
    sidecar = json.loads(engine.sidecar_path.read_text())
    assert sidecar["key"] == key and sidecar["plan_bytes"] == engine.plan_path.stat().st_size
    assert (sidecar["gpu"], sidecar["tensorrt"], sidecar["precision"]) == (FAKE_GPU, "10.3.0", "fp16")
    description = engine.describe()
    assert (description.backend, description.device, description.precision) == ("tensorrt", FAKE_GPU, "fp16")
    assert description.details["max_samples"] == 8 and description.details["built_now"] is True
    rng = np.random.default_rng(0)
    for call, s in enumerate([1, 8, 3, 8, 1]):
        images = _images(call)
        masks = engine.deterministic_mask() if s == 1 else dropout_masks(s, HIDDEN, 0.25, rng)
        t, q = engine.infer(images, masks)
        t_ref, q_ref = expected_outputs(images, masks)
        assert t.dtype == np.float64 and t.shape == (s, 3) and q.shape == (s, 4)
        np.testing.assert_allclose(t, t_ref, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(q, q_ref, rtol=1e-6, atol=1e-6)
    assert fake.executions == 5
    with pytest.raises(EngineInputError, match=r"S = 9 samples, the TensorRT plan takes at most 8"):
        engine.infer(_images(0), np.ones((9, HIDDEN), np.float32))
    # A second start loads the cached plan instead of building.
    again = TensorRTEngine(bundle)
    assert len(fake.builds) == 1 and again.built is False and again.plan_path == engine.plan_path
    np.testing.assert_allclose(
        again.infer(_images(1), again.deterministic_mask())[0],
        expected_outputs(_images(1), again.deterministic_mask())[0],
        rtol=1e-6,
        atol=1e-5,
    )


def test_variance_head_plan_returns_the_log_variance(tmp_path: Path, fake: FakeTensorRT) -> None:
    bundle = make_bundle(tmp_path / "variance", variance_head=True)
    engine = TensorRTEngine(bundle, max_samples=8)
    rng = np.random.default_rng(2)
    for s in (1, 8, 3):
        masks = dropout_masks(s, HIDDEN, 0.25, rng)
        out = engine.infer_outputs(_images(s), masks)
        np.testing.assert_allclose(
            out.translation, expected_outputs(_images(s), masks)[0], rtol=1e-6, atol=1e-5
        )
        assert out.log_variance is not None and out.log_variance.shape == (s, 6)
        np.testing.assert_allclose(out.log_variance, expected_log_variance(masks), atol=1e-5)


def test_engine_on_cudart_memory_calibrates_and_runs(
    bundle: ModelBundle, fake: FakeTensorRT, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine through the real `_open_gpu` and `CudaMemory` on `FakeCudart`: the GPU query,
    cudaMalloc'd and pinned buffers, checked copies on the engine's stream, INT8 calibration."""
    cudart = FakeCudart(import_cudart(), stream=0x5EED)
    monkeypatch.setattr(trt_engine, "_open_gpu", REAL_OPEN_GPU)
    monkeypatch.setattr(trt_engine, "import_cudart", lambda: cudart)
    fake.stream = 0x5EED
    engine = TensorRTEngine(bundle, precision="int8", calibration_images=[_images(i) for i in range(3)])
    assert engine.gpu == GpuInfo("NVIDIA Fake H100", (9, 0), 0)
    assert engine.plan_path.name.startswith("nvidia-fake-h100_sm90_trt10.3.0_int8_")
    assert fake.builds[-1]["calibration_batches"] == 3
    rng = np.random.default_rng(3)
    for s in (1, 8, 5):
        before = len(cudart.calls)
        masks = dropout_masks(s, HIDDEN, 0.25, rng)
        t, q = engine.infer(_images(s), masks)
        t_ref, q_ref = expected_outputs(_images(s), masks)
        np.testing.assert_allclose(t, t_ref, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(q, q_ref, rtol=1e-6, atol=1e-6)
        # Per set: 2 copies in, 2 out, one synchronize (and the thread's device made current).
        assert sorted(cudart.calls[before:]) == sorted(
            ["cudaSetDevice", *["cudaMemcpyAsync"] * 4, "cudaStreamSynchronize"]
        )
    assert cudart.current_device == 0


def test_stale_or_incompatible_plans_are_rebuilt(bundle: ModelBundle, fake: FakeTensorRT) -> None:
    engine = TensorRTEngine(bundle)
    plan = engine.plan_path
    plan.write_bytes(plan.read_bytes()[:10])  # truncated: size differs from the sidecar
    assert TensorRTEngine(bundle).built and len(fake.builds) == 2
    size = plan.stat().st_size
    plan.write_bytes(b"x" * size)  # same size, sidecar fine, but TensorRT refuses it
    assert TensorRTEngine(bundle).built and len(fake.builds) == 3
    plan.write_bytes(b"")
    assert TensorRTEngine(bundle).built and len(fake.builds) == 4
    engine.sidecar_path.write_text("{not json")
    assert TensorRTEngine(bundle).built and len(fake.builds) == 5
    # Another model.onnx (same shapes) under the same key: the sidecar's digest no longer matches.
    model = onnx.load(str(bundle.onnx_path))
    model.graph.initializer[0].float_data[:] = [0.5] * 12
    model.graph.initializer[0].ClearField("raw_data")
    onnx.save(model, str(bundle.onnx_path))
    assert TensorRTEngine(bundle).built and len(fake.builds) == 6
    assert not TensorRTEngine(bundle).built and len(fake.builds) == 6
    assert TensorRTEngine(bundle, rebuild=True).built and len(fake.builds) == 7
    # A TensorRT upgrade and a larger S get plans of their own; the old ones stay.
    fake.version = fake.module.__version__ = "10.4.0"
    upgraded = TensorRTEngine(bundle, max_samples=32)
    assert upgraded.built and "trt10.4.0" in upgraded.plan_path.name and upgraded.max_samples == 32
    assert len(list(bundle.engines_dir.glob("*.plan"))) == 2
    assert fake.builds[-1]["profile"]["dropout_mask"] == [[1, 4], [8, 4], [32, 4]]
    assert not [p for p in bundle.engines_dir.iterdir() if p.name.startswith(".")]  # no temporaries


def test_precision_flags(bundle: ModelBundle, fake: FakeTensorRT, caplog: pytest.LogCaptureFixture) -> None:
    assert TensorRTEngine(bundle, precision="fp32").precision == "fp32"
    assert fake.builds[-1]["flags"] == []  # strict FP32: TF32, on by default, is cleared
    fake.fast_fp16 = False
    with caplog.at_level(logging.WARNING, logger="pose_regressor.engines"):
        engine = TensorRTEngine(bundle)
    assert (
        engine.precision == "fp32" and engine.requested_precision == "fp16" and "no fast FP16" in caplog.text
    )
    assert "_fp32_" in engine.plan_path.name and len(fake.builds) == 1  # the fp32 plan is reused
    fake.fast_fp16, fake.version, fake.module.__version__ = None, "11.0.0", "11.0.0"
    engine = TensorRTEngine(bundle)
    assert engine.precision == "fp32" and fake.builds[-1]["flags"] == []
    with pytest.raises(EngineError, match=r"TensorRT 11.0.0 has no implicit INT8 calibration"):
        TensorRTEngine(bundle, precision="int8", calibration_images=[_images(0)])
    with pytest.raises(ValueError, match="precision must be one of"):
        TensorRTEngine(bundle, precision="fp8")
    fake.version = fake.module.__version__ = "8.6.1"
    with pytest.raises(EngineUnavailableError, match=r"TensorRT 8.6.1 is older than 10.0"):
        TensorRTEngine(bundle)


def test_int8_calibrates_once_and_caches_the_table(
    bundle: ModelBundle, fake: FakeTensorRT, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(EngineError, match=r"INT8 needs calibration images \(pose-train build-engine"):
        TensorRTEngine(bundle, precision="int8")
    with pytest.raises(EngineInputError, match=r"calibration image set 0 must be uint8 \[2, 6, 8, 3\]"):
        TensorRTEngine(bundle, precision="int8", calibration_images=[np.zeros((1, 6, 8, 3), np.uint8)])
    with caplog.at_level(logging.WARNING, logger="pose_regressor.engines"):
        engine = TensorRTEngine(bundle, precision="int8", calibration_images=[_images(i) for i in range(5)])
    assert "deprecated since TensorRT 10.1" in caplog.text
    build = fake.builds[-1]
    assert build["flags"] == ["FP16", "INT8", "TF32"] and build["calibration_batches"] == 5
    assert build["calibration_profile"] == {"images": [[2, 6, 8, 3]] * 3, "dropout_mask": [[8, 4]] * 3}
    assert engine.describe().precision == "int8"
    assert engine.calibration_cache_path.read_bytes() == b"fake calibration table"
    assert engine.calibration_cache_path.name == engine.plan_path.stem + ".calib"
    again = TensorRTEngine(bundle, precision="int8", rebuild=True)  # no images: the table is reused
    assert again.built and fake.builds[-1]["calibration_batches"] == 0


def test_failed_builds_raise_engine_error_and_auto_falls_back(
    bundle: ModelBundle, fake: FakeTensorRT, caplog: pytest.LogCaptureFixture
) -> None:
    fake.build_ok = False
    with pytest.raises(
        EngineError, match=r"failed to build a fp16 plan .*no implementation for a layer"
    ) as info:
        load_engine(bundle, "tensorrt")
    assert not isinstance(info.value, EngineUnavailableError)
    assert not bundle.engines_dir.exists() or not list(bundle.engines_dir.iterdir())
    with caplog.at_level(logging.INFO, logger="pose_regressor.engines"):
        engine = load_engine(bundle, threads=1)
    assert isinstance(engine, OnnxRuntimeEngine)
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "pose_regressor.engines"]
    assert messages[0][0] == "WARNING" and "falling back to ONNX Runtime" in messages[0][1]
    assert (
        messages[-1][0] == "INFO" and "skipped tensorrt (failed: TensorRT failed to build" in messages[-1][1]
    )
    fake.build_ok, fake.parse_ok = True, False
    with pytest.raises(EngineError, match=r"TensorRT cannot parse .*model.onnx: In node 3 \(Conv\)"):
        TensorRTEngine(bundle)


def test_auto_picks_tensorrt_when_it_works(
    bundle: ModelBundle, fake: FakeTensorRT, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pose_regressor.engines"):
        engine = load_engine(bundle)
    assert isinstance(engine, TensorRTEngine)
    assert f"inference engine: tensorrt on {FAKE_GPU} (fp16)" in caplog.text


def test_unwritable_cache_still_runs(
    bundle: ModelBundle, fake: FakeTensorRT, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def read_only(path: Path, data: bytes) -> None:
        raise PermissionError(f"[Errno 13] Permission denied: '{path}'")

    monkeypatch.setattr(tensorrt_plan, "atomic_write_bytes", read_only)
    with caplog.at_level(logging.WARNING, logger="pose_regressor.engines"):
        engine = TensorRTEngine(bundle)
    assert "cannot cache the TensorRT plan" in caplog.text and not engine.plan_path.exists()
    t, _ = engine.infer(_images(2), engine.deterministic_mask())
    np.testing.assert_allclose(t, expected_outputs(_images(2), engine.deterministic_mask())[0], atol=1e-5)


def test_build_engine_cli_with_int8_calibration_data(
    tmp_path: Path, fake: FakeTensorRT, capsys: pytest.CaptureFixture[str]
) -> None:
    from pose_regressor.rig import preset_rig
    from pose_regressor_training.cli import main
    from pose_regressor_training.synth.generate import SynthConfig, render_dataset

    data = tmp_path / "data"
    render_dataset(
        SynthConfig(out=data, rig=preset_rig("quad", 32, 24), frames=30, seed=2, workers=1, progress=False)
    )
    cameras = (
        BundleCamera("front", "/front/image_raw", 32, 24),
        BundleCamera("back", "/back/image_raw", 32, 24),
    )
    quad = make_bundle(tmp_path / "bundle", cameras=cameras)
    args = ["build-engine", "--bundle", str(quad.path), "--precision", "int8", "--calib-data", str(data)]
    assert main([*args, "--calib-frames", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"build-engine: 4 calibration frames from {data} (train split)"
    assert out[1].startswith(f"build-engine: tensorrt on {FAKE_GPU} (int8) for S 1..8: built in ")
    assert out[2].endswith(".plan") and Path(out[2]).is_file()
    assert fake.calibration_batches == 4
    assert main(["build-engine", "--bundle", str(quad.path), "--precision", "int8"]) == 0
    assert "already cached" in capsys.readouterr().out
    assert main([*args[:3], "--calib-data", str(data)]) == 2
    assert "--calib-data is only used with --precision int8" in capsys.readouterr().err
    assert main([*args, "--calib-frames", "0"]) == 2
    assert "--calib-frames must be >= 1" in capsys.readouterr().err
    rear = make_bundle(tmp_path / "rear")  # cameras front, rear: the dataset has no "rear"
    assert (
        main(["build-engine", "--bundle", str(rear.path), "--precision", "int8", "--calib-data", str(data)])
        == 2
    )
    assert "cameras ['rear'] are not in the rig" in capsys.readouterr().err


# ----------------------------------------------------------------------------- on a real GPU
def _real_tensorrt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt package is not installed"
    if not cuda_binding_installed():
        return "NVIDIA's CUDA Python binding (cuda-bindings) is not installed"
    if engines_module.cuda_device_count() == 0:
        return "no CUDA device"
    return None


@pytest.mark.gpu
@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-4), ("fp16", 1e-3)])
def test_real_plan_matches_onnxruntime(tmp_path: Path, precision: str, tolerance: float) -> None:
    reason = _real_tensorrt_reason()
    if reason is not None:
        pytest.skip(f"needs TensorRT and a CUDA GPU: {reason}")
    from tests.unit.test_bench import conv_bundle

    bundle = conv_bundle(tmp_path / "conv", channels=16, size=(64, 48), cameras=2)
    engine = TensorRTEngine(bundle, precision=precision, max_samples=16)
    reference = OnnxRuntimeEngine(bundle, providers=["CPUExecutionProvider"], threads=1)
    rng = np.random.default_rng(0)
    for s in (1, 8, 16, 3):
        images = rng.integers(0, 256, bundle.images_shape, dtype=np.uint8)
        masks = dropout_masks(s, bundle.hidden_dim, bundle.dropout, rng)
        t, q = engine.infer(images, masks)
        t_ref, q_ref = reference.infer(images, masks)
        assert np.abs(t - t_ref).max() <= tolerance and np.abs(q - q_ref).max() <= tolerance
    cached = TensorRTEngine(bundle, precision=precision, max_samples=16)
    assert not cached.built and cached.describe().device == engine.describe().device

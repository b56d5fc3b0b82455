"""`TensorRTEngine`: a bundle's model.onnx compiled by TensorRT 10 into a plan cached in BUNDLE/engines/.

Written against the TensorRT 10 Python API; **unverified without a GPU**: this repository's CI has
neither TensorRT nor CUDA, so every call into `tensorrt` and every CUDA copy below is checked only
against the API documentation and against the fake `tensorrt` module of
tests/unit/test_tensorrt_engine.py (which runs this code end to end on CPU memory). What is
verified here: the cache key, the plan-usability decision, atomic writes, the precision and INT8
guards, the build sequence and the buffer handling as far as the fake exercises them. The tests
marked ``gpu`` build and run real plans (parity with ONNX Runtime) where TensorRT and a GPU exist.

Plan cache. A plan is specific to the GPU model (compute capability), the TensorRT version, the
precision and the input shapes, so its file name is :func:`plan_cache_key` of exactly those, and a
JSON sidecar next to it records them together with the SHA-256 of model.onnx and the plan's size.
On start the cached plan is used when :func:`plan_problem` finds nothing wrong with it and TensorRT
deserializes it; otherwise (missing, empty, truncated, other model, key mismatch, a plan that
TensorRT refuses) it is rebuilt from model.onnx (seconds to minutes) and written atomically
(temporary file + ``os.replace``: a crash never leaves a half-written plan under the real name).
A bundle directory that cannot be written only costs the cache: the engine runs on the in-memory
plan and logs a warning. Workspace size is not part of the key (it changes tactics, not
compatibility).

Shapes. ``images`` is static [T, H, W, 3] (uint8); ``dropout_mask`` [S, D] has one optimization
profile with S in 1..``max_samples`` (default ``bundle.mc_samples``), optimized for
S = ``bundle.mc_samples``.

Precision. ``fp16`` (default) sets ``BuilderFlag.FP16`` when the builder reports fast FP16 and
otherwise builds FP32 (``describe().precision`` says which; the effective precision is part of the
key). ``fp32`` builds FP32 (TF32 where TensorRT enables it by default). ``int8`` uses implicit
quantization with an ``IInt8EntropyCalibrator2`` fed from dataset images (``calibration_images``,
preprocessed [T, H, W, 3] uint8 arrays), caching the calibration table next to the plan
(``<key>.calib``); FP16 is enabled alongside it for the layers INT8 cannot run. Implicit INT8
calibration is deprecated since TensorRT 10.1 and removed in TensorRT 11.0, which also removed
``BuilderFlag.FP16`` (weak typing): see :func:`int8_calibration_problem` and
:func:`resolve_precision`. There, ``int8`` is refused with a message pointing at fp16 or explicit
quantization (Q/DQ nodes in the ONNX graph), and ``fp16`` builds FP32 with a warning.

Device memory: PyTorch CUDA tensors (torch imported lazily, here only; the robot's other engines
never need it). cuda-python was the alternative; torch was chosen because it brings allocation,
pinned host memory, streams and asynchronous copies in one well-tested package that the training
side and NVIDIA's Jetson images already ship, so no second CUDA binding must be installed and
kept in step with the driver. Buffers are allocated once for the largest S and reused: each call
copies the images and masks into pinned host buffers, then to the device, calls
``set_input_shape("dropout_mask", (S, D))`` and ``execute_async_v3`` and copies the outputs back,
all on one CUDA stream, and synchronizes once at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from pose_regressor.bundle import ModelBundle
from pose_regressor.engines.base import (
    EngineDescription,
    EngineError,
    EngineInputError,
    EngineUnavailableError,
    InferenceEngine,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_WORKSPACE_MB",
    "INT8_DEPRECATED_IN",
    "INT8_REMOVED_IN",
    "MIN_TENSORRT",
    "PRECISIONS",
    "GpuInfo",
    "TensorRTEngine",
    "atomic_write_bytes",
    "int8_calibration_problem",
    "parse_version",
    "plan_cache_key",
    "plan_metadata",
    "plan_problem",
    "profile_shapes",
    "resolve_precision",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32", "int8")
PLAN_FORMAT = "pose_regressor_tensorrt_plan"
PLAN_FORMAT_VERSION = 1
DEFAULT_WORKSPACE_MB = 1024
MIN_TENSORRT = (10, 0)  # the I/O-tensor API (set_tensor_address, execute_async_v3), no implicit batch
INT8_DEPRECATED_IN = (10, 1)  # IInt8EntropyCalibrator2 & co.: "Deprecated in TensorRT 10.1"
INT8_REMOVED_IN = (11, 0)  # int8_calibrator, BuilderFlag.INT8/FP16 removed in TensorRT 11.x
INPUTS = {"images": "UINT8", "dropout_mask": "FLOAT"}
OUTPUTS = {"translation": "FLOAT", "rotation": "FLOAT"}
CALIBRATION_SEED = 0

ShapeRange = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # (min, opt, max)


# ------------------------------------------------------------------------------ pure helpers
def parse_version(text: str) -> tuple[int, ...]:
    """``"10.3.0.26"`` -> (10, 3, 0, 26): each part's leading digits (``"10.0.0b6"`` -> (10, 0, 0)),
    at least three parts (``"11"`` -> (11, 0, 0))."""
    parts: list[int] = []
    for piece in str(text).split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
    if not parts:
        raise ValueError(f"not a version number: {text!r}")
    return tuple(parts + [0] * (3 - len(parts)))


def int8_calibration_problem(trt_version: str) -> str | None:
    """Why implicit INT8 calibration (``IInt8EntropyCalibrator2``) cannot be used with this TensorRT
    version, or None when it can.

    Facts (NVIDIA's API docs): the ``IInt8*Calibrator`` classes, ``setInt8Calibrator`` and
    ``setCalibrationProfile`` are "Deprecated in TensorRT 10.1. Superseded by explicit quantization"
    (still working through 10.x, so only a warning is logged there); the TensorRT 10.x -> 11.x
    migration guide lists ``IBuilderConfig.int8_calibrator``, ``set_calibration_profile`` and
    ``BuilderFlag.INT8`` as removed in 11.x, replaced by explicit quantization with Q/DQ nodes.
    """
    version = parse_version(trt_version)
    if version >= INT8_REMOVED_IN:
        return (
            f"TensorRT {trt_version} has no implicit INT8 calibration (IInt8EntropyCalibrator2 and "
            f"BuilderFlag.INT8 were deprecated in 10.1 and removed in 11.0): use --precision fp16 (or "
            "fp32), or quantize explicitly (Q/DQ nodes in model.onnx, e.g. with NVIDIA ModelOpt)"
        )
    if version < MIN_TENSORRT:
        return f"TensorRT {trt_version} is older than {'.'.join(map(str, MIN_TENSORRT))}"
    return None


def resolve_precision(requested: str, trt_version: str, fast_fp16: bool | None) -> tuple[str, str | None]:
    """(precision the plan is built with, a note to log or None) for a requested precision.

    ``fast_fp16`` is the builder's ``platform_has_fast_fp16`` (None where the API lacks it).

    Raises:
        ValueError: unknown precision.
        EngineError: ``int8`` where implicit INT8 calibration is gone (:func:`int8_calibration_problem`).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    version = parse_version(trt_version)
    if requested == "fp32":
        return "fp32", None
    if requested == "int8":
        problem = int8_calibration_problem(trt_version)
        if problem is not None:
            raise EngineError(problem)
        if version >= INT8_DEPRECATED_IN:
            return "int8", (
                f"implicit INT8 calibration is deprecated since TensorRT 10.1 (this is {trt_version}) "
                "and removed in 11.0; plan for explicit quantization"
            )
        return "int8", None
    if version >= INT8_REMOVED_IN:
        return "fp32", (
            f"TensorRT {trt_version} removed BuilderFlag.FP16 (networks are strongly typed): building "
            "the FP32 graph as FP32; an FP16 plan needs an FP16 model.onnx"
        )
    if fast_fp16 is False:
        return "fp32", "this GPU has no fast FP16 (platform_has_fast_fp16 is false): building FP32"
    return "fp16", None


def profile_shapes(bundle: ModelBundle, max_samples: int | None = None) -> dict[str, ShapeRange]:
    """The optimization profile: ``images`` static, ``dropout_mask`` S in 1..max_samples, opt mc_samples."""
    top = bundle.mc_samples if max_samples is None else max_samples
    if top < 1:
        raise ValueError(f"max_samples must be >= 1, got {top}")
    images = tuple(bundle.images_shape)
    d = bundle.hidden_dim
    return {
        "images": (images, images, images),
        "dropout_mask": ((1, d), (min(bundle.mc_samples, top), d), (top, d)),
    }


def _canonical_shapes(shapes: Mapping[str, Sequence[Sequence[int]]]) -> dict[str, list[list[int]]]:
    return {name: [[int(v) for v in shape] for shape in shapes[name]] for name in sorted(shapes)}


def _slug(text: str, limit: int) -> str:
    slug = re.sub(r"[^a-z0-9.]+", "-", text.lower())
    slug = re.sub(r"\.{2,}", ".", re.sub(r"[-.]*-[-.]*", "-", slug)).strip("-.")
    return slug[:limit].strip("-.") or "unknown"


def plan_cache_key(
    gpu_name: str,
    compute_capability: tuple[int, int],
    trt_version: str,
    precision: str,
    shapes: Mapping[str, Sequence[Sequence[int]]],
) -> str:
    """The plan's file name stem: readable GPU / compute capability / TensorRT version / precision, plus
    a digest of all of them and of the profile shapes (name -> (min, opt, max)). Only ``[a-z0-9._-]``,
    at most 100 characters; equal arguments give equal keys, any difference a different key."""
    fields = {
        "gpu": gpu_name,
        "compute_capability": [int(v) for v in compute_capability],
        "tensorrt": trt_version,
        "precision": precision,
        "shapes": _canonical_shapes(shapes),
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    major, minor = (int(v) for v in compute_capability)
    return (
        f"{_slug(gpu_name, 40)}_sm{major}{minor}_trt{_slug(trt_version, 16)}_{_slug(precision, 8)}_{digest}"
    )


def plan_metadata(
    gpu_name: str,
    compute_capability: tuple[int, int],
    trt_version: str,
    precision: str,
    shapes: Mapping[str, Sequence[Sequence[int]]],
    onnx_sha256: str,
) -> dict[str, Any]:
    """The sidecar fields a cached plan must match (JSON-ready; ``key`` included)."""
    return {
        "format": PLAN_FORMAT,
        "version": PLAN_FORMAT_VERSION,
        "key": plan_cache_key(gpu_name, compute_capability, trt_version, precision, shapes),
        "gpu": gpu_name,
        "compute_capability": [int(v) for v in compute_capability],
        "tensorrt": trt_version,
        "precision": precision,
        "shapes": _canonical_shapes(shapes),
        "onnx_sha256": onnx_sha256,
    }


def plan_problem(
    plan_bytes: int | None, sidecar: Mapping[str, Any] | None, expected: Mapping[str, Any]
) -> str | None:
    """Why a cached plan must not be used (None: it may be, if TensorRT also deserializes it).

    plan_bytes: the plan file's size (None: no file); sidecar: its parsed JSON sidecar (None: missing
    or unreadable); expected: :func:`plan_metadata` of this run.
    """
    if plan_bytes is None:
        return "no cached plan"
    if plan_bytes == 0:
        return "the cached plan is empty (an interrupted build or copy?)"
    if sidecar is None:
        return "the cached plan has no readable sidecar"
    for field_name, wanted in expected.items():
        cached = sidecar.get(field_name)
        if cached != wanted:
            return f"{field_name} differs: the plan was built for {cached!r}, this run needs {wanted!r}"
    recorded = sidecar.get("plan_bytes")
    if recorded != plan_bytes:
        return f"the plan has {plan_bytes} bytes, its sidecar records {recorded!r} (truncated or replaced)"
    return None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and ``os.replace``:
    readers see the old file or the complete new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; plans are shared with the bundle
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)  # os.replace: atomic within one file system
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- environment
@dataclass(frozen=True)
class GpuInfo:
    """The CUDA device the engine runs on (as torch sees it)."""

    name: str
    compute_capability: tuple[int, int]
    device: torch.device
    index: int


def _import_tensorrt() -> ModuleType:
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise EngineUnavailableError(
            f"TensorRT backend unavailable: the `tensorrt` Python package cannot be imported ({exc})"
        ) from None


def _import_torch() -> ModuleType:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise EngineUnavailableError(
            "TensorRT backend unavailable: it uses PyTorch CUDA tensors as device buffers, and torch "
            f"cannot be imported ({exc})"
        ) from None


def _cuda_device(torch_module: ModuleType, index: int) -> GpuInfo:
    """The GPU `index` (EngineUnavailableError when torch sees none). Tests replace this function."""
    if not torch_module.cuda.is_available():
        raise EngineUnavailableError(
            "TensorRT backend unavailable: torch sees no CUDA GPU (CPU-only torch build, or no driver)"
        )
    count = int(torch_module.cuda.device_count())
    if not 0 <= index < count:
        raise EngineUnavailableError(
            f"TensorRT backend unavailable: CUDA device {index} requested, torch sees {count}"
        )
    major, minor = torch_module.cuda.get_device_capability(index)
    return GpuInfo(
        name=str(torch_module.cuda.get_device_name(index)),
        compute_capability=(int(major), int(minor)),
        device=torch_module.device("cuda", index),
        index=index,
    )


def _make_logger(trt: ModuleType) -> Any:
    """A `trt.ILogger` that forwards to Python logging and keeps the errors for exception messages."""
    severity = trt.ILogger.Severity
    base: Any = trt.ILogger

    class _Logger(base):  # type: ignore[misc]  # tensorrt is untyped
        def __init__(self) -> None:
            base.__init__(self)
            self.errors: list[str] = []

        def log(self, level: Any, message: str) -> None:
            if level in (severity.INTERNAL_ERROR, severity.ERROR):
                self.errors.append(str(message))
                logger.error("TensorRT: %s", message)
            elif level == severity.WARNING:
                logger.warning("TensorRT: %s", message)
            elif level == severity.INFO:
                logger.debug("TensorRT: %s", message)

    return _Logger()


def _errors_note(trt_logger: Any) -> str:
    errors = list(getattr(trt_logger, "errors", []))[-3:]
    return f" (TensorRT: {' | '.join(errors)})" if errors else ""


# ------------------------------------------------------------------------------ INT8 calibrator
def _make_calibrator(
    trt: ModuleType,
    torch_module: ModuleType,
    gpu: GpuInfo,
    bundle: ModelBundle,
    images: Sequence[NDArray[np.uint8]],
    samples: int,
    cache_path: Path,
) -> Any:
    """An ``IInt8EntropyCalibrator2`` over preprocessed image sets [T, H, W, 3] (one per batch) and
    random MC-dropout masks [samples, D] (the calibration profile's S), with its table cached at
    `cache_path` (read back on later builds instead of calibrating again)."""
    from pose_regressor.uncertainty import dropout_masks

    shape = bundle.images_shape
    for k, image_set in enumerate(images):
        if image_set.shape != shape or image_set.dtype != np.uint8:
            raise EngineInputError(
                f"calibration image set {k} must be uint8 {list(shape)} (pose_regressor.bundle.preprocess), "
                f"got {image_set.dtype} {list(image_set.shape)}"
            )

    base: Any = trt.IInt8EntropyCalibrator2

    class _Calibrator(base):  # type: ignore[misc]  # tensorrt is untyped
        def __init__(self) -> None:
            base.__init__(self)
            self.index = 0
            self.rng = np.random.default_rng(CALIBRATION_SEED)
            self.images = torch_module.empty(shape, dtype=torch_module.uint8, device=gpu.device)
            self.masks = torch_module.empty(
                (samples, bundle.hidden_dim), dtype=torch_module.float32, device=gpu.device
            )

        def get_batch_size(self) -> int:
            return 1  # explicit-batch networks: the "batch" is whatever the input shapes hold

        def get_batch(self, names: Sequence[str], *_: Any) -> list[int] | None:
            if self.index >= len(images):
                return None
            masks = dropout_masks(samples, bundle.hidden_dim, bundle.dropout, self.rng)
            self.images.copy_(torch_module.from_numpy(np.ascontiguousarray(images[self.index])))
            self.masks.copy_(torch_module.from_numpy(masks))
            if gpu.device.type == "cuda":
                torch_module.cuda.synchronize(gpu.device)
            self.index += 1
            pointers = {"images": int(self.images.data_ptr()), "dropout_mask": int(self.masks.data_ptr())}
            return [pointers[name] for name in names]

        def read_calibration_cache(self, *_: Any) -> bytes | None:
            if cache_path.is_file() and cache_path.stat().st_size > 0:
                logger.info("INT8 calibration: reusing %s", cache_path)
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            try:
                atomic_write_bytes(cache_path, bytes(cache))
            except OSError as exc:
                logger.warning("cannot write the INT8 calibration cache %s: %s", cache_path, exc)

    return _Calibrator()


# ---------------------------------------------------------------------------------- building
def build_plan(
    trt: ModuleType,
    trt_logger: Any,
    onnx_path: Path,
    shapes: Mapping[str, ShapeRange],
    precision: str,
    workspace_mb: int,
    calibrator: Any = None,
) -> bytes:
    """Parse `onnx_path` and build a serialized plan (TensorRT 10 API) with one optimization profile.

    ``precision`` is the effective one (:func:`resolve_precision`): ``fp16`` sets ``BuilderFlag.FP16``,
    ``int8`` sets ``INT8`` and ``FP16`` and uses `calibrator` with a calibration profile fixed at the
    opt shapes. Raises `EngineError` naming the parser's or builder's errors.
    """
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)  # TensorRT 10: always explicit batch, weakly typed by default
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {'; '.join(errors) or 'unknown error'}")
    inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    if inputs != set(shapes):
        raise EngineError(f"{onnx_path} has inputs {sorted(inputs)}, expected {sorted(shapes)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibrator is None:
            raise EngineError("INT8 needs a calibrator")
        config.set_flag(trt.BuilderFlag.INT8)
        calibration = builder.create_optimization_profile()
        for name, (_, opt, _) in shapes.items():
            calibration.set_shape(name, opt, opt, opt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            config.int8_calibrator = calibrator
            config.set_calibration_profile(calibration)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(
            f"TensorRT failed to build a {precision} plan from {onnx_path}{_errors_note(trt_logger)}"
        )
    data = bytes(serialized)
    if not data:
        raise EngineError(f"TensorRT built an empty plan from {onnx_path}{_errors_note(trt_logger)}")
    return data


def _fast_fp16(trt: ModuleType, trt_logger: Any) -> bool | None:
    """``platform_has_fast_fp16`` (deprecated in 10.5, removed in 11), None where it is gone."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        value = getattr(trt.Builder(trt_logger), "platform_has_fast_fp16", None)
    return None if value is None else bool(value)


# ------------------------------------------------------------------------------------ running
class _DeviceRunner:
    """One execution context over device buffers sized for the profile's largest S, on one stream.

    With a CPU `device` (tests only: the fake TensorRT reads host pointers) there is no stream,
    no pinned memory and no device switch.
    """

    def __init__(
        self, trt: ModuleType, engine: Any, torch_module: ModuleType, gpu: GpuInfo, bundle: ModelBundle
    ) -> None:
        self._torch = torch_module
        self._gpu = gpu
        cuda = gpu.device.type == "cuda"
        self._check_io(trt, engine)
        low, _, high = engine.get_tensor_profile_shape("dropout_mask", 0)
        self.max_samples = int(high[0])
        if int(low[0]) > 1 or self.max_samples < 1:
            raise EngineError(f"the plan's dropout_mask profile is {list(low)}..{list(high)}, need S from 1")
        self.hidden_dim = bundle.hidden_dim
        shapes = {
            "images": (bundle.images_shape, torch_module.uint8),
            "dropout_mask": ((self.max_samples, bundle.hidden_dim), torch_module.float32),
            "translation": ((self.max_samples, 3), torch_module.float32),
            "rotation": ((self.max_samples, 4), torch_module.float32),
        }
        with self._on_device():
            self._context = engine.create_execution_context()
            if self._context is None:
                raise EngineError("TensorRT cannot create an execution context (out of GPU memory?)")
            self._device = {
                name: torch_module.zeros(shape, dtype=dtype, device=gpu.device)
                for name, (shape, dtype) in shapes.items()
            }
            self._host = {
                name: torch_module.zeros(shape, dtype=dtype, pin_memory=cuda)
                for name, (shape, dtype) in shapes.items()
            }
            self._stream = torch_module.cuda.Stream(device=gpu.device) if cuda else None
            if cuda:  # the zero fills ran on the default stream; ours must not overtake them
                torch_module.cuda.synchronize(gpu.device)
        self._host_np = {name: tensor.numpy() for name, tensor in self._host.items()}
        # The buffers never move, so their addresses are bound once.
        for name, tensor in self._device.items():
            if not self._context.set_tensor_address(name, int(tensor.data_ptr())):
                raise EngineError(f"TensorRT refused the device address of {name}")
        if not self._context.set_input_shape("images", tuple(bundle.images_shape)):
            raise EngineError(f"TensorRT refused the images shape {list(bundle.images_shape)}")

    @staticmethod
    def _check_io(trt: ModuleType, engine: Any) -> None:
        found: dict[str, tuple[str, str]] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
            dtype = engine.get_tensor_dtype(name)
            found[name] = (mode, getattr(dtype, "name", str(dtype)).rsplit(".", 1)[-1])
        wanted = {name: ("input", dtype) for name, dtype in INPUTS.items()}
        wanted.update({name: ("output", dtype) for name, dtype in OUTPUTS.items()})
        if found != wanted:
            raise EngineError(f"the plan's I/O tensors are {found}, the bundle contract wants {wanted}")

    def _on_device(self) -> contextlib.AbstractContextManager[Any]:
        if self._gpu.device.type == "cuda":
            return self._torch.cuda.device(self._gpu.index)  # type: ignore[no-any-return]
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _on_stream(self) -> Iterator[int]:
        if self._stream is None:
            yield 0
            return
        with self._on_device(), self._torch.cuda.stream(self._stream):
            yield int(self._stream.cuda_stream)

    def run(
        self, images: NDArray[np.uint8], masks: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        s = masks.shape[0]
        if s > self.max_samples:
            raise EngineInputError(
                f"masks have S = {s} samples, the TensorRT plan takes at most {self.max_samples} "
                "(build it with a larger max_samples)"
            )
        host, device, host_np = self._host, self._device, self._host_np
        np.copyto(host_np["images"], images)
        np.copyto(host_np["dropout_mask"][:s], masks)
        with self._on_stream() as stream:
            device["images"].copy_(host["images"], non_blocking=True)
            device["dropout_mask"][:s].copy_(host["dropout_mask"][:s], non_blocking=True)
            if not self._context.set_input_shape("dropout_mask", (s, self.hidden_dim)):
                raise EngineError(f"TensorRT refused dropout_mask shape [{s}, {self.hidden_dim}]")
            if not self._context.execute_async_v3(stream):
                raise EngineError("TensorRT execute_async_v3 failed")
            host["translation"][:s].copy_(device["translation"][:s], non_blocking=True)
            host["rotation"][:s].copy_(device["rotation"][:s], non_blocking=True)
            if self._stream is not None:
                self._stream.synchronize()
        return host_np["translation"][:s], host_np["rotation"][:s]


# ------------------------------------------------------------------------------------- engine
class TensorRTEngine(InferenceEngine):
    """The bundle's model as a TensorRT plan on CUDA device `device` (see the module docstring).

    precision: ``fp16`` (default; FP32 where the GPU or TensorRT lacks weakly typed FP16), ``fp32``
        or ``int8`` (needs `calibration_images` or an existing calibration cache).
    calibration_images: preprocessed image sets [T, H, W, 3] uint8 for INT8 calibration.
    workspace_mb: the builder's workspace memory pool limit.
    max_samples: the largest S the plan accepts (default ``bundle.mc_samples``).
    rebuild: ignore a cached plan and build a new one.

    Raises:
        EngineUnavailableError: no `tensorrt`, TensorRT < 10, no torch or no CUDA device.
        EngineError: the plan cannot be built or loaded (the message says why).
        ValueError: unknown precision or bad sizes.
    """

    backend = "tensorrt"

    def __init__(
        self,
        bundle: ModelBundle,
        precision: str = "fp16",
        calibration_images: Sequence[NDArray[np.uint8]] | None = None,
        workspace_mb: int = DEFAULT_WORKSPACE_MB,
        device: int = 0,
        max_samples: int | None = None,
        rebuild: bool = False,
    ) -> None:
        super().__init__(bundle)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if workspace_mb < 1:
            raise ValueError(f"workspace_mb must be >= 1, got {workspace_mb}")
        trt = _import_tensorrt()
        self.trt_version = str(trt.__version__)
        if parse_version(self.trt_version) < MIN_TENSORRT:
            raise EngineUnavailableError(
                f"TensorRT backend unavailable: TensorRT {self.trt_version} is older than 10.0 (this engine "
                "uses the TensorRT 10 I/O-tensor API)"
            )
        torch_module = _import_torch()
        self.gpu = _cuda_device(torch_module, device)
        self.requested_precision = precision
        self._trt_logger = _make_logger(trt)
        self.precision, note = resolve_precision(
            precision, self.trt_version, _fast_fp16(trt, self._trt_logger)
        )
        if note:
            logger.warning("TensorRT %s: %s", bundle.path, note)
        self.shapes = profile_shapes(bundle, max_samples)
        expected = plan_metadata(
            self.gpu.name,
            self.gpu.compute_capability,
            self.trt_version,
            self.precision,
            self.shapes,
            _sha256(bundle.onnx_path),
        )
        key = expected["key"]
        self.plan_path = bundle.engines_dir / f"{key}.plan"
        self.sidecar_path = bundle.engines_dir / f"{key}.json"
        self.calibration_cache_path = bundle.engines_dir / f"{key}.calib"
        self.built = False
        self.build_seconds = 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            runtime = trt.Runtime(self._trt_logger)
        self._runtime = runtime
        engine = None
        problem = (
            "rebuild requested"
            if rebuild
            else plan_problem(_file_size(self.plan_path), _read_sidecar(self.sidecar_path), expected)
        )
        if problem is None:
            engine = self._deserialize(self.plan_path.read_bytes())
            if engine is None:
                problem = f"TensorRT {self.trt_version} cannot deserialize it{_errors_note(self._trt_logger)}"
            else:
                logger.info("TensorRT plan %s loaded from the cache", self.plan_path)
        if engine is None:
            logger.info(
                "building a %s TensorRT plan for %s on %s (%s); this takes a while",
                self.precision,
                bundle.path,
                self.gpu.name,
                problem,
            )
            plan = self._build(trt, torch_module, calibration_images, workspace_mb)
            engine = self._deserialize(plan)
            if engine is None:
                raise EngineError(
                    f"TensorRT cannot deserialize the plan it just built{_errors_note(self._trt_logger)}"
                )
            self._store(plan, expected)
        self._engine = engine
        self._runner = _DeviceRunner(trt, engine, torch_module, self.gpu, bundle)
        self.max_samples = self._runner.max_samples

    def _deserialize(self, plan: bytes) -> Any:
        try:
            return self._runtime.deserialize_cuda_engine(plan)
        except Exception as exc:  # pybind raises plain RuntimeError/TypeError subclasses
            logger.warning("TensorRT cannot deserialize a plan: %s", exc)
            return None

    def _build(
        self,
        trt: ModuleType,
        torch_module: ModuleType,
        calibration_images: Sequence[NDArray[np.uint8]] | None,
        workspace_mb: int,
    ) -> bytes:
        calibrator = None
        if self.precision == "int8":
            has_cache = (_file_size(self.calibration_cache_path) or 0) > 0
            if not calibration_images and not has_cache:
                raise EngineError(
                    "INT8 needs calibration images (pose-train build-engine --precision int8 --calib-data "
                    f"DIR) or a calibration cache {self.calibration_cache_path}"
                )
            opt_samples = self.shapes["dropout_mask"][1][0]
            calibrator = _make_calibrator(
                trt,
                torch_module,
                self.gpu,
                self.bundle,
                list(calibration_images or []),
                opt_samples,
                self.calibration_cache_path,
            )
        started = time.perf_counter()
        plan = build_plan(
            trt,
            self._trt_logger,
            self.bundle.onnx_path,
            self.shapes,
            self.precision,
            workspace_mb,
            calibrator,
        )
        self.build_seconds = time.perf_counter() - started
        self.built = True
        logger.info("built the TensorRT plan in %.1f s (%d bytes)", self.build_seconds, len(plan))
        return plan

    def _store(self, plan: bytes, expected: Mapping[str, Any]) -> None:
        sidecar = dict(expected)
        sidecar.update(
            plan_bytes=len(plan),
            built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            build_seconds=round(self.build_seconds, 3),
            requested_precision=self.requested_precision,
        )
        try:
            atomic_write_bytes(self.plan_path, plan)  # plan first: a stale sidecar never validates it
            atomic_write_bytes(self.sidecar_path, (json.dumps(sidecar, indent=2) + "\n").encode())
        except OSError as exc:
            logger.warning(
                "cannot cache the TensorRT plan in %s (%s); running on the in-memory plan, it will be "
                "built again next time",
                self.bundle.engines_dir,
                exc,
            )

    def _infer(
        self, images: NDArray[np.uint8], masks: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        return self._runner.run(images, masks)

    def describe(self) -> EngineDescription:
        major, minor = self.gpu.compute_capability
        return EngineDescription(
            backend=self.backend,
            device=self.gpu.name,
            precision=self.precision,
            details={
                "tensorrt": self.trt_version,
                "compute_capability": f"{major}.{minor}",
                "plan": str(self.plan_path),
                "built_now": self.built,
                "max_samples": self.max_samples,
                "requested_precision": self.requested_precision,
            },
        )

"""Building a TensorRT plan from a bundle's model.onnx (TensorRT 10 Python API): the builder with
one optimization profile, the precision flags, the INT8 calibrator and a logger that keeps
TensorRT's errors for our exception messages. What to build and where it is cached is
`pose_regressor.engines.tensorrt_plan`; running a plan is `pose_regressor.engines.tensorrt_engine`.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pose_regressor.bundle import DROPOUT_MASK, IMAGES, ModelBundle
from pose_regressor.engines.base import EngineError, EngineInputError, EngineUnavailableError
from pose_regressor.engines.cuda_memory import DeviceMemory
from pose_regressor.engines.tensorrt_plan import ShapeRange, atomic_write_bytes
from pose_regressor.uncertainty import dropout_masks

__all__ = ["build_plan", "errors_note", "fast_fp16", "import_tensorrt", "make_calibrator", "make_logger"]

CALIBRATION_SEED = 0  # the calibration masks are the same on every build

logger = logging.getLogger(__name__)


def import_tensorrt() -> ModuleType:
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise EngineUnavailableError(
            f"TensorRT backend unavailable: the `tensorrt` Python package cannot be imported ({exc})"
        ) from None


def make_logger(trt: ModuleType) -> Any:
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


def errors_note(trt_logger: Any) -> str:
    """`` (TensorRT: last errors)`` for an exception message, or "" when TensorRT logged none."""
    errors = list(getattr(trt_logger, "errors", []))[-3:]
    return f" (TensorRT: {' | '.join(errors)})" if errors else ""


def fast_fp16(trt: ModuleType, trt_logger: Any) -> bool | None:
    """``platform_has_fast_fp16`` (deprecated in 10.5, removed in 11), None where it is gone."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        value = getattr(trt.Builder(trt_logger), "platform_has_fast_fp16", None)
    return None if value is None else bool(value)


# ------------------------------------------------------------------------------ INT8 calibrator
def _check_calibration_images(bundle: ModelBundle, images: Sequence[NDArray[np.uint8]]) -> None:
    shape = bundle.images_shape
    for k, image_set in enumerate(images):
        if image_set.shape != shape or image_set.dtype != np.uint8:
            raise EngineInputError(
                f"calibration image set {k} must be uint8 {list(shape)} (pose_regressor.bundle.preprocess), "
                f"got {image_set.dtype} {list(image_set.shape)}"
            )


def make_calibrator(
    trt: ModuleType,
    memory: DeviceMemory,
    bundle: ModelBundle,
    images: Sequence[NDArray[np.uint8]],
    samples: int,
    cache_path: Path,
) -> Any:
    """An ``IInt8EntropyCalibrator2`` over preprocessed image sets [T, H, W, 3] (one per batch) and
    random MC-dropout masks [samples, D] (the calibration profile's S), with its table cached at
    `cache_path` (read back on later builds instead of calibrating again). Its device buffers come
    from `memory`, like the engine's."""
    _check_calibration_images(bundle, images)
    base: Any = trt.IInt8EntropyCalibrator2
    mask_shape = (samples, bundle.hidden_dim)

    class _Calibrator(base):  # type: ignore[misc]  # tensorrt is untyped
        def __init__(self) -> None:
            base.__init__(self)
            self.index = 0
            self.rng = np.random.default_rng(CALIBRATION_SEED)
            self.host_images = memory.host_array(bundle.images_shape, np.uint8)
            self.host_masks = memory.host_array(mask_shape, np.float32)
            self.pointers = {
                IMAGES: memory.device_buffer(self.host_images.nbytes),
                DROPOUT_MASK: memory.device_buffer(self.host_masks.nbytes),
            }

        def get_batch_size(self) -> int:
            return 1  # explicit-batch networks: the "batch" is whatever the input shapes hold

        def get_batch(self, names: Sequence[str], *_: Any) -> list[int] | None:
            if self.index >= len(images):
                return None
            np.copyto(self.host_images, images[self.index])
            np.copyto(self.host_masks, dropout_masks(samples, bundle.hidden_dim, bundle.dropout, self.rng))
            memory.upload(self.pointers[IMAGES], self.host_images)
            memory.upload(self.pointers[DROPOUT_MASK], self.host_masks)
            memory.synchronize()  # TensorRT reads the buffers on its own stream
            self.index += 1
            return [self.pointers[name] for name in names]

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
def _parse(trt: ModuleType, trt_logger: Any, builder: Any, onnx_path: Path, names: set[str]) -> Any:
    network = builder.create_network(0)  # TensorRT 10: always explicit batch, weakly typed by default
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {'; '.join(errors) or 'unknown error'}")
    inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    if inputs != names:
        raise EngineError(f"{onnx_path} has inputs {sorted(inputs)}, expected {sorted(names)}")
    return network, parser  # the parser owns weights the network refers to: keep it alive


def _set_int8(
    trt: ModuleType, builder: Any, config: Any, shapes: Mapping[str, ShapeRange], calibrator: Any
) -> None:
    if calibrator is None:
        raise EngineError("INT8 needs a calibrator")
    config.set_flag(trt.BuilderFlag.INT8)
    calibration = builder.create_optimization_profile()
    for name, (_, opt, _) in shapes.items():
        calibration.set_shape(name, opt, opt, opt)  # calibrate at the opt S, the one the node runs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(calibration)


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

    ``precision`` is the effective one (`tensorrt_plan.resolve_precision`): ``fp32`` clears
    ``BuilderFlag.TF32`` (strict FP32), ``fp16`` sets ``BuilderFlag.FP16``, ``int8`` sets ``INT8``
    and ``FP16`` and uses `calibrator` with a
    calibration profile fixed at the opt shapes. Raises `EngineError` naming the parser's or
    builder's errors.
    """
    builder = trt.Builder(trt_logger)
    network, _parser = _parse(trt, trt_logger, builder, onnx_path, set(shapes))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if precision == "fp32" and tf32 is not None:
        # TF32, on by default from Ampere on, rounds FP32 products to 10-bit mantissas (about 1e-3
        # relative): an fp32 plan is the one parity checks hold to ONNX Runtime's FP32, so it is FP32
        config.clear_flag(tf32)
    if precision == "int8":
        _set_int8(trt, builder, config, shapes, calibrator)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(
            f"TensorRT failed to build a {precision} plan from {onnx_path}{errors_note(trt_logger)}"
        )
    data = bytes(serialized)
    if not data:
        raise EngineError(f"TensorRT built an empty plan from {onnx_path}{errors_note(trt_logger)}")
    return data

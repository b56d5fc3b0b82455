"""`TensorRTEngine`: a bundle's model.onnx compiled by TensorRT 10 into a plan cached in BUNDLE/engines/.

Three modules share the work: `tensorrt_plan` decides what a plan is built for and whether a
cached one may be used (cache key, sidecar, precision rules), `tensorrt_build` builds one
(builder, optimization profile, INT8 calibrator), and this module runs it. Device memory,
copies and the stream come from NVIDIA's CUDA Python binding through `cuda_memory`; torch is
never imported, so the engine runs in the robot images, which do not ship torch.

Written against the TensorRT 10 and cuda-bindings Python APIs; **unverified without a GPU**: this
repository's CI has neither TensorRT nor a GPU, so every call into `tensorrt` and cudart is checked
against the API documentation, against the fake `tensorrt` module and host-memory `DeviceMemory`
of tests/unit/test_tensorrt_engine.py (which run this code end to end on CPU memory), and, for
cudart, up to the first call on a machine without a driver. The tests marked ``gpu`` build and run
real plans (parity with ONNX Runtime) where TensorRT and a GPU exist.

Running. Buffers are allocated once for the largest S and reused: each call copies the images and
masks into pinned host buffers, queues their copies to the device, sets
``set_input_shape("dropout_mask", (S, D))``, queues ``execute_async_v3`` and the copies of the
outputs back, all on one CUDA stream, and synchronizes once at the end. A bundle directory that
cannot be written only costs the cache: the engine runs on the in-memory plan and logs a warning.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pose_regressor.bundle import (
    DROPOUT_MASK,
    GRAPH_INPUTS,
    IMAGES,
    ModelBundle,
)
from pose_regressor.engines.base import (
    EngineDescription,
    EngineError,
    EngineInputError,
    EngineUnavailableError,
    InferenceEngine,
)
from pose_regressor.engines.cuda_memory import CudaMemory, DeviceMemory, GpuInfo, import_cudart, query_gpu
from pose_regressor.engines.tensorrt_build import (
    build_plan,
    errors_note,
    fast_fp16,
    import_tensorrt,
    make_calibrator,
    make_logger,
)
from pose_regressor.engines.tensorrt_plan import (
    DEFAULT_WORKSPACE_MB,
    MIN_TENSORRT,
    PRECISIONS,
    PlanFiles,
    parse_version,
    plan_metadata,
    profile_shapes,
    resolve_precision,
    sha256_of,
)

__all__ = ["GpuInfo", "TensorRTEngine"]

logger = logging.getLogger(__name__)

# The plan's I/O tensors and their TensorRT dtypes (the bundle's graph contract).
_TRT_DTYPES = {"uint8": "UINT8", "float32": "FLOAT"}  # numpy dtype name -> tensorrt.DataType name
INPUTS = {spec.name: _TRT_DTYPES[spec.dtype] for spec in GRAPH_INPUTS}


def _open_gpu(index: int) -> tuple[GpuInfo, DeviceMemory]:
    """GPU `index` and a stream with memory on it (EngineUnavailableError when CUDA finds none).

    The one place the engine meets cudart: the unit tests replace this function.
    """
    try:
        cudart = import_cudart()
        gpu = query_gpu(cudart, index)  # the first CUDA call
    except EngineUnavailableError as exc:
        raise EngineUnavailableError(f"TensorRT backend unavailable: {exc}") from None
    return gpu, CudaMemory(cudart, gpu)


class _DeviceRunner:
    """One execution context over buffers sized for the profile's largest S, on one stream."""

    def __init__(self, trt: ModuleType, engine: Any, memory: DeviceMemory, bundle: ModelBundle) -> None:
        self._outputs = bundle.graph_outputs  # translation, rotation[, log_variance]
        self._check_io(trt, engine, {spec.name: _TRT_DTYPES[spec.dtype] for spec in self._outputs})
        low, _, high = engine.get_tensor_profile_shape(DROPOUT_MASK, 0)
        self.max_samples = int(high[0])
        if int(low[0]) > 1 or self.max_samples < 1:
            raise EngineError(f"the plan's dropout_mask profile is {list(low)}..{list(high)}, need S from 1")
        self.hidden_dim = bundle.hidden_dim
        self._memory = memory
        memory.activate()
        self._context = engine.create_execution_context()
        if self._context is None:
            raise EngineError("TensorRT cannot create an execution context (out of GPU memory?)")
        shapes = {
            IMAGES: (tuple(bundle.images_shape), np.uint8),
            DROPOUT_MASK: ((self.max_samples, bundle.hidden_dim), np.float32),
            **{spec.name: ((self.max_samples, int(spec.shape[1])), np.float32) for spec in self._outputs},
        }
        self._host = {name: memory.host_array(shape, dtype) for name, (shape, dtype) in shapes.items()}
        self._device = {name: memory.device_buffer(array.nbytes) for name, array in self._host.items()}
        # The buffers never move, so their addresses are bound once.
        for name, address in self._device.items():
            if not self._context.set_tensor_address(name, address):
                raise EngineError(f"TensorRT refused the device address of {name}")
        if not self._context.set_input_shape(IMAGES, tuple(bundle.images_shape)):
            raise EngineError(f"TensorRT refused the images shape {list(bundle.images_shape)}")

    @staticmethod
    def _check_io(trt: ModuleType, engine: Any, outputs: dict[str, str]) -> None:
        found: dict[str, tuple[str, str]] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
            dtype = engine.get_tensor_dtype(name)
            found[name] = (mode, getattr(dtype, "name", str(dtype)).rsplit(".", 1)[-1])
        wanted = {name: ("input", dtype) for name, dtype in INPUTS.items()}
        wanted.update({name: ("output", dtype) for name, dtype in outputs.items()})
        if found != wanted:
            raise EngineError(f"the plan's I/O tensors are {found}, the bundle contract wants {wanted}")

    def run(self, images: NDArray[np.uint8], masks: NDArray[np.float32]) -> tuple[NDArray[np.float32], ...]:
        """The graph's outputs for S = len(masks) samples, in `graph_outputs` order."""
        s = masks.shape[0]
        if s > self.max_samples:
            raise EngineInputError(
                f"masks have S = {s} samples, the TensorRT plan takes at most {self.max_samples} "
                "(build it with a larger max_samples)"
            )
        host, device, memory = self._host, self._device, self._memory
        np.copyto(host[IMAGES], images)
        np.copyto(host[DROPOUT_MASK][:s], masks)
        memory.activate()
        memory.upload(device[IMAGES], host[IMAGES])
        memory.upload(device[DROPOUT_MASK], host[DROPOUT_MASK][:s])
        if not self._context.set_input_shape(DROPOUT_MASK, (s, self.hidden_dim)):
            raise EngineError(f"TensorRT refused dropout_mask shape [{s}, {self.hidden_dim}]")
        if not self._context.execute_async_v3(memory.stream):
            raise EngineError("TensorRT execute_async_v3 failed")
        for spec in self._outputs:
            memory.download(host[spec.name][:s], device[spec.name])
        memory.synchronize()
        return tuple(host[spec.name][:s].copy() for spec in self._outputs)


class TensorRTEngine(InferenceEngine):
    """The bundle's model as a TensorRT plan on CUDA device `device` (see the module docstring).

    precision: ``fp16`` (default; FP32 where the GPU or TensorRT lacks weakly typed FP16), ``fp32``
        or ``int8`` (needs `calibration_images` or an existing calibration cache).
    calibration_images: preprocessed image sets [T, H, W, 3] uint8 for INT8 calibration.
    workspace_mb: the builder's workspace memory pool limit.
    max_samples: the largest S the plan accepts (default ``bundle.mc_samples``).
    rebuild: ignore a cached plan and build a new one.

    Raises:
        EngineUnavailableError: no `tensorrt`, TensorRT < 10, no CUDA binding or no CUDA device.
        EngineError: the plan cannot be built or loaded, or a CUDA call fails (the message says why).
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
        trt = import_tensorrt()
        self.trt_version = str(trt.__version__)
        if parse_version(self.trt_version) < MIN_TENSORRT:
            raise EngineUnavailableError(
                f"TensorRT backend unavailable: TensorRT {self.trt_version} is older than 10.0 (this engine "
                "uses the TensorRT 10 I/O-tensor API)"
            )
        self.gpu, self._memory = _open_gpu(device)
        self.requested_precision = precision
        self._trt_logger = make_logger(trt)
        self.precision, note = resolve_precision(
            precision, self.trt_version, fast_fp16(trt, self._trt_logger)
        )
        if note:
            logger.warning("TensorRT %s: %s", bundle.path, note)
        self.shapes = profile_shapes(bundle, max_samples)
        self._expected = plan_metadata(
            self.gpu.name,
            self.gpu.compute_capability,
            self.trt_version,
            self.precision,
            self.shapes,
            sha256_of(bundle.onnx_path),
        )
        self.files = PlanFiles.for_key(bundle.engines_dir, self._expected["key"])
        self.built = False
        self.build_seconds = 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._runtime = trt.Runtime(self._trt_logger)
        self._engine = self._load_or_build(trt, calibration_images, workspace_mb, rebuild)
        self._runner = _DeviceRunner(trt, self._engine, self._memory, bundle)
        self.max_samples = self._runner.max_samples

    @property
    def plan_path(self) -> Path:
        return self.files.plan

    @property
    def sidecar_path(self) -> Path:
        return self.files.sidecar

    @property
    def calibration_cache_path(self) -> Path:
        return self.files.calibration

    def _load_or_build(
        self,
        trt: ModuleType,
        calibration_images: Sequence[NDArray[np.uint8]] | None,
        workspace_mb: int,
        rebuild: bool,
    ) -> Any:
        """The cached plan when it is usable, else a new one (stored in the cache when it can be)."""
        problem = "rebuild requested" if rebuild else self.files.problem(self._expected)
        if problem is None:
            engine = self._deserialize(self.files.plan.read_bytes())
            if engine is not None:
                logger.info("TensorRT plan %s loaded from the cache", self.files.plan)
                return engine
            problem = f"TensorRT {self.trt_version} cannot deserialize it{errors_note(self._trt_logger)}"
        logger.info(
            "building a %s TensorRT plan for %s on %s (%s); this takes a while",
            self.precision,
            self.bundle.path,
            self.gpu.name,
            problem,
        )
        plan = self._build(trt, calibration_images, workspace_mb)
        engine = self._deserialize(plan)
        if engine is None:
            raise EngineError(
                f"TensorRT cannot deserialize the plan it just built{errors_note(self._trt_logger)}"
            )
        self._store(plan)
        return engine

    def _deserialize(self, plan: bytes) -> Any:
        try:
            return self._runtime.deserialize_cuda_engine(plan)
        except Exception as exc:  # pybind raises plain RuntimeError/TypeError subclasses
            logger.warning("TensorRT cannot deserialize a plan: %s", exc)
            return None

    def _calibrator(self, trt: ModuleType, calibration_images: Sequence[NDArray[np.uint8]] | None) -> Any:
        if not calibration_images and not self.files.has_calibration():
            raise EngineError(
                "INT8 needs calibration images (pose-train build-engine --precision int8 --calib-data "
                f"DIR) or a calibration cache {self.files.calibration}"
            )
        opt_samples = self.shapes[DROPOUT_MASK][1][0]
        return make_calibrator(
            trt,
            self._memory,
            self.bundle,
            list(calibration_images or []),
            opt_samples,
            self.files.calibration,
        )

    def _build(
        self, trt: ModuleType, calibration_images: Sequence[NDArray[np.uint8]] | None, workspace_mb: int
    ) -> bytes:
        calibrator = self._calibrator(trt, calibration_images) if self.precision == "int8" else None
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

    def _store(self, plan: bytes) -> None:
        sidecar = {
            **self._expected,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "build_seconds": round(self.build_seconds, 3),
            "requested_precision": self.requested_precision,
        }
        try:
            self.files.store(plan, sidecar)
        except OSError as exc:
            logger.warning(
                "cannot cache the TensorRT plan in %s (%s); running on the in-memory plan, it will be "
                "built again next time",
                self.bundle.engines_dir,
                exc,
            )

    def _infer(
        self, images: NDArray[np.uint8], masks: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], ...]:
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
                "plan": str(self.files.plan),
                "built_now": self.built,
                "max_samples": self.max_samples,
                "requested_precision": self.requested_precision,
            },
        )

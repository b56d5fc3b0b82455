"""GPU memory, copies and a stream through NVIDIA's CUDA Python binding (`cuda-bindings`), torch-free.

The TensorRT engine needs three things from CUDA: device buffers whose addresses it hands to
TensorRT, asynchronous host<->device copies on one stream, and the GPU's name and compute
capability for its plan-cache key. `CudaMemory` does the first two, `query_gpu` the third.

Every cudart function returns a tuple ``(error, values...)``; `check` turns an error into an
`EngineError` naming the call and CUDA's own name and text for the error, so no failure passes
silently. The binding is imported from ``cuda.bindings.runtime`` (cuda-bindings 12.6+ and 13.x)
or, failing that, the older ``cuda.cudart`` layout (cuda-python before 12.6).

`DeviceMemory` is what the engine relies on; the unit tests give it a host-memory stand-in.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import logging
import weakref
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np
from numpy.typing import DTypeLike, NDArray

from pose_regressor.engines.base import EngineError, EngineUnavailableError

__all__ = [
    "CUDART_MODULES",
    "CudaMemory",
    "DeviceMemory",
    "GpuInfo",
    "check",
    "cuda_binding_installed",
    "import_cudart",
    "query_gpu",
]

CUDART_MODULES = ("cuda.bindings.runtime", "cuda.cudart")  # current layout first, then pre-12.6

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuInfo:
    """The CUDA device an engine runs on: its name, compute capability and index."""

    name: str
    compute_capability: tuple[int, int]
    index: int


class DeviceMemory(Protocol):
    """Device buffers, pinned host arrays and ordered copies on one stream (see `CudaMemory`)."""

    @property
    def stream(self) -> int:
        """The stream handle for TensorRT's ``execute_async_v3`` (0: the default stream)."""

    def device_buffer(self, nbytes: int) -> int:
        """A device allocation of `nbytes`; its address. Freed by `close`."""

    def host_array(self, shape: tuple[int, ...], dtype: DTypeLike) -> NDArray[Any]:
        """A zeroed host array for copies (page-locked on a GPU). Freed by `close`."""

    def upload(self, device: int, host: NDArray[Any]) -> None:
        """Queue a copy of the C-contiguous `host` to address `device` on the stream."""

    def download(self, host: NDArray[Any], device: int) -> None:
        """Queue a copy from address `device` into the C-contiguous `host` on the stream."""

    def synchronize(self) -> None:
        """Wait until everything queued on the stream has run."""

    def activate(self) -> None:
        """Make this memory's GPU the calling thread's current device."""

    def close(self) -> None:
        """Free every buffer and the stream (idempotent)."""


def cuda_binding_installed() -> bool:
    """Whether a CUDA Python binding is importable, without importing it."""
    for name in CUDART_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except (ImportError, ValueError):  # find_spec imports the parent package, which may be absent
            continue
    return False


def import_cudart() -> ModuleType:
    """The cudart module of NVIDIA's CUDA Python binding (`EngineUnavailableError` when it is missing)."""
    problems = []
    for name in CUDART_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            problems.append(f"{name}: {exc}")
    raise EngineUnavailableError(
        "NVIDIA's CUDA Python binding cannot be imported (pip install cuda-bindings; "
        + "; ".join(problems)
        + ")"
    )


def _error_text(cudart: ModuleType, error: Any) -> str:
    """CUDA's name and description of `error`, e.g. ``cudaErrorNoDevice (no CUDA-capable device ...)``."""
    try:
        name = cudart.cudaGetErrorName(error)[1].decode()
        text = cudart.cudaGetErrorString(error)[1].decode()
    except Exception:  # the binding itself failing: the raw value is the best we have
        return str(error)
    return f"{name} ({text})"


def check(cudart: ModuleType, result: Any, call: str) -> Any:
    """The values of a cudart call's result ``(error, values...)``: None, one value or a tuple.

    Raises:
        EngineError: ``CUDA <call> failed: <error name> (<description>)``.
    """
    error, *values = result if isinstance(result, tuple) else (result,)
    if error != cudart.cudaError_t.cudaSuccess:
        raise EngineError(f"CUDA {call} failed: {_error_text(cudart, error)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def query_gpu(cudart: ModuleType, index: int) -> GpuInfo:
    """Name and compute capability of GPU `index`.

    Raises:
        EngineUnavailableError: CUDA finds no GPU (no driver, an older driver than the runtime,
            no device) or not GPU `index`; the message names the CUDA error.
    """
    try:
        count = int(check(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount"))
    except EngineError as exc:
        raise EngineUnavailableError(f"no usable CUDA GPU: {exc}") from None
    if not 0 <= index < count:
        raise EngineUnavailableError(f"CUDA device {index} requested, CUDA sees {count} GPU(s)")
    props = check(cudart, cudart.cudaGetDeviceProperties(index), f"cudaGetDeviceProperties({index})")
    raw = props.name
    name = raw.split(b"\0", 1)[0].decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return GpuInfo(name=name.strip(), compute_capability=(int(props.major), int(props.minor)), index=index)


def _release(cudart: ModuleType, device: list[int], host: list[int], streams: list[Any]) -> None:
    """Free what a `CudaMemory` holds; errors are logged, not raised (it runs from finalizers)."""
    calls = [(cudart.cudaFree, p, "cudaFree") for p in device]
    calls += [(cudart.cudaFreeHost, p, "cudaFreeHost") for p in host]
    calls += [(cudart.cudaStreamDestroy, s, "cudaStreamDestroy") for s in streams]
    for held in (device, host, streams):
        held.clear()  # a second close frees nothing twice
    for function, handle, name in calls:
        try:
            check(cudart, function(handle), name)
        except Exception as exc:  # at interpreter exit the driver may already be gone
            logger.debug("releasing CUDA memory: %s", exc)


class CudaMemory:
    """`DeviceMemory` on GPU `gpu.index` through cudart: cudaMalloc'd device buffers,
    cudaMallocHost'd (pinned) host arrays, cudaMemcpyAsync on one cudaStreamCreate'd stream.

    Everything is freed by `close`, or when the object is garbage collected.
    """

    def __init__(self, cudart: ModuleType, gpu: GpuInfo) -> None:
        self._cudart = cudart
        self._index = gpu.index
        self._device: list[int] = []
        self._host: list[int] = []
        self._streams: list[Any] = []
        self._finalizer = weakref.finalize(self, _release, cudart, self._device, self._host, self._streams)
        self.activate()
        stream = check(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._streams.append(stream)
        self._stream = stream
        self._stream_handle = _native_handle(stream)
        self._to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost

    @property
    def stream(self) -> int:
        return self._stream_handle

    def activate(self) -> None:
        # The current device is per host thread, and the node infers on an executor thread.
        check(self._cudart, self._cudart.cudaSetDevice(self._index), f"cudaSetDevice({self._index})")

    def device_buffer(self, nbytes: int) -> int:
        pointer = int(check(self._cudart, self._cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))
        self._device.append(pointer)
        return pointer

    def host_array(self, shape: tuple[int, ...], dtype: DTypeLike) -> NDArray[Any]:
        kind = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * kind.itemsize
        pointer = int(check(self._cudart, self._cudart.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})"))
        self._host.append(pointer)
        raw = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(pointer))
        array = raw.view(kind).reshape(shape)
        array.fill(0)
        return array

    def upload(self, device: int, host: NDArray[Any]) -> None:
        self._copy(device, _address(host), host.nbytes, self._to_device, "host to device")

    def download(self, host: NDArray[Any], device: int) -> None:
        self._copy(_address(host), device, host.nbytes, self._to_host, "device to host")

    def _copy(self, dst: int, src: int, nbytes: int, kind: Any, what: str) -> None:
        result = self._cudart.cudaMemcpyAsync(dst, src, nbytes, kind, self._stream)
        check(self._cudart, result, f"cudaMemcpyAsync ({what}, {nbytes} bytes)")

    def synchronize(self) -> None:
        check(self._cudart, self._cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self) -> None:
        self._finalizer()


def _native_handle(cuda_object: Any) -> int:
    """The address behind a binding object (a cudaStream_t), as TensorRT takes it."""
    try:
        utils = importlib.import_module("cuda.bindings.utils")
    except ImportError:  # before cuda-bindings 12.9.1, where int() was the way
        return int(cuda_object)
    return int(utils.get_cuda_native_handle(cuda_object))


def _address(array: NDArray[Any]) -> int:
    if not array.flags.c_contiguous:
        raise ValueError("CUDA copies need C-contiguous host arrays")  # a bug, never user input
    return int(array.ctypes.data)

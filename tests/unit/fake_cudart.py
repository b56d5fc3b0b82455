"""`FakeCudart`: the slice of ``cuda.bindings.runtime`` that `pose_regressor.engines.cuda_memory` calls,
on host memory, so `CudaMemory` runs for real without a GPU.

It keeps the real binding's conventions: every call returns ``(cudaError_t, values...)``, errors
and memcpy kinds are the real binding's enums (and CUDA's own error texts), a stream is a
``cudaStream_t``. "Device" and "pinned host" allocations are numpy byte buffers whose addresses it
hands out; cudaMemcpyAsync checks that both ends lie inside allocations of the right kind and
copies with memmove. `calls` records the call names, `fail` makes a named call return an error.
"""

# ruff: noqa: N802  (the method names are cudart's own)

from __future__ import annotations

import ctypes
import types
from typing import Any

import numpy as np


class FakeCudart:
    def __init__(self, real: Any, devices: int = 1, stream: int = 0) -> None:
        self.cudaError_t = real.cudaError_t
        self.cudaMemcpyKind = real.cudaMemcpyKind
        self.cudaGetErrorName = real.cudaGetErrorName
        self.cudaGetErrorString = real.cudaGetErrorString
        self._stream_type = real.cudaStream_t
        self.devices = devices
        self.stream_handle = stream
        self.device_blocks: dict[int, np.ndarray] = {}
        self.host_blocks: dict[int, np.ndarray] = {}
        self.streams: list[int] = []
        self.calls: list[str] = []
        self.fail: dict[str, Any] = {}
        self.current_device: int | None = None

    def _result(self, name: str, *values: Any) -> tuple[Any, ...]:
        self.calls.append(name)
        if name in self.fail:
            return (self.fail[name], *([None] * len(values)))
        return (self.cudaError_t.cudaSuccess, *values)

    def _allocate(self, blocks: dict[int, np.ndarray], nbytes: int) -> int:
        buffer = np.full(nbytes, 0xCD, np.uint8)  # uninitialized, as cudaMalloc's is
        blocks[int(buffer.ctypes.data)] = buffer
        return int(buffer.ctypes.data)

    def _inside(self, address: int, nbytes: int, blocks: dict[int, np.ndarray]) -> bool:
        return any(start <= address and address + nbytes <= start + b.nbytes for start, b in blocks.items())

    # ------------------------------------------------------------------ device
    def cudaGetDeviceCount(self) -> tuple[Any, ...]:
        return self._result("cudaGetDeviceCount", self.devices)

    def cudaGetDeviceProperties(self, index: int) -> tuple[Any, ...]:
        assert 0 <= index < self.devices
        props = types.SimpleNamespace(name=b"NVIDIA Fake H100\x00\x00stale bytes", major=9, minor=0)
        return self._result("cudaGetDeviceProperties", props)

    def cudaSetDevice(self, index: int) -> tuple[Any, ...]:
        result = self._result("cudaSetDevice")
        if result[0] == self.cudaError_t.cudaSuccess:
            self.current_device = index
        return result

    # ------------------------------------------------------------------ memory
    def cudaMalloc(self, nbytes: int) -> tuple[Any, ...]:
        if "cudaMalloc" in self.fail:
            return self._result("cudaMalloc", None)
        return self._result("cudaMalloc", self._allocate(self.device_blocks, nbytes))

    def cudaMallocHost(self, nbytes: int) -> tuple[Any, ...]:
        if "cudaMallocHost" in self.fail:
            return self._result("cudaMallocHost", None)
        return self._result("cudaMallocHost", self._allocate(self.host_blocks, nbytes))

    def cudaFree(self, address: int) -> tuple[Any, ...]:
        del self.device_blocks[address]
        return self._result("cudaFree")

    def cudaFreeHost(self, address: int) -> tuple[Any, ...]:
        del self.host_blocks[address]
        return self._result("cudaFreeHost")

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: Any, stream: Any) -> tuple[Any, ...]:
        assert isinstance(dst, int) and isinstance(src, int) and stream in self.streams
        to_device = kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice
        assert to_device or kind == self.cudaMemcpyKind.cudaMemcpyDeviceToHost
        device, host = (dst, src) if to_device else (src, dst)
        assert self._inside(device, nbytes, self.device_blocks), "device end outside cudaMalloc'd memory"
        assert self._inside(host, nbytes, self.host_blocks), "host end outside cudaMallocHost'd memory"
        ctypes.memmove(dst, src, nbytes)
        return self._result("cudaMemcpyAsync")

    # ------------------------------------------------------------------ streams
    def cudaStreamCreate(self) -> tuple[Any, ...]:
        stream = self._stream_type(self.stream_handle)
        self.streams.append(stream)
        return self._result("cudaStreamCreate", stream)

    def cudaStreamSynchronize(self, stream: Any) -> tuple[Any, ...]:
        assert stream in self.streams
        return self._result("cudaStreamSynchronize")

    def cudaStreamDestroy(self, stream: Any) -> tuple[Any, ...]:
        self.streams.remove(stream)
        return self._result("cudaStreamDestroy")

"""`pose_regressor.engines.cuda_memory`: checked cudart calls, the GPU query, and `CudaMemory`'s
buffers and copies, on `FakeCudart` (host memory, the real binding's enums) and, as far as it goes
without a driver, on the real binding."""

from __future__ import annotations

import numpy as np
import pytest

import pose_regressor.engines as engines_module
from pose_regressor.engines import EngineError, EngineUnavailableError
from pose_regressor.engines.cuda_memory import CudaMemory, GpuInfo, check, import_cudart, query_gpu
from tests.unit.fake_cudart import FakeCudart

REAL = import_cudart()  # cuda-bindings is in requirements/dev.txt
GPU = GpuInfo("NVIDIA Fake H100", (9, 0), 0)


@pytest.fixture
def cudart() -> FakeCudart:
    return FakeCudart(REAL, stream=0x5EED)


def test_check_returns_the_values_or_raises_one_line() -> None:
    success = REAL.cudaError_t.cudaSuccess
    assert check(REAL, (success,), "cudaFree") is None
    assert check(REAL, (success, 7), "cudaMalloc") == 7
    assert check(REAL, (success, 1, 2), "x") == (1, 2)
    with pytest.raises(
        EngineError,
        match=r"^CUDA cudaMalloc\(64\) failed: cudaErrorNoDevice \(no CUDA-capable device is detected\)$",
    ):
        check(REAL, (REAL.cudaError_t.cudaErrorNoDevice, None), "cudaMalloc(64)")


def test_query_gpu_reads_name_and_compute_capability(cudart: FakeCudart) -> None:
    assert query_gpu(cudart, 0) == GpuInfo("NVIDIA Fake H100", (9, 0), 0)  # type: ignore[arg-type]
    with pytest.raises(EngineUnavailableError, match=r"^CUDA device 1 requested, CUDA sees 1 GPU\(s\)$"):
        query_gpu(cudart, 1)  # type: ignore[arg-type]
    cudart.fail["cudaGetDeviceCount"] = REAL.cudaError_t.cudaErrorInsufficientDriver
    with pytest.raises(
        EngineUnavailableError,
        match=r"^no usable CUDA GPU: CUDA cudaGetDeviceCount failed: cudaErrorInsufficientDriver \(",
    ):
        query_gpu(cudart, 0)  # type: ignore[arg-type]


def test_buffers_copies_and_release(cudart: FakeCudart) -> None:
    memory = CudaMemory(cudart, GPU)  # type: ignore[arg-type]
    assert cudart.current_device == 0 and memory.stream == 0x5EED
    host = memory.host_array((3, 4), np.float32)
    assert host.shape == (3, 4) and host.dtype == np.float32 and not host.any()
    assert int(host.ctypes.data) in cudart.host_blocks  # pinned: cudaMallocHost'd, not numpy's
    device = memory.device_buffer(host.nbytes)
    host[:] = np.arange(12, dtype=np.float32).reshape(3, 4)
    memory.upload(device, host[:2])  # a prefix: only S rows travel
    back = memory.host_array((3, 4), np.float32)
    memory.download(back[:2], device)
    memory.synchronize()
    np.testing.assert_array_equal(back[:2], host[:2])
    assert not back[2].any()
    assert cudart.calls.count("cudaMemcpyAsync") == 2 and cudart.calls[-1] == "cudaStreamSynchronize"
    with pytest.raises(ValueError, match="C-contiguous"):
        memory.upload(device, host[:, :2])
    memory.close()
    assert not cudart.device_blocks and not cudart.host_blocks and not cudart.streams
    memory.close()  # idempotent
    assert cudart.calls.count("cudaFree") == 1


def test_failed_calls_name_the_call_and_the_error(cudart: FakeCudart) -> None:
    memory = CudaMemory(cudart, GPU)  # type: ignore[arg-type]
    cudart.fail["cudaMalloc"] = REAL.cudaError_t.cudaErrorMemoryAllocation
    with pytest.raises(EngineError, match=r"^CUDA cudaMalloc\(4096\) failed: cudaErrorMemoryAllocation \("):
        memory.device_buffer(4096)
    del cudart.fail["cudaMalloc"]
    host, device = memory.host_array((4,), np.uint8), memory.device_buffer(4)
    cudart.fail["cudaMemcpyAsync"] = REAL.cudaError_t.cudaErrorIllegalAddress
    with pytest.raises(
        EngineError,
        match=r"^CUDA cudaMemcpyAsync \(host to device, 4 bytes\) failed: cudaErrorIllegalAddress",
    ):
        memory.upload(device, host)
    del memory  # garbage collection frees what close would have
    assert not cudart.device_blocks and not cudart.host_blocks


def test_real_binding_without_a_driver_fails_at_the_first_call() -> None:
    if engines_module.cuda_device_count() > 0:
        pytest.skip("a CUDA GPU is here")
    with pytest.raises(EngineError, match=r"^CUDA cudaSetDevice\(0\) failed: cudaError\w+ \(.+\)$"):
        CudaMemory(REAL, GPU)
    with pytest.raises(EngineUnavailableError, match=r"^no usable CUDA GPU: CUDA cudaGetDeviceCount failed"):
        query_gpu(REAL, 0)

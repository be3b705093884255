"""ctypes bindings to the fake CUDA libraries, loaded as PyTorch loads the
real ones: the runtime, a vendored hashed copy of it, cuBLAS and the driver
all end up mapped in the process (the tracer must find them by pattern).

The libraries live under $SIMSERVER_SIM_DIR (set by `serve`), defaulting to
<repo>/build/sim.  The driver is loaded first by its path, so the others'
dependency on libcuda.so.1 resolves to it without LD_LIBRARY_PATH.
"""
import ctypes
import functools
import os
from pathlib import Path

SIM_DIR = Path(os.environ.get(
    "SIMSERVER_SIM_DIR", Path(__file__).resolve().parents[2] / "build" / "sim"))
SITE = SIM_DIR / "site-packages"
DRIVER = SIM_DIR / "driver" / "libcuda.so.1"
CUDART = SITE / "nvidia" / "cu13" / "lib" / "libcudart.so.13"
CUDART_VENDORED = SITE / "torchvision.libs" / "libcudart.faf08d9a.so.13"
CUBLAS = SITE / "nvidia" / "cublas" / "lib" / "libcublas.so.13"
SIMTORCH = SITE / "torch" / "lib" / "libsimtorch.so"

u64 = ctypes.c_uint64
c_int = ctypes.c_int
vp = ctypes.c_void_p


class Libs:
    """The loaded libraries with the argument types of what the sim calls."""

    def __init__(self):
        for path in (DRIVER, CUDART, CUDART_VENDORED, CUBLAS, SIMTORCH):
            if not path.exists():
                raise RuntimeError(f"{path} is missing: run `make -C simserver`")
        self.driver = ctypes.CDLL(str(DRIVER), mode=ctypes.RTLD_GLOBAL)
        self.cudart = ctypes.CDLL(str(CUDART))
        self.cudart_vendored = ctypes.CDLL(str(CUDART_VENDORED))
        self.cublas = ctypes.CDLL(str(CUBLAS))
        self.simtorch = ctypes.CDLL(str(SIMTORCH))
        _sig(self.driver.simcuCallCount, u64, ctypes.c_char_p)
        _sig(self.driver.simcuKernelLaunches, u64)
        _sig(self.driver.simcuGraphLaunches, u64)
        _sig(self.driver.simcuQueueTailNs, u64)
        _sig(self.cudart.cudaEventCreate, c_int, ctypes.POINTER(vp))
        _sig(self.cudart.cudaEventDestroy, c_int, vp)
        _sig(self.cudart.cudaEventRecord, c_int, vp, vp)
        _sig(self.cudart.cudaEventSynchronize, c_int, vp)
        _sig(self.cudart.cudaMallocHost, c_int, ctypes.POINTER(vp), ctypes.c_size_t)
        _sig(self.cudart.cudaDeviceSynchronize, c_int)
        _sig(self.simtorch.simtorch_layer, c_int, c_int, c_int, c_int, c_int)
        _sig(self.simtorch.simtorch_graph, c_int, c_int, c_int, c_int, c_int, c_int)
        _sig(self.simtorch.simtorch_copy_tokens, c_int, vp, ctypes.c_size_t, vp)

    def call_count(self, name: str) -> int:
        """Calls of driver function `name` in this process."""
        return self.driver.simcuCallCount(name.encode())

    def launch_counts(self) -> tuple[int, int]:
        """(kernel launches, graph launches) at the driver so far."""
        return self.driver.simcuKernelLaunches(), self.driver.simcuGraphLaunches()


def _sig(fn, restype, *argtypes):
    fn.restype = restype
    fn.argtypes = list(argtypes)


@functools.cache
def libs() -> Libs:
    """The process's libraries, loaded on first use (like `import torch`)."""
    return Libs()


def check(err: int, what: str) -> None:
    """Raise on a CUDA runtime error code."""
    if err:
        raise RuntimeError(f"{what} failed: cudaError {err}")


def launched(n: int, what: str) -> int:
    """Raise when a simtorch call failed (-1); else return its launch count."""
    if n < 0:
        raise RuntimeError(f"{what} failed")
    return n


class Event:
    """A CUDA event, as torch.cuda.Event: record() then synchronize()."""

    def __init__(self):
        self._libs = libs()
        self.handle = vp()
        check(self._libs.cudart.cudaEventCreate(ctypes.byref(self.handle)), "cudaEventCreate")

    def record(self) -> None:
        check(self._libs.cudart.cudaEventRecord(self.handle, None), "cudaEventRecord")

    def synchronize(self) -> None:
        check(self._libs.cudart.cudaEventSynchronize(self.handle), "cudaEventSynchronize")

    def __del__(self):
        self._libs.cudart.cudaEventDestroy(self.handle)


def pinned_buffer(size: int) -> int:
    """Address of `size` bytes of page-locked host memory (cudaMallocHost)."""
    ptr = vp()
    check(libs().cudart.cudaMallocHost(ctypes.byref(ptr), size), "cudaMallocHost")
    return ptr.value

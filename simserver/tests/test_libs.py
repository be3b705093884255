"""The fake CUDA libraries: exported names, runtime -> driver forwarding,
cuBLAS launching at the driver, and the virtual GPU queue's waits."""
import ctypes
import resource
import subprocess
import threading
import time

import pytest
from conftest import BUILD

from simvllm import cuda

SITE = BUILD / "sim" / "site-packages"
LIBS = {
    "runtime": SITE / "nvidia/cu13/lib/libcudart.so.13",
    "vendored runtime": SITE / "torchvision.libs/libcudart.faf08d9a.so.13",
    "driver": BUILD / "sim/driver/libcuda.so.1",
    "cublas": SITE / "nvidia/cublas/lib/libcublas.so.13",
}
RUNTIME_NAMES = [
    "cudaLaunchKernel", "cudaLaunchKernel_ptsz", "cudaLaunchKernelExC",
    "cudaLaunchKernelExC_ptsz", "cudaLaunchCooperativeKernel",
    "cudaLaunchCooperativeKernel_ptsz", "cudaGraphLaunch", "cudaGraphLaunch_ptsz",
    "cudaStreamSynchronize", "cudaStreamSynchronize_ptsz", "cudaDeviceSynchronize",
    "cudaEventSynchronize", "cudaEventRecord", "cudaEventRecord_ptsz", "cudaEventCreate",
    "cudaMemcpy", "cudaMemcpy_ptds", "cudaMemcpyAsync", "cudaMemcpyAsync_ptsz"]
DRIVER_NAMES = [
    "cuLaunchKernel", "cuLaunchKernel_ptsz", "cuLaunchKernelEx", "cuLaunchKernelEx_ptsz",
    "cuLaunchCooperativeKernel", "cuLaunchCooperativeKernel_ptsz", "cuGraphLaunch",
    "cuGraphLaunch_ptsz", "cuStreamSynchronize", "cuStreamSynchronize_ptsz",
    "cuCtxSynchronize", "cuEventSynchronize", "cuEventRecord", "cuEventRecord_ptsz",
    "cuMemcpyDtoH_v2", "cuMemcpyDtoH_v2_ptds", "cuMemcpyDtoHAsync_v2",
    "cuMemcpyDtoHAsync_v2_ptsz"]
NS_PER_BLOCK = 100


class Dim3(ctypes.Structure):
    _fields_ = [("x", ctypes.c_uint), ("y", ctypes.c_uint), ("z", ctypes.c_uint)]


class LaunchConfig(ctypes.Structure):
    _fields_ = [("gridDim", Dim3), ("blockDim", Dim3), ("dynamicSmemBytes", ctypes.c_size_t),
                ("stream", ctypes.c_void_p), ("attrs", ctypes.c_void_p),
                ("numAttrs", ctypes.c_uint)]


class GraphExec(ctypes.Structure):
    _fields_ = [("cost_ns", ctypes.c_uint64)]


def grid(ms: float) -> Dim3:
    """A grid whose kernel takes `ms` milliseconds of virtual GPU time."""
    return Dim3(int(ms * 1e6 / NS_PER_BLOCK), 1, 1)


def dynamic_symbols(path) -> set:
    out = subprocess.run(["nm", "-D", "--defined-only", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def soname(path) -> str:
    out = subprocess.run(["objdump", "-p", str(path)], check=True, capture_output=True,
                         text=True).stdout
    return next(line.split()[1] for line in out.splitlines() if "SONAME" in line)


@pytest.mark.parametrize("lib,names", [
    ("runtime", RUNTIME_NAMES), ("vendored runtime", RUNTIME_NAMES),
    ("driver", DRIVER_NAMES), ("cublas", ["cublasCreate_v2", "cublasGemmEx"])])
def test_exports(lib, names):
    missing = set(names) - dynamic_symbols(LIBS[lib])
    assert not missing, f"{lib} does not export {sorted(missing)}"


def test_layout_and_sonames():
    assert LIBS["driver"].is_symlink()
    assert LIBS["driver"].resolve().name == "libcuda.so.580.159.04"
    assert soname(LIBS["driver"]) == "libcuda.so.1"
    assert soname(LIBS["runtime"]) == "libcudart.so.13"
    assert soname(LIBS["vendored runtime"]) == "libcudart.faf08d9a.so.13"
    # Only the sim's own getters are extra: nothing else pollutes the namespace.
    extra = {s for s in dynamic_symbols(LIBS["driver"]) if not s.startswith("cu")}
    assert extra == {"simcuCallCount", "simcuKernelLaunches", "simcuGraphLaunches",
                     "simcuQueueTailNs"}


@pytest.fixture
def rt():
    """libs with an idle GPU queue; returns (libs, the runtime library)."""
    libs = cuda.libs()
    assert libs.cudart.cudaDeviceSynchronize() == 0
    return libs


def launch(rt_lib, fn, ms=0.01):
    f = getattr(rt_lib, fn)
    if fn.startswith("cudaLaunchKernelExC"):
        return f(ctypes.byref(LaunchConfig(grid(ms), Dim3(1, 1, 1))), None, None)
    return f(None, grid(ms), Dim3(128, 1, 1), None, ctypes.c_size_t(0), None)


def call_runtime(libs, lib, fn):
    """Call runtime function `fn` of `lib` with harmless arguments."""
    f = getattr(lib, fn)
    if "Launch" in fn and "Graph" not in fn:
        return launch(lib, fn)
    if fn.startswith("cudaGraphLaunch"):
        return f(ctypes.byref(GraphExec(10000)), None)
    if fn.startswith("cudaEventSynchronize"):
        event = cuda.Event()
        return f(event.handle)
    if fn.startswith("cudaMemcpy"):
        src, dst = ctypes.create_string_buffer(b"tokens"), ctypes.create_string_buffer(6)
        args = [dst, src, ctypes.c_size_t(6), 2]  # cudaMemcpyDeviceToHost
        result = f(*args, None) if "Async" in fn else f(*args)
        assert dst.raw == b"tokens"
        return result
    if fn == "cudaDeviceSynchronize":
        return f()
    return f(None)


FORWARDING = [
    ("cudaLaunchKernel", "cuLaunchKernel"),
    ("cudaLaunchKernel_ptsz", "cuLaunchKernel_ptsz"),
    ("cudaLaunchKernelExC", "cuLaunchKernelEx"),
    ("cudaLaunchKernelExC_ptsz", "cuLaunchKernelEx_ptsz"),
    ("cudaLaunchCooperativeKernel", "cuLaunchCooperativeKernel"),
    ("cudaLaunchCooperativeKernel_ptsz", "cuLaunchCooperativeKernel_ptsz"),
    ("cudaGraphLaunch", "cuGraphLaunch"),
    ("cudaGraphLaunch_ptsz", "cuGraphLaunch_ptsz"),
    ("cudaStreamSynchronize", "cuStreamSynchronize"),
    ("cudaStreamSynchronize_ptsz", "cuStreamSynchronize_ptsz"),
    ("cudaDeviceSynchronize", "cuCtxSynchronize"),
    ("cudaEventSynchronize", "cuEventSynchronize"),
    ("cudaMemcpy", "cuMemcpyDtoH_v2"),
    ("cudaMemcpy_ptds", "cuMemcpyDtoH_v2_ptds"),
    ("cudaMemcpyAsync", "cuMemcpyDtoHAsync_v2"),
    ("cudaMemcpyAsync_ptsz", "cuMemcpyDtoHAsync_v2_ptsz"),
]


@pytest.mark.parametrize("lib", ["cudart", "cudart_vendored"])
@pytest.mark.parametrize("runtime_fn,driver_fn", FORWARDING)
def test_runtime_call_reaches_driver_symbol(rt, lib, runtime_fn, driver_fn):
    before = {name: rt.call_count(name) for name in {d for _, d in FORWARDING}}
    assert call_runtime(rt, getattr(rt, lib), runtime_fn) == 0
    after = {name: rt.call_count(name) for name in before}
    changed = {name: after[name] - before[name] for name in before if after[name] != before[name]}
    assert changed == {driver_fn: 1}


def test_cublas_launches_straight_at_driver(rt):
    handle = ctypes.c_void_p()
    assert rt.cublas.cublasCreate_v2(ctypes.byref(handle)) == 0
    ex, kernels = rt.call_count("cuLaunchKernelEx"), rt.launch_counts()[0]
    one = ctypes.c_float(1)
    status = rt.cublas.cublasGemmEx(handle, 0, 0, 64, 2048, 2048, ctypes.byref(one), None,
                                    0, 64, None, 0, 2048, ctypes.byref(one), None, 0, 64, 0, -1)
    assert status == 0
    assert rt.call_count("cuLaunchKernelEx") == ex + 1
    assert rt.launch_counts()[0] == kernels + 1


def timed(fn, *args):
    wall, cpu = time.monotonic(), time.process_time()
    result = fn(*args)
    return result, time.monotonic() - wall, time.process_time() - cpu


# Timing on a busy machine (CI shares its cores): a thread may wait for a core
# for tens of milliseconds at any point, so no check assumes it runs at once.
# A wait is checked against the virtual GPU's own clock instead: it ends no
# earlier than the point it waits for (exact, whatever the load) and within
# LATE_S of it (a wake-up on a loaded core), and it sleeps.
LATE_S = 0.1


def now_ns():
    return time.monotonic_ns()


def check_waits_until(fn, args, until_ns, *, what):
    """Call fn(*args), which must block until until_ns (CLOCK_MONOTONIC)."""
    result, wait_s, cpu_s = timed(fn, *args)
    returned = now_ns()
    assert result in (0, None)  # cudaSuccess, or a wrapper's nothing
    assert returned >= until_ns, f"{what} returned {(until_ns - returned) / 1e6:.1f} ms before the work was done"
    assert returned - until_ns < LATE_S * 1e9, f"{what} returned {(returned - until_ns) / 1e6:.1f} ms after the work was done"
    assert cpu_s < min(0.05, wait_s / 2 + 0.01), f"{what} must sleep, not spin ({cpu_s * 1e3:.1f} ms of CPU)"
    return wait_s


def test_launch_is_queued_and_sync_sleeps_until_done(rt):
    before = now_ns()
    result = launch(rt.cudart, "cudaLaunchKernel", 300)
    after = now_ns()
    assert result == 0
    tail = rt.driver.simcuQueueTailNs()
    # Queued, not run: the work ends 300 ms after the launch began, not
    # before the launch returned.
    assert before + 300e6 <= tail <= after + 300e6
    check_waits_until(rt.cudart.cudaStreamSynchronize, (None,), tail, what="cudaStreamSynchronize")


def test_work_queues_behind_earlier_work(rt):
    start = now_ns()
    for _ in range(3):
        launch(rt.cudart, "cudaLaunchKernel", 100)
    tail = rt.driver.simcuQueueTailNs()
    assert tail >= start + 300e6, "three 100 ms kernels queue one after another"
    check_waits_until(rt.cudart.cudaDeviceSynchronize, (), tail, what="cudaDeviceSynchronize")


def test_event_waits_only_for_work_queued_before_it(rt):
    event = cuda.Event()
    launch(rt.cudart, "cudaLaunchKernel", 150)
    event_at = rt.driver.simcuQueueTailNs()
    event.record()
    launch(rt.cudart, "cudaLaunchKernel", 300)
    tail = rt.driver.simcuQueueTailNs()
    assert tail >= event_at + 300e6
    check_waits_until(event.synchronize, (), event_at, what="the event")
    check_waits_until(rt.cudart.cudaDeviceSynchronize, (), tail, what="cudaDeviceSynchronize")


def test_dtoh_copy_to_pageable_waits_but_to_pinned_does_not(rt):
    pinned = cuda.pinned_buffer(64)
    pageable = ctypes.create_string_buffer(64)
    src = ctypes.create_string_buffer(64)
    launch(rt.cudart, "cudaLaunchKernel", 200)
    tail = rt.driver.simcuQueueTailNs()
    # Not waited for: the thread does not sleep in it (a preemption on a
    # busy core would be an involuntary switch, a wait a voluntary one).
    sleeps = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    assert rt.cudart.cudaMemcpyAsync(ctypes.c_void_p(pinned), src, 64, 2, None) == 0
    assert resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw == sleeps, "a copy to pinned memory is queued, not waited for"
    tail = rt.driver.simcuQueueTailNs()  # the copy itself is queued too
    check_waits_until(rt.cudart.cudaMemcpyAsync, (pageable, src, 64, 2, None), tail, what="a copy to pageable memory")


def test_output_thread_syncs_while_main_thread_launches(rt):
    """Thread safety: a synchronizing thread sees work another thread queues.

    The main thread launches at least 2000 kernels (100 ms of GPU work) and
    goes on until the output thread has waited 10 ms in all for work it
    queued: on a busy machine the output thread may get a core only after
    the 2000 launches (it once never ran before they ended). A queue that a
    thread's syncs do not see stays at no wait until the 30 s deadline.
    """
    waited = [0.0, 0]  # seconds, syncs
    queued, done = threading.Event(), threading.Event()

    def output_thread():
        # Syncs only once work is queued (else 20 syncs could all run before
        # the first launch), then while the main thread keeps launching.
        queued.wait()
        while not done.is_set():
            waited[0] += timed(rt.cudart.cudaStreamSynchronize, None)[1]
            waited[1] += 1

    t = threading.Thread(target=output_thread)
    t.start()
    launches, deadline = 0, time.monotonic() + 30
    while launches < 2000 or (waited[0] <= 0.01 and time.monotonic() < deadline):
        launch(rt.cudart, "cudaLaunchKernel", 0.05)
        launches += 1
        if launches == 500:  # 25 ms of GPU work queued, launched in a few ms
            queued.set()
    done.set()
    t.join()
    assert rt.cudart.cudaDeviceSynchronize() == 0
    assert rt.driver.simcuQueueTailNs() <= time.monotonic_ns()
    assert waited[0] > 0.01, f"{waited[1]} syncs waited {waited[0] * 1e3:.1f} ms in all during {launches} launches"

#!/usr/bin/env python3
"""What one probe hit costs on this machine, per class of probe, on the
real driver and the marker's real probe library.

    sudo python3 gpu/hitcost.py [--tracer bin/profilemate-bpf] [--calls launch,graph,sync,marker]
                                [--seconds 2] [--rounds 3]

Each class is a call that the tracer probes as it probes a running vLLM:

- launch: cuLaunchKernel with a null function (the driver rejects it at
  once): one entry probe, as every kernel launch while launches are counted;
- graph: cuGraphLaunch with a null graph: one entry probe, as a graph replay;
- sync: cuEventSynchronize with a null event (rejected at once): an entry
  and a return probe, as every synchronizing call (vLLM's async output
  waits on an event; its copies to pinned memory are probed alike);
- marker: the marker library's step_begin, step_end and sched_step, as one
  traced step fires them (the USDT sites, with the tracer's programs).

In one process, untraced phases alternate with phases with the tracer
attached to this process (--launches=all, so that launches are probed for
the whole phase). Prints, per class, the mean ns per call of each phase and
the median of each traced phase less the untraced ones beside it: what the
tracer adds per call in a tight loop, with warm caches. A hit inside a
running server costs several times as much (the trap path and the programs
run from cold caches), so these figures rank the classes and bound their
cost from below; the servers' kernel CPU per step in gpu/vllm_validate.py
gives the cost in place. Also prints the kernel release, the first bytes
of the probed functions (the kernel emulates some first instructions and
single-steps the others, which costs a second trap) and where the driver
maps pinned host memory (its VMA's maps line and flags).
"""
import argparse
import ctypes
import json
import os
import platform
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# After PYTHONPATH: an installed marker (its wheel unpacked on a GPU host)
# comes first, the checkout's in-place build (make marker) otherwise.
sys.path.append(os.path.join(HERE, "..", "marker"))
from tracerrun import Tracer  # noqa: E402  (the tracer as gpu/vllm_validate.py runs it)

PROBED_FUNCS = ("cuLaunchKernel", "cuGraphLaunch", "cuEventSynchronize", "cuMemcpyDtoHAsync_v2")
CLASSES = ("launch", "graph", "sync", "marker")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tracer", default=os.path.join(HERE, "..", "bin", "profilemate-bpf"))
    p.add_argument("--calls", default="launch,graph,sync,marker",
                   help="classes to time, comma-separated: " + ", ".join(CLASSES))
    p.add_argument("--seconds", type=float, default=2.0, help="length of each phase")
    p.add_argument("--rounds", type=int, default=3, help="traced phases per class, each between two untraced")
    p.add_argument("--batch", type=int, default=2000, help="calls between clock reads")
    args = p.parse_args(argv)
    args.calls = [c.strip() for c in args.calls.split(",") if c.strip()]
    bad = [c for c in args.calls if c not in CLASSES]
    if bad or not args.calls:
        p.error(f"--calls: unknown {', '.join(bad) or 'empty list'} (known: {', '.join(CLASSES)})")
    if args.seconds <= 0 or args.rounds < 1 or args.batch < 1:
        p.error("--seconds, --rounds and --batch must be positive")
    return args


def driver():
    lib = ctypes.CDLL("libcuda.so.1")
    # The simulated driver (LD_LIBRARY_PATH=build/sim/driver) has no cuInit.
    if hasattr(lib, "cuInit") and lib.cuInit(0) != 0:
        sys.exit("hitcost: cuInit failed (no GPU?)")
    for name, args in (("cuLaunchKernel", [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p] * 3),
                       ("cuGraphLaunch", [ctypes.c_void_p, ctypes.c_void_p]),
                       ("cuEventSynchronize", [ctypes.c_void_p])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = ctypes.c_int, args
    return lib


def marker_probes():
    """The marker's probe functions (native.Probes), or exit if unbuilt."""
    from profilemate_marker import native
    path = native.find_library()
    if path is None:
        sys.exit("hitcost: the marker's probe library is not built (make marker)")
    return native.Probes(path)


def calls(lib, probes):
    """Per class, a function of one call (a step for the marker)."""
    launch, graph, sync = lib.cuLaunchKernel, lib.cuGraphLaunch, lib.cuEventSynchronize
    step = [0]

    def marker():
        # One traced step as the marker fires it: begin, end, the scheduler's
        # record joined to it by sched_key.
        step[0] += 1
        s = step[0]
        probes.step_begin(s, 64, 64, 0, 0, s)
        probes.step_end(s, 0, 0)
        probes.sched_step(s, 100, 64, 0, 0, 64, 8192, 64, 256, -1, -1)

    return {"launch": lambda: launch(None, 1, 1, 1, 1, 1, 1, 0, None, None, None),
            "graph": lambda: graph(None, None),
            "sync": lambda: sync(None),
            "marker": marker}


def phase(call, seconds, batch):
    """Mean ns per call over `seconds` of calls."""
    calls_done, t0 = 0, time.perf_counter_ns()
    end = t0 + int(seconds * 1e9)
    now = t0
    while now < end:
        for _ in range(batch):
            call()
        calls_done += batch
        now = time.perf_counter_ns()
    return (now - t0) / calls_done


def traced_phase(args, run):
    """run() with the tracer attached to this process; returns run's result
    and the tracer's attach summary line."""
    with tempfile.TemporaryDirectory() as tmp:
        tracer = Tracer(args.tracer, os.getpid(), tmp, ["--launches=all", "--syncs=all"], os.path.join(tmp, "tracer.log"))
        try:
            tracer.wait_attached()
        except RuntimeError as e:
            sys.exit(f"hitcost: {e}")
        time.sleep(0.2)
        result = run()
        tracer.stop()
    return result, tracer.attach_line


def measure(args, call):
    """Untraced and traced phases of call alternating: each traced one is
    compared with the untraced ones on either side, since a machine whose
    speed drifts (clocks, neighbours) once gave an untraced first phase 40%
    slower than the last, and a negative cost from one before/after pair."""
    run = lambda: phase(call, args.seconds, args.batch)
    phase(call, min(0.5, args.seconds), args.batch)  # warm up
    untraced, traced, attached = [run()], [], ""
    for _ in range(args.rounds):
        ns, attached = traced_phase(args, run)
        traced.append(ns)
        untraced.append(run())
    added = [t - (untraced[i] + untraced[i + 1]) / 2 for i, t in enumerate(traced)]
    return dict(untraced_ns=untraced, traced_ns=traced, added_ns=added,
                added_ns_per_call=statistics.median(added), attach=attached)


def pinned_mapping(lib):
    """Where the driver puts pinned host memory: the /proc/self/smaps entry
    (its maps line and VmFlags) of a 1 MiB cuMemAllocHost_v2 buffer, or the
    driver's error. vLLM's copies of each step's output go to pinned memory
    and never wait, where a copy to pageable memory does; a probe could
    tell them apart by the destination's VMA if pinned memory has one of
    its own kind."""
    if hasattr(lib, "cuDevicePrimaryCtxRetain"):  # the real driver: a context first
        dev, ctx = ctypes.c_int(), ctypes.c_void_p()
        for rc in (lib.cuDeviceGet(ctypes.byref(dev), 0),
                   lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev),
                   lib.cuCtxSetCurrent(ctx)):
            if rc:
                return {"error": f"no CUDA context (CUresult {rc})"}
    buf = ctypes.c_void_p()
    rc = lib.cuMemAllocHost_v2(ctypes.byref(buf), ctypes.c_size_t(1 << 20))
    if rc:
        return {"error": f"cuMemAllocHost_v2: CUresult {rc}"}
    try:
        return {"address": hex(buf.value), **smaps_entry(buf.value)}
    finally:
        lib.cuMemFreeHost(buf)


def smaps_entry(addr, path="/proc/self/smaps"):
    """The maps line and VmFlags of the VMA holding addr ({} if none)."""
    entry = {}
    with open(path) as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(x, 16) for x in head.split("-"))
                if entry:
                    break  # past the VMA
                if lo <= addr < hi:
                    entry["mapping"] = line.strip()
            elif entry and line.startswith("VmFlags:"):
                entry["vm_flags"] = line.split(":", 1)[1].strip()
    return entry


def first_bytes(lib, name, n=8):
    try:
        addr = ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
    except AttributeError:
        return None
    return ctypes.string_at(addr, n).hex(" ")


def main(argv=None):
    args = parse_args(argv)
    lib = driver()
    # The marker's library is loaded for every class, so that every traced
    # phase attaches the same probes.
    fns = calls(lib, marker_probes())
    out = {"kernel": platform.release(),
           "first_bytes": {f: first_bytes(lib, f) for f in PROBED_FUNCS},
           "pinned": pinned_mapping(lib), "classes": {}}
    print(f"pinned host memory: {out['pinned']}", flush=True)
    for c in args.calls:
        r = out["classes"][c] = measure(args, fns[c])
        print(f"{c}: {statistics.median(r['untraced_ns']):.0f} ns a call untraced, "
              f"{statistics.median(r['traced_ns']):.0f} traced (medians of {len(r['untraced_ns'])} and "
              f"{len(r['traced_ns'])} phases): "
              f"the probes add {r['added_ns_per_call']:.0f} ns a call "
              f"(rounds: {', '.join(f'{a:.0f}' for a in r['added_ns'])})", flush=True)
    print("HITCOST " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""What one probed kernel launch costs on this machine, on the real driver.

    sudo python3 gpu/launchcost.py [--tracer bin/profilemate-bpf] [--seconds 2] [--rounds 3]

Calls cuLaunchKernel of the real libcuda in a loop with a null function,
which the driver rejects at once, so the loop times the call and whatever
probe sits on it. In one process, untraced phases alternate with phases
with the tracer attached to this process (it probes cuLaunchKernel among
others). Prints the mean nanoseconds per call of each phase and the median
of each traced phase less the untraced ones beside it: what the tracer adds
to every kernel launch (the eager-mode cost: a decode step launches hundreds
of kernels). Also prints
the kernel release and the first bytes of the probed launch functions: the
kernel emulates some first instructions and single-steps the others, which
costs a second trap.
"""
import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

LAUNCH_FUNCS = ("cuLaunchKernel", "cuLaunchKernelEx", "cuGraphLaunch")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tracer", default=os.path.join(os.path.dirname(__file__), "..", "bin",
                                                   "profilemate-bpf"))
    p.add_argument("--seconds", type=float, default=2.0, help="length of each phase")
    p.add_argument("--rounds", type=int, default=3, help="traced phases, each between two untraced")
    p.add_argument("--batch", type=int, default=20000, help="calls between clock reads")
    return p.parse_args(argv)


def driver():
    lib = ctypes.CDLL("libcuda.so.1")
    # The simulated driver (LD_LIBRARY_PATH=build/sim/driver) has no cuInit.
    if hasattr(lib, "cuInit") and lib.cuInit(0) != 0:
        sys.exit("launchcost: cuInit failed (no GPU?)")
    launch = lib.cuLaunchKernel
    launch.restype = ctypes.c_int
    launch.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p] * 3
    return lib, launch


def first_bytes(lib, name, n=8):
    try:
        addr = ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
    except AttributeError:
        return None
    return ctypes.string_at(addr, n).hex(" ")


def phase(launch, seconds, batch):
    """Mean ns per call over `seconds` of calls."""
    calls, t0 = 0, time.perf_counter_ns()
    end = t0 + int(seconds * 1e9)
    now = t0
    while now < end:
        for _ in range(batch):
            launch(None, 1, 1, 1, 1, 1, 1, 0, None, None, None)
        calls += batch
        now = time.perf_counter_ns()
    return (now - t0) / calls


def traced_phase(args, launch):
    """One phase with the tracer attached to this process; returns the mean
    ns per call and the tracer's attach line."""
    with tempfile.TemporaryDirectory() as tmp:
        tracer = subprocess.Popen(
            [args.tracer, "--pid", str(os.getpid()), "--duration", f"{args.seconds + 30}s",
             "--out", tmp], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        attached = ""
        for line in tracer.stderr:
            if "probes attached in" in line:
                attached = line.strip()
                break
        if not attached:
            tracer.wait()
            sys.exit(f"launchcost: the tracer did not attach (exit {tracer.returncode})")
        time.sleep(0.2)
        ns = phase(launch, args.seconds, args.batch)
        tracer.terminate()
        tracer.communicate()
    return ns, attached


def main(argv=None):
    args = parse_args(argv)
    lib, launch = driver()
    rc = launch(None, 1, 1, 1, 1, 1, 1, 0, None, None, None)
    out = {"kernel": platform.release(), "null_launch_result": rc,
           "first_bytes": {f: first_bytes(lib, f) for f in LAUNCH_FUNCS}}
    phase(launch, 0.5, args.batch)  # warm up
    # Untraced and traced phases alternate, and each traced one is compared
    # with the untraced ones on either side: a machine whose speed drifts
    # (clocks, neighbours) once gave an untraced first phase 40% slower than
    # the last, and a negative probe cost from a single before/after pair.
    untraced, traced = [phase(launch, args.seconds, args.batch)], []
    for _ in range(args.rounds):
        ns, out["attach"] = traced_phase(args, launch)
        traced.append(ns)
        untraced.append(phase(launch, args.seconds, args.batch))
    added = [t - (untraced[i] + untraced[i + 1]) / 2 for i, t in enumerate(traced)]
    out.update(untraced_ns=untraced, traced_ns=traced, added_ns=added,
               added_ns_per_launch=statistics.median(added))
    print("LAUNCHCOST " + json.dumps(out), flush=True)
    print(f"launch call: {statistics.median(untraced):.0f} ns untraced, "
          f"{statistics.median(traced):.0f} ns traced (medians of {len(untraced)} and {len(traced)} phases): "
          f"the probe adds {out['added_ns_per_launch']:.0f} ns per launch "
          f"(rounds: {', '.join(f'{a:.0f}' for a in added)})", flush=True)


if __name__ == "__main__":
    main()

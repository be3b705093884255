#!/usr/bin/env python3
"""CPU time per step that the tracer costs the simulated server, by
alternating untraced and traced windows on one running server:

    taskset -c 1 simserver/serve --workers 1 --duration 900 --truth-dir T &
    sudo scripts/probe-cost.py --tracer-cpus 0 T $! 5 "" "--launches=off" \\
        "--launches=off --leave-out=sync,graph" "@/tmp/old-binary" ...

For each config (tracer flags; "" is the default; a leading "@PATH" runs
the tracer binary at PATH instead of bin/profilemate-bpf; "semaphores" runs
no tracer but sets the marker's semaphores by hand, so that the marker does
its traced work in Python with no uprobe to fire: its share of the cost)
and for untraced
windows, REPS windows of 6 s each, in rounds: every config once a round, so
that the server's drift reaches all of them alike. Per window, the CPU time
of every thread of the server tree (/proc/PID/task/TID/schedstat: exact,
not tick-sampled) and its kernel share (/proc/PID/stat, tick-sampled), over
the steps the truth files counted. Printed per config: mean CPU µs/step,
its difference to the untraced window of the same round with a 95%
interval (paired t), and the same for the kernel share. --tracer-cpus pins the tracer away from the server (taskset), as
gpu/vllm_validate.py pins real servers, so that the tracer's own work does
not preempt the server's threads on a small machine.

The rate of a simulated server is paced by its fake GPU; its CPU time per
step is what shows the tracer's cost (a real vLLM showed the same through
the servers' kernel time, gpu/vllm_validate.py).
"""
import glob
import os
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gpu"))
sys.path.insert(0, os.path.join(HERE, "..", "marker", "tests"))
import vllmstats  # noqa: E402  (the validation's statistics, pure Python)
from elf import Elf  # noqa: E402  (the marker tests' reader of the library's USDT notes)
from tracerrun import ATTACHED  # noqa: E402  (the tracer's line once every probe is live)

HZ = os.sysconf("SC_CLK_TCK")
WINDOW_S = 6
BIN = os.path.join(HERE, "..", "bin", "profilemate-bpf")


def tree(root):
    """root and every process below it."""
    children = {}
    for f in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = open(f).read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        children.setdefault(int(fields[1]), []).append(int(f.split("/")[2]))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def tree_cpu(root):
    """(CPU ns of every thread, system seconds) of the tree below root."""
    cpu_ns = system = 0
    for pid in tree(root):
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            system += int(fields[12])
            for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
                cpu_ns += int(open(f).read().split()[0])
        except OSError:
            continue
    return cpu_ns, system / HZ


def steps(truth):
    """Steps the simulated workers wrote to their truth files so far."""
    return sum(sum(1 for _ in open(f)) - 1 for f in glob.glob(os.path.join(truth, "truth_*.csv")))


#: The marker's probes a default trace attaches (step_end stands for the
#: three it replaced), whose semaphores the "semaphores" config sets.
TRACED_PROBES = ("step_begin", "step_end", "sched_step")


def marker_semaphores(root, value):
    """Sets the semaphores of TRACED_PROBES to value in every process below
    root that maps the marker's library, by writing its memory as the
    kernel's ref_ctr_offset would; returns those processes' pids."""
    done = []
    for pid in tree(root):
        try:
            maps = open(f"/proc/{pid}/maps").read().splitlines()
        except OSError:
            continue  # exited meanwhile
        # The library's first mapping (file offset 0) is its load base: its
        # first segment is linked at address 0, as a shared library's is.
        lib = [f for f in (line.split() for line in maps)
               if len(f) >= 6 and os.path.basename(f[5]).startswith("libprofilemate_marker") and int(f[2], 16) == 0]
        if not lib:
            continue
        base, path = int(lib[0][0].split("-")[0], 16), lib[0][5]
        sems = {n.name: n.semaphore for n in Elf(path).stapsdt_notes()}
        if not all(sems.get(n) for n in TRACED_PROBES):
            sys.exit(f"{path}: no semaphore for one of {TRACED_PROBES} in its USDT notes")
        with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
            for n in TRACED_PROBES:
                mem.seek(base + sems[n])
                mem.write(struct.pack("<H", value))
        done.append(pid)
    return done


def tracer_cmd(flags, pid, out, cpus):
    binary, args = BIN, flags.split()
    if args and args[0].startswith("@"):
        binary, args = args[0][1:], args[1:]
    cmd = [binary, "--pid", str(pid), "--duration", "600s", "--out", out] + args
    return (["taskset", "-c", cpus] if cpus else []) + cmd


def window(pid, truth, flags, cpus):
    """(CPU µs/step, system µs/step) over one window, traced with flags
    (None: untraced); the tracer's attach is left out of the window."""
    tracer = None
    if flags == "semaphores":
        if not marker_semaphores(pid, 1):
            sys.exit(f"no process below {pid} maps the marker's library")
        time.sleep(0.5)
    elif flags is not None:
        tracer = subprocess.Popen(tracer_cmd(flags, pid, os.path.join(truth, "probe-cost-out"), cpus),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in tracer.stderr:
            if ATTACHED.search(line):
                break
        else:
            sys.exit(f"the tracer with {flags!r} exited before attaching: exit {tracer.wait()}")
        time.sleep(0.5)
    try:
        (c0, s0), n0 = tree_cpu(pid), steps(truth)
        time.sleep(WINDOW_S)
        (c1, s1), n1 = tree_cpu(pid), steps(truth)
    finally:  # a marker left with its semaphores up would do traced work for good
        if flags == "semaphores":
            marker_semaphores(pid, 0)
    if tracer:
        tracer.send_signal(2)
        tracer.wait()
    n = max(n1 - n0, 1)
    return (c1 - c0) / n / 1e3, (s1 - s0) / n * 1e6


def interval(a, b):
    """Mean of a less b, window by window of the same round (paired: the
    server's drift over the run cancels), and the half-width of its 95%
    interval (vllmstats.mean_ci, Student's t)."""
    m, half, _ = vllmstats.mean_ci([x - y for x, y in zip(a, b)])
    return m, half


def main(argv):
    cpus = None
    if len(argv) > 2 and argv[1] == "--tracer-cpus":
        cpus, argv = argv[2], argv[:1] + argv[3:]
    if len(argv) < 4 or not argv[3].isdigit() or int(argv[3]) < 1:
        sys.exit(__doc__)
    truth, pid, reps, configs = argv[1], int(argv[2]), int(argv[3]), argv[4:]
    if not os.path.isdir(truth) or not os.path.exists(f"/proc/{pid}"):
        sys.exit(f"no truth folder {truth} or no process {pid}")
    results = {}
    for _ in range(reps):
        for c in [None] + configs:
            results.setdefault(c, []).append(window(pid, truth, c, cpus))
    base = [cpu for cpu, _ in results[None]]
    base_sys = [s for _, s in results[None]]
    for c, v in results.items():
        cpu = [x for x, _ in v]
        sys_ = [s for _, s in v]
        name = "untraced" if c is None else repr(c)
        extra = extra_sys = ""
        if c is not None:
            extra, extra_sys = "%+6.1f ±%4.1f" % interval(cpu, base), "%+5.1f ±%4.1f" % interval(sys_, base_sys)
        print(f"{name:58s} CPU {statistics.mean(cpu):6.1f} µs/step {extra:13s} "
              f"(kernel {statistics.mean(sys_):5.1f} {extra_sys:12s}) [{' '.join('%.0f' % x for x in cpu)}]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

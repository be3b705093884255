#!/usr/bin/env python3
"""Kernel CPU time per step that each class of probe costs the simulated
server, by alternating untraced and traced windows on one running server:

    simserver/serve --workers 1 --duration 400 --truth-dir T &
    sudo scripts/probe-cost.py T $! 3 "" "--launches=off" \\
        "--launches=off --leave-out=sync,graph" ...

For each config (tracer flags; "" is the default) and for untraced windows,
REPS windows of 6 s each: the server tree's user and system CPU time
(/proc/PID/stat, every process below the API server) over the steps its
truth files counted, in µs per step, with each window's system figure.
The rate of a simulated server is paced by its fake GPU; its CPU time per
step is what shows the probes' cost (a real vLLM showed the same through
the servers' kernel time, gpu/vllm_validate.py).
"""
import glob
import os
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
WINDOW_S = 6
BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bin", "profilemate-bpf")


def tree_cpu(root):
    """(user, system) CPU seconds of root and every process below it."""
    children, times = {}, {}
    for f in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = open(f).read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid = int(f.split("/")[2])
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = (int(fields[11]), int(fields[12]))
    user = system = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        u, s = times.get(pid, (0, 0))
        user, system = user + u, system + s
    return user / HZ, system / HZ


def steps(truth):
    """Steps the simulated workers wrote to their truth files so far."""
    return sum(sum(1 for _ in open(f)) - 1 for f in glob.glob(os.path.join(truth, "truth_*.csv")))


def window(pid, truth, flags):
    """(user µs/step, system µs/step) over one window, traced with flags
    (None: untraced); the tracer's attach is left out of the window."""
    tracer = None
    if flags is not None:
        tracer = subprocess.Popen([BIN, "--pid", str(pid), "--duration", "600s", "--out",
                                   os.path.join(truth, "probe-cost-out")] + flags.split(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in tracer.stderr:
            if "probes attached" in line:
                break
        else:
            sys.exit(f"the tracer with {flags!r} exited before attaching: exit {tracer.wait()}")
        time.sleep(0.5)
    (u0, s0), n0 = tree_cpu(pid), steps(truth)
    time.sleep(WINDOW_S)
    (u1, s1), n1 = tree_cpu(pid), steps(truth)
    if tracer:
        tracer.send_signal(2)
        tracer.wait()
    n = max(n1 - n0, 1)
    return (u1 - u0) / n * 1e6, (s1 - s0) / n * 1e6


def main(argv):
    if len(argv) < 4 or not argv[3].isdigit() or int(argv[3]) < 1:
        sys.exit(__doc__)
    truth, pid, reps, configs = argv[1], int(argv[2]), int(argv[3]), argv[4:]
    if not os.path.isdir(truth) or not os.path.exists(f"/proc/{pid}"):
        sys.exit(f"no truth folder {truth} or no process {pid}")
    results = {}
    for _ in range(reps):
        for c in [None] + configs:
            results.setdefault(c, []).append(window(pid, truth, c))
    base = sum(s for _, s in results[None]) / reps
    for c, v in results.items():
        sys_ = [s for _, s in v]
        mean = sum(sys_) / reps
        print(f"{'untraced' if c is None else repr(c):58s} user {sum(u for u, _ in v) / reps:6.1f}  "
              f"sys {mean:6.1f} µs/step [{' '.join('%.0f' % s for s in sys_)}]  "
              f"{'' if c is None else '%+.0f' % (mean - base)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

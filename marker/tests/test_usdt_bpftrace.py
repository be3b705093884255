"""Fires the probes with a real USDT consumer attached: bpftrace, as root.

bpftrace attaches by library path (no -p), the way the Go tracer does: the
kernel itself raises the semaphores through the uprobe's ref_ctr_offset in
every process mapping the library.  No tracefs needed (bpftrace uses the
uprobe PMU through perf_event_open).
"""
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import FAKE_VLLM, MARKER_DIR

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="attaching uprobes with bpftrace needs root")

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

# %ld for nsecs and sched_key: bpftrace 0.17's %d prints the low 32 bits.
PROGRAM = """
BEGIN { printf("READY\\n"); }
usdt:%(lib)s:profilemate:step_begin /pid == %(pid)d/ {
    printf("step_begin %%ld %%d %%d %%d %%d %%d %%d %%ld\\n", nsecs, tid, arg0, arg1, arg2, arg3, arg4,
           arg5); }
usdt:%(lib)s:profilemate:forward_end /pid == %(pid)d/ {
    printf("forward_end %%ld %%d %%d\\n", nsecs, tid, arg0); }
usdt:%(lib)s:profilemate:sample_end /pid == %(pid)d/ {
    printf("sample_end %%ld %%d %%d\\n", nsecs, tid, arg0); }
usdt:%(lib)s:profilemate:output_ready /pid == %(pid)d/ {
    printf("output_ready %%ld %%d %%d\\n", nsecs, tid, arg0); }
usdt:%(lib)s:profilemate:step_end /pid == %(pid)d/ {
    printf("step_end %%ld %%d %%d %%ld %%ld\\n", nsecs, tid, arg0, arg1, arg2); }
usdt:%(lib)s:profilemate:sched_step /pid == %(pid)d/ {
    printf("sched_step %%ld %%d %%ld %%d %%d %%d %%d %%d\\n", nsecs, tid,
           arg0, arg1, arg2, arg3, arg4, arg5); }
"""


class Lines:
    """Lines of a child's stdout, readable with a deadline."""

    def __init__(self, stream):
        self.queue = queue.Queue()
        self.history = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def next(self, timeout=30):
        line = self.queue.get(timeout=timeout)
        assert line is not None, "child exited early; it said: %r" % self.history
        self.history.append(line)
        return line

    def until(self, wanted, timeout=30):
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            line = self.next(max(0.1, deadline - time.monotonic()))
            if line == wanted:
                return seen
            seen.append(line)


def test_probe_arguments_arrive_in_bpftrace(library):
    bpftrace = shutil.which("bpftrace")
    assert bpftrace, "bpftrace is not installed (apt-get install bpftrace)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(MARKER_DIR), str(FAKE_VLLM), TESTS_DIR]))
    env.pop("PROFILEMATE_MARKER", None)
    driver = subprocess.Popen([sys.executable, os.path.join(TESTS_DIR, "usdt_driver.py")],
                              env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    tracer = None
    try:
        driver_out = Lines(driver.stdout)
        assert driver_out.next() == "loaded"
        tracer = subprocess.Popen(
            [bpftrace, "-B", "line", "-e", PROGRAM % {"lib": library, "pid": driver.pid}],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tracer_out = Lines(tracer.stdout)
        tracer_out.until("READY")

        driver.stdin.write("go\n")
        driver.stdin.flush()
        attached = json.loads(driver_out.next())
        extra = json.loads(driver_out.next())
        assert driver_out.next() == "done"
        time.sleep(0.5)  # let bpftrace drain its perf buffer
        _interrupt(tracer)
        events = _rest(tracer_out)
        tracer = None

        driver.stdin.write("check\n")
        driver.stdin.flush()
        detached = json.loads(driver_out.next())
        assert driver.wait(timeout=30) == 0
    finally:
        for child in (tracer, driver):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()

    assert set(attached.values()) == {1}, attached
    assert set(detached.values()) == {0}, detached

    # Both kinds of tracer at once: step_end fires beside the three probes
    # it replaces, with their times read from the clock bpftrace's nsecs
    # reads (CLOCK_MONOTONIC), each taken just before that probe fired.
    fired = {}
    for name, nsecs, _, step, *_ in events:
        fired.setdefault(step, {})[name] = nsecs
    for i, event in enumerate(events):
        if event[0] == "step_end":
            step, forward_ns, sample_ns = event[3:]
            at = fired[step]
            assert at["step_begin"] < forward_ns <= at["forward_end"], event
            assert forward_ns <= sample_ns <= at["sample_end"], event
            events[i] = event[:4]
    events = [e[:1] + e[2:] for e in events]  # nsecs dropped

    main_tid = driver.pid  # the driver's main thread runs the steps
    v1_output_tid, v2_output_tid = extra["output_threads"]
    key = extra["sched_key"]
    assert key >> 32 and key & 0xFFFFFFFF == 1, "first stamp of a fresh scheduler"
    assert events == [
        # step 3: V1 synchronous, first chunk of a prefill
        ["step_begin", main_tid, 3, 1, 256, 1, 256, 0],
        ["forward_end", main_tid, 3],
        ["sample_end", main_tid, 3],
        ["step_end", main_tid, 3],
        ["output_ready", main_tid, 3],
        # step 4: V1 async, speculative decode; output fetched in another thread
        ["step_begin", main_tid, 4, 2, 5, 0, 0, 0],
        ["forward_end", main_tid, 4],
        ["sample_end", main_tid, 4],
        ["step_end", v1_output_tid, 4],
        ["output_ready", v1_output_tid, 4],
        # step 5: V2, mixed
        ["step_begin", main_tid, 5, 2, 11, 1, 10, 0],
        ["forward_end", main_tid, 5],
        ["sample_end", main_tid, 5],
        ["step_end", v2_output_tid, 5],
        ["output_ready", v2_output_tid, 5],
        # step 6: through the scheduler patch; sched_step after the output
        ["step_begin", main_tid, 6, 2, 4, 0, 0, key],
        ["forward_end", main_tid, 6],
        ["sample_end", main_tid, 6],
        ["step_end", main_tid, 6],
        ["output_ready", main_tid, 6],
        # bpftrace 0.17 reads arg0..arg5 only; test_elf_notes checks the
        # registers of the other five.
        ["sched_step", main_tid, key, 456, 2, 3, 1, 4],
    ]


def _interrupt(tracer, timeout=30):
    """SIGINT bpftrace until it exits.

    Repeated because bpftrace 0.17 can miss a single SIGINT: one arriving
    just before it blocks in epoll_wait leaves it waiting there for good.
    """
    deadline = time.monotonic() + timeout
    while tracer.poll() is None:
        assert time.monotonic() < deadline, "bpftrace did not exit on SIGINT"
        tracer.send_signal(signal.SIGINT)
        try:
            tracer.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass


def _rest(lines):
    """Probe lines until bpftrace exits, parsed and in time order, each
    [name, nsecs, tid, args...].

    bpftrace prints events per-CPU buffer by buffer, so lines from threads
    on different CPUs can come out of order; each carries its nsecs.
    """
    events = []
    while True:
        line = lines.queue.get(timeout=30)
        if line is None:
            return sorted(events, key=lambda e: e[1])
        words = line.split()
        if words and words[0] in ("step_begin", "forward_end", "sample_end", "output_ready",
                                     "sched_step", "step_end"):
            events.append([words[0]] + [int(w) for w in words[1:]])

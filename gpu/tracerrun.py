"""profilemate-bpf as gpu/vllm_validate.py runs it: attached to one server
for one window, read from its log lines (when every probe is live, how it
samples kernel launches) and its output files (steps, tokens, CUDA
activity, and the steps whose output was ready within a window)."""
import csv
import json
import os
import re
import resource
import signal
import subprocess
import threading

#: The tracer's summary of its attach, printed once every probe is live
#: ("27 probes attached in 135 ms; marker found"); each library's own line
#: before it ("...: 3 probes attached (found in pid 716)") is not that.
ATTACHED = re.compile(r"\d+ probes attached in \d+ ms")
#: The line after it on sampling, e.g. "kernel launches counted 1s in every
#: 10s and GPU waits timed in the same seconds", or with launches not
#: sampled "...; GPU waits timed 1s in every 10s": the sampled probes share
#: their windows.
SAMPLING = re.compile(r"(?:kernel launches counted|GPU waits timed) (\S+) in every (\S+)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_seconds(text):
    """Seconds of a Go duration as time.Duration prints it ("1s", "500ms",
    "1m30s"); ValueError for anything else."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * _GO_UNITS[u] for n, u in parts)


def duty_offset(window, sampling):
    """Seconds after the attach at which a window of that length begins so
    that it holds the launch sampling's steady share: a trace probes
    launches for its first on seconds of every `every` (sampling), so a
    window from on * (1 - window / every) to its end holds on * window /
    every of them. 0 for a window of a whole cycle or more, or without
    sampling (launches off, or all)."""
    if not sampling:
        return 0.0
    on, every = sampling
    return on * (1 - window / every) if window < every else 0.0


class Tracer:
    """profilemate-bpf attached to a server for one window."""

    def __init__(self, binary, pid, out, flags, logpath):
        self.out = out
        self.logf = open(logpath, "w")
        # --format csv: the pictures would be drawn after the probes are
        # gone, costing the server nothing but the script the time before
        # its next window.
        self.proc = subprocess.Popen([binary, "--pid", str(pid), "--duration", "3600s", "--out", out,
                                      "--format", "csv", *flags],
                                     stdout=self.logf, stderr=subprocess.PIPE, text=True)
        self.attached, self.detached = threading.Event(), threading.Event()
        self.attach_line = ""  # the attach summary, once attached
        # The line after the attach summary: how launches are sampled.
        self.told, self.sampling = threading.Event(), None
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.logf.write(line)
            self.logf.flush()
            if self.attached.is_set() and not self.told.is_set():
                m = SAMPLING.search(line)
                if m:
                    self.sampling = (go_seconds(m[1]), go_seconds(m[2]))
                self.told.set()
            if ATTACHED.search(line):
                self.attach_line = line.strip()
                self.attached.set()
            if "interrupted; writing" in line:  # Run returned: every probe detached
                self.detached.set()
        self.attached.set()
        self.told.set()
        self.detached.set()

    def duty_offset(self, window):
        """duty_offset of a window of this tracer (see there)."""
        self.told.wait(0.5)
        return duty_offset(window, self.sampling)

    def wait_attached(self, timeout=60):
        if not self.attached.wait(timeout) or self.proc.poll() is not None:
            raise RuntimeError(f"tracer did not attach (exit {self.proc.poll()}, see {self.logf.name})")

    def stop(self, at_detach=None):
        """Ends the trace; returns the CPU seconds the tracer used. at_detach,
        if given, is called once the probes are detached, before the tracer
        has written its files."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.proc.send_signal(signal.SIGINT)
        if at_detach:
            self.detached.wait(120)
            at_detach()
        rc = self.proc.wait(120)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if rc != 0:
            raise RuntimeError(f"tracer exited {rc} (see {self.logf.name})")
        return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime

    def results(self, window=None):
        """Steps, step tokens, prefill tokens and CUDA activity it wrote;
        with window, a span (t0, t1) of time.monotonic(), also the steps,
        step tokens and prefill tokens of the steps whose output was ready
        in it (window_tracer_*), where the tracer gives its start on that
        clock (_trace.start_monotonic_ns): vLLM counts a step once its
        output is out."""
        rows = list(_csv(os.path.join(self.out, "forward_pass_timing.csv")))
        with open(os.path.join(self.out, "summary.json")) as f:
            summ = json.load(f)
        act = summ.get("_activity") or []
        trace = summ.get("_trace", {})
        out = dict(tracer_steps=len(rows), tracer_tokens=_total(rows, "num_tokens"),
                   tracer_prefill_tokens=_total(rows, "num_prefill_tokens"),
                   tracer_launches=sum(a.get("launches", 0) for a in act),
                   tracer_graphs=sum(a.get("graph_launches", 0) for a in act),
                   tracer_syncs=sum(a.get("syncs", 0) for a in act),
                   dropped=trace.get("dropped_records", 0),
                   **{"tracer_sched_" + k: v for k, v in (summ.get("_scheduler") or {}).items()})
        start = trace.get("start_monotonic_ns")
        if window and start:
            t0, t1 = window
            ready = lambda r: start / 1e9 + float(r["timestamp_sec"]) + float(r["duration_ms"]) / 1e3
            inside = [r for r in rows if t0 <= ready(r) < t1]
            out.update(window_tracer_steps=len(inside), window_tracer_tokens=_total(inside, "num_tokens"),
                       window_tracer_prefill_tokens=_total(inside, "num_prefill_tokens"),
                       # A row joined to its scheduler step has its columns.
                       window_tracer_sched_sched_steps=sum(any(r.get(c) for c in SCHED_COLUMNS) for r in inside),
                       window_tracer_sched_preemptions=_total(inside, "preempted_reqs"),
                       window_tracer_sched_spec_proposed=_total(inside, "spec_proposed"),
                       window_tracer_sched_spec_accepted=_total(inside, "spec_accepted"))
        return out


#: The CSV's scheduler columns, empty in a row no scheduler step joined.
SCHED_COLUMNS = ("kv_cache_usage", "running_reqs", "waiting_reqs", "preempted_reqs",
                 "token_budget_use", "seq_budget_use", "spec_proposed", "spec_accepted")


def _total(rows, col):
    """Sum of a CSV column over rows, an empty cell counting 0."""
    return sum(int(r.get(col) or 0) for r in rows)


def _csv(path):
    with open(path, newline="") as f:
        yield from csv.DictReader(f)

"""Per-step kernel counts from a PyTorch profiler (Kineto) Chrome trace.

The workload wraps each step in record_function("pm_step_<id>"). A GPU
kernel belongs to the step whose CPU-side annotation contains the API call
that launched it (matched through the "correlation" id that Kineto puts on
both); a kernel whose launch call is not in the trace falls back to the
GPU-side annotation ("gpu_user_annotation") that contains it. Stdlib only.
"""
import bisect
import json
import re

STEP_RE = re.compile(r"^pm_step_(\d+)$")
LAUNCH_CALLS = {"cudaLaunchKernel", "cudaLaunchKernelExC", "cudaLaunchCooperativeKernel",
                "cuLaunchKernel", "cuLaunchKernelEx", "cuLaunchCooperativeKernel",
                "cudaLaunchKernel_ptsz", "cudaLaunchKernelExC_ptsz", "cuLaunchKernel_ptsz",
                "cuLaunchKernelEx_ptsz"}
GRAPH_CALLS = {"cudaGraphLaunch", "cuGraphLaunch", "cudaGraphLaunch_ptsz", "cuGraphLaunch_ptsz"}
API_CATS = {"cuda_runtime", "cuda_driver"}


class _Spans:
    """Sorted, non-overlapping [start, end) spans -> step id."""

    def __init__(self, spans):
        spans.sort()
        self.starts = [s for s, _, _ in spans]
        self.spans = spans

    def find(self, t):
        i = bisect.bisect_right(self.starts, t) - 1
        if i >= 0:
            s, e, step = self.spans[i]
            if s <= t <= e:
                return step
        return None


def count_steps(trace):
    """{step: {"kernels", "launch_calls", "graph_launches"}} and unattributed.

    `trace` is the parsed JSON of prof.export_chrome_trace (a dict with
    traceEvents, or the list itself).
    """
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    cpu_spans, gpu_spans, api, kernels = {}, [], {}, []
    for ev in events:
        if ev.get("ph") != "X":
            continue
        cat = ev.get("cat", "")
        name = ev.get("name", "")
        if cat in ("user_annotation", "gpu_user_annotation"):
            m = STEP_RE.match(name)
            if m:
                span = (float(ev["ts"]), float(ev["ts"]) + float(ev.get("dur", 0)), int(m.group(1)))
                if cat == "user_annotation":
                    cpu_spans.setdefault((ev.get("pid"), ev.get("tid")), []).append(span)
                else:
                    gpu_spans.append(span)
        elif cat in API_CATS:
            api.setdefault(ev.get("args", {}).get("correlation"), []).append(ev)
        elif cat == "kernel":
            kernels.append(ev)
    cpu_index = {k: _Spans(v) for k, v in cpu_spans.items()}
    gpu_index = _Spans(gpu_spans)
    steps = {}

    def row(step):
        return steps.setdefault(step, {"kernels": 0, "launch_calls": 0, "graph_launches": 0})

    def step_of_call(ev):
        index = cpu_index.get((ev.get("pid"), ev.get("tid")))
        return index.find(float(ev["ts"])) if index else None

    for spans in cpu_spans.values():
        for _, _, step in spans:
            row(step)
    for calls in api.values():
        for ev in calls:
            step = step_of_call(ev)
            if step is None:
                continue
            if ev["name"] in LAUNCH_CALLS:
                row(step)["launch_calls"] += 1
            elif ev["name"] in GRAPH_CALLS:
                row(step)["graph_launches"] += 1
    unattributed = 0
    for k in kernels:
        step = None
        for ev in api.get(k.get("args", {}).get("correlation"), ()):
            step = step_of_call(ev)
            if step is not None:
                break
        if step is None:
            step = gpu_index.find(float(k["ts"]))
        if step is None:
            unattributed += 1
        else:
            row(step)["kernels"] += 1
    return steps, unattributed


def load(path):
    with open(path) as f:
        return json.load(f)

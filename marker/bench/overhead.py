"""Cost of the marker per step with no tracer attached.

Runs the same minimal V2-shaped runner (execute_model with V2's signature,
sample_tokens returning an async output, get_output) and the same minimal
0.26-shaped scheduler (schedule(throttle_prefills) as EngineCore calls it,
update_from_output) unpatched and patched, in one process with the real
probe library (semaphores at zero), and prints the per-step time of each,
their ratio and the added nanoseconds per step: runner, scheduler, and
both (a step with the model in EngineCore pays both).  The methods do
nearly nothing, so the ratios are a worst case; the added ns per step is
what counts (budget: under 1000 ns for both together).

It then raises the semaphores, as an attached tracer does, and prints what
the marker's own work costs per traced step of a 64-request decode batch
(arguments computed, probe functions called; no consumer is attached, so
the probe sites stay NOPs: the probe hits' kernel cost comes on top and is
the tracer benchmark's, BenchmarkProbedStepCost). No budget: this is the
Python side of the traced cost that gpu/vllm_validate.py measures whole.

    make -C marker bench      or      python3 marker/bench/overhead.py
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from profilemate_marker import native, patch, sched  # noqa: E402

STEPS = 100_000
REPEATS = 9


class SchedulerOutput:
    total_num_scheduled_tokens = 8
    num_scheduled_tokens = {"a": 1, "b": 7}


class CachedRequests:
    def __init__(self, req_ids):
        self.req_ids = req_ids
        self.resumed_req_ids = set()


class DecodeBatch:
    """A SchedulerOutput of 64 decoding requests, the fields the traced
    marker reads."""

    def __init__(self, n=64):
        ids = ["r%d" % i for i in range(n)]
        self.scheduled_new_reqs = []
        self.scheduled_cached_reqs = CachedRequests(ids)
        self.num_scheduled_tokens = dict.fromkeys(ids, 1)
        self.total_num_scheduled_tokens = n
        self.scheduled_spec_decode_tokens = {}
        self.preempted_req_ids = set()


class KVCacheManager:
    usage = 0.5


def make_classes():
    """A fresh (runner, async output) class pair with V2's method shapes."""

    class AsyncOutput:
        def __init__(self, output):
            self.output = output

        def get_output(self):
            return self.output

    class GPUModelRunner:
        def execute_model(self, scheduler_output, intermediate_tensors=None, dummy_run=False,
                          skip_attn_for_dummy_run=False, is_profile=False, context_len=0):
            return None

        def sample_tokens(self, grammar_output):
            return AsyncOutput(grammar_output)

    return GPUModelRunner, AsyncOutput


def make_scheduler():
    """A fresh scheduler class with vLLM 0.26's method shapes."""

    class Scheduler:
        # What the traced patch reads (SCHEDULER_FIELDS of sched.py).
        kv_cache_manager = KVCacheManager()
        running = ["r%d" % i for i in range(64)]
        waiting = []
        max_num_scheduled_tokens = 8192
        max_num_running_reqs = 64
        num_spec_tokens = 0
        requests = {}

        def __init__(self, output=None):
            self.output = output or SCHEDULER_OUTPUT

        def schedule(self, throttle_prefills=False):
            return self.output

        def update_from_output(self, scheduler_output, model_runner_output):
            return {}

    return Scheduler


SCHEDULER_OUTPUT = SchedulerOutput()


def ns_per_sched_step(*schedulers):
    """ns_per_step for schedulers: schedule(False), update_from_output."""
    best = [float("inf")] * len(schedulers)
    for _ in range(REPEATS):
        for i, scheduler in enumerate(schedulers):
            start = time.perf_counter_ns()
            for _ in range(STEPS):
                scheduler.update_from_output(scheduler.schedule(False), None)
            best[i] = min(best[i], (time.perf_counter_ns() - start) / STEPS)
    return best


def ns_per_step(*runners, so=None):
    """Per runner, the best of REPEATS runs of STEPS steps, in ns per step.

    The runners take turns, so that a noisy neighbour on the machine slows
    both alike instead of whichever happened to run at the time.
    """
    so = so or SchedulerOutput()
    best = [float("inf")] * len(runners)
    for _ in range(REPEATS):
        for i, runner in enumerate(runners):
            start = time.perf_counter_ns()
            for _ in range(STEPS):
                runner.execute_model(so)
                runner.sample_tokens(None).get_output()
            best[i] = min(best[i], (time.perf_counter_ns() - start) / STEPS)
    return best


def main():
    path = native.find_library()
    if path is None:
        sys.exit("probe library not built: run `make -C marker` first")
    patch.activate(native.Probes(path))

    plain_runner, _ = make_classes()
    patched_runner, patched_output = make_classes()
    patch.patch_runner(patched_runner)
    patch.patch_async_output(patched_output)

    plain_scheduler, patched_scheduler = make_scheduler(), make_scheduler()
    sched.patch_scheduler(patched_scheduler)

    plain, patched = ns_per_step(plain_runner(), patched_runner())
    sched_plain, sched_patched = ns_per_sched_step(plain_scheduler(), patched_scheduler())
    if patch.off or sched.off:
        sys.exit("the patch switched itself off during the run: see the log above")
    added = patched - plain
    sched_added = sched_patched - sched_plain
    for name, before, after in (("runner", plain, patched),
                                ("scheduler", sched_plain, sched_patched)):
        print("%-10s unpatched %.0f ns/step, patched %.0f ns/step (no tracer attached),"
              " ratio %.2fx, added %.0f ns/step" % (name + ":", before, after, after / before,
                                                     after - before))
    total = added + sched_added
    print("added:     %.0f ns/step, runner and scheduler (budget 1000 ns): %s"
          % (total, "OK" if total < 1000 else "OVER"))

    # Traced: the semaphores raised as the tracer raises them (it probes
    # step_end in place of forward_end, sample_end and output_ready).
    batch = DecodeBatch()
    for name in ("step_begin", "step_end", "sched_step"):
        getattr(patch.probes, name + "_semaphore").value = 1
    try:
        plain, patched = ns_per_step(plain_runner(), patched_runner(), so=batch)
        sched_plain, sched_patched = ns_per_sched_step(plain_scheduler(batch), patched_scheduler(batch))
    finally:
        for name in native.PROBE_NAMES:
            getattr(patch.probes, name + "_semaphore").value = 0
    if patch.off or sched.off:
        sys.exit("the patch switched itself off during the traced run: see the log above")
    print("traced:    runner +%.0f ns/step, scheduler +%.0f ns/step (64 requests; the marker's Python"
          " work, probe hits not included)" % (patched - plain, sched_patched - sched_plain))
    return 0 if total < 1000 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Cost of the marker per step with no tracer attached.

Runs the same minimal V2-shaped runner (execute_model with V2's signature,
sample_tokens returning an async output, get_output) unpatched and patched,
in one process with the real probe library (semaphores at zero), and prints
the per-step time of each, their ratio and the added nanoseconds per step.
The runner's methods do nearly nothing, so the ratio is a worst case; the
added ns per step is what counts (budget: under 1000 ns).

    make -C marker bench      or      python3 marker/bench/overhead.py
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from profilemate_marker import native, patch  # noqa: E402

STEPS = 100_000
REPEATS = 9


class SchedulerOutput:
    total_num_scheduled_tokens = 8
    num_scheduled_tokens = {"a": 1, "b": 7}


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


def ns_per_step(*runners):
    """Per runner, the best of REPEATS runs of STEPS steps, in ns per step.

    The runners take turns, so that a noisy neighbour on the machine slows
    both alike instead of whichever happened to run at the time.
    """
    so = SchedulerOutput()
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

    plain, patched = ns_per_step(plain_runner(), patched_runner())
    if patch.off:
        sys.exit("the patch switched itself off during the run: see the log above")
    added = patched - plain
    print("unpatched: %.0f ns/step" % plain)
    print("patched:   %.0f ns/step (no tracer attached)" % patched)
    print("ratio:     %.2fx" % (patched / plain))
    print("added:     %.0f ns/step (budget 1000 ns): %s" % (added, "OK" if added < 1000 else "OVER"))
    return 0 if added < 1000 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Child process for test_usdt_bpftrace.py: a stand-in vLLM worker with the
real patch (sitecustomize) and the real probe library.

Talks over stdin/stdout: prints "loaded", waits for "go", prints the
semaphores, runs the steps listed in STEPS, prints "done"; waits for
"check", prints the semaphores once they drop (or after 10 s) and exits.
"""
import json
import sys
import threading
import time

from helpers import sched
from profilemate_marker import native, patch
import vllm.v1.core.sched.scheduler as scheduler_module
import vllm.v1.worker.gpu.model_runner as v2
import vllm.v1.worker.gpu_model_runner as v1
from vllm.v1.outputs import ModelRunnerOutput


def semaphores():
    return {n: getattr(patch.probes, n + "_semaphore").value for n in native.PROBE_NAMES}


def fetch_in_output_thread(async_output):
    thread = threading.Thread(target=async_output.get_output)
    thread.start()
    thread.join()
    return thread.native_id


def scheduler_step(runner):
    """One step through the scheduler patch: 2 of 16 running, 3 waiting,
    KV 45.6% used, 1 preempted, 5 of 512 tokens (2 drafts, 1 accepted).
    Returns the step's sched_key."""
    scheduler = scheduler_module.Scheduler(num_spec_tokens=2)
    scheduler.running = ["a", "b"]
    scheduler.waiting.extend(["p", "q", "r"])
    scheduler.kv_cache_manager.usage = 0.4564
    scheduler.requests = {r: scheduler_module.Request(r) for r in ("a", "b")}
    planned = sched(cached=[("a", 3), ("b", 1)], spec={"a": 2})
    planned.preempted_req_ids = {"p"}
    scheduler.outputs.append(planned)
    scheduler_output = scheduler.schedule()
    runner.execute_model(scheduler_output)
    runner.sample_tokens(None)
    scheduler.update_from_output(
        scheduler_output, ModelRunnerOutput(["a", "b"], [[5, 6], [7]]))
    return scheduler_output._profilemate_sched[0]


def main():
    sync_runner, async_runner, v2_runner = (
        v1.GPUModelRunner(), v1.GPUModelRunner(async_scheduling=True), v2.GPUModelRunner())
    # Two real steps before the tracer attaches: step ids keep counting.
    for _ in range(2):
        sync_runner.execute_model(sched(cached=[("a", 1)]))
        sync_runner.sample_tokens(None)
    print("loaded", flush=True)
    assert sys.stdin.readline().strip() == "go"
    print(json.dumps(semaphores()), flush=True)

    sync_runner.execute_model(sched(new=[("p", 300, 0, 256)]))       # step 3
    sync_runner.sample_tokens(None)
    sync_runner.capture_model()                                      # not a step
    sync_runner.execute_model(sched())                               # not a step
    async_runner.execute_model(sched(cached=[("a", 4), ("b", 1)], spec={"a": 3}))  # 4
    output_thread = fetch_in_output_thread(async_runner.sample_tokens(None))
    v2_runner.execute_model(sched(), dummy_run=True)                 # not a step
    v2_runner.execute_model(sched(new=[("n", 10, 0, 10)], cached=[("a", 1)]))  # 5
    v2_thread = fetch_in_output_thread(v2_runner.sample_tokens(None))
    sched_key = scheduler_step(sync_runner)                          # step 6
    print(json.dumps({"output_threads": [output_thread, v2_thread], "sched_key": sched_key}),
          flush=True)
    print("done", flush=True)

    assert sys.stdin.readline().strip() == "check"
    # The kernel lowers the semaphores as it tears the uprobes down, which
    # may finish a moment after bpftrace itself has exited.
    deadline = time.monotonic() + 10
    while any(semaphores().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(json.dumps(semaphores()), flush=True)


main()

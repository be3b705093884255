"""Stand-in for vllm/v1/worker/gpu_model_runner.py (the V1 runner).

Behaviour flags let tests pick a path: async_scheduling (sample_tokens
returns an AsyncGPUModelRunnerOutput), pooling (execute_model returns the
output itself), raise_in (execute_model/sample_tokens raise that exception).
"""
import threading

from vllm.v1.core.sched.output import CachedRequestData, SchedulerOutput
from vllm.v1.outputs import EMPTY_MODEL_RUNNER_OUTPUT, ModelRunnerOutput


class AsyncGPUModelRunnerOutput:
    def __init__(self, model_runner_output):
        self._model_runner_output = model_runner_output
        self.async_copy_ready_event = threading.Event()
        self.async_copy_ready_event.set()

    def get_output(self):
        self.async_copy_ready_event.wait()
        return self._model_runner_output


class GPUModelRunner:
    def __init__(self, async_scheduling=False, pooling=False, raise_in=None):
        self.async_scheduling = async_scheduling
        self.pooling = pooling
        self.raise_in = raise_in
        self.forward_passes = 0

    def execute_model(self, scheduler_output, intermediate_tensors=None):
        if self.raise_in is not None:
            raise self.raise_in
        if scheduler_output.total_num_scheduled_tokens == 0:
            return EMPTY_MODEL_RUNNER_OUTPUT
        self.forward_passes += 1
        if self.pooling:
            return ModelRunnerOutput(scheduler_output.num_scheduled_tokens)
        return None

    def sample_tokens(self, grammar_output):
        output = ModelRunnerOutput()
        if self.async_scheduling:
            return AsyncGPUModelRunnerOutput(output)
        return output

    # In vLLM these run the model directly; the stand-ins go through
    # execute_model so the tests can check it fires nothing from inside them.
    def _dummy_run(self, num_tokens):
        return self.execute_model(_dummy_output(num_tokens))

    def profile_run(self):
        self._dummy_run(16)
        return self.execute_model(_dummy_output(8))

    def capture_model(self):
        for num_tokens in (1, 2, 4):
            self._dummy_run(num_tokens)


def _dummy_output(num_tokens):
    return SchedulerOutput(
        scheduled_new_reqs=[],
        scheduled_cached_reqs=CachedRequestData(),
        num_scheduled_tokens={"dummy": num_tokens},
        total_num_scheduled_tokens=num_tokens,
    )

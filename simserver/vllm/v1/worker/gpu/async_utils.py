"""The V2 runner's async output (vllm/v1/worker/gpu/async_utils.py)."""
from vllm.v1.outputs import AsyncModelRunnerOutput, ModelRunnerOutput


class AsyncOutput(AsyncModelRunnerOutput):
    """A step's output; get_output waits until the copy to the host is done."""

    def __init__(self, model_runner_output: ModelRunnerOutput, copy_event, sim_stamp):
        self.model_runner_output = model_runner_output
        self.copy_event = copy_event
        #: Ground-truth stamp of the step (simulation only).
        self.sim_stamp = sim_stamp

    def get_output(self) -> ModelRunnerOutput:
        self.copy_event.synchronize()
        self.sim_stamp.output_ready()
        return self.model_runner_output

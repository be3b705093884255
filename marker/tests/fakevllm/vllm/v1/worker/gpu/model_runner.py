"""Stand-in for vllm/v1/worker/gpu/model_runner.py (the V2 runner): warm-up,
profiling and capture go through execute_model with dummy_run/is_profile."""
from vllm.v1.outputs import EMPTY_MODEL_RUNNER_OUTPUT, ModelRunnerOutput
from vllm.v1.worker.gpu.async_utils import AsyncOutput


class GPUModelRunner:
    def __init__(self, raise_in=None):
        self.raise_in = raise_in
        self.forward_passes = 0

    def execute_model(
        self,
        scheduler_output,
        intermediate_tensors=None,
        dummy_run=False,
        skip_attn_for_dummy_run=False,
        is_profile=False,
        context_len=0,
    ):
        if self.raise_in is not None:
            raise self.raise_in
        if not dummy_run and scheduler_output.total_num_scheduled_tokens == 0:
            return EMPTY_MODEL_RUNNER_OUTPUT
        self.forward_passes += 1
        return None

    def sample_tokens(self, grammar_output):
        return AsyncOutput(ModelRunnerOutput())

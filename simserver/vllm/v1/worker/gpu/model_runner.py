"""The V2 model runner (vllm/v1/worker/gpu/model_runner.py), simulated.

Warm-up and graph capture go through execute_model with dummy_run=True
(is_profile=True for the profiling run); sample_tokens returns an
AsyncOutput under async scheduling.
"""
import time
from typing import Optional, Union

from simvllm import cuda
from simvllm.model import CAPTURE_SIZES, MAX_NUM_TOKENS
from simvllm.runner import SimRunnerBase
from simvllm.scheduler import dummy_scheduler_output
from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.outputs import EMPTY_MODEL_RUNNER_OUTPUT, ModelRunnerOutput
from vllm.v1.worker.gpu.async_utils import AsyncOutput


class GPUModelRunner(SimRunnerBase):
    """vLLM's V2 GPUModelRunner, on the simulated model."""

    def execute_model(self, scheduler_output: SchedulerOutput, intermediate_tensors=None,
                      dummy_run: bool = False, skip_attn_for_dummy_run: bool = False,
                      is_profile: bool = False,
                      context_len: int = 0) -> Optional[ModelRunnerOutput]:
        begin_ns = time.monotonic_ns()
        if dummy_run or is_profile:
            self._warm_up_forward(scheduler_output.total_num_scheduled_tokens)
            return None
        if scheduler_output.total_num_scheduled_tokens == 0:
            return EMPTY_MODEL_RUNNER_OUTPUT
        self._begin_step(begin_ns, scheduler_output)
        self._forward(scheduler_output)
        return None

    def sample_tokens(self, grammar_output) -> Union[ModelRunnerOutput, AsyncOutput]:
        if not self.vllm_config.async_scheduling:
            return self._sample_sync()
        event = cuda.Event()
        output, stamp = self._sample(event, copy_counts=True)
        return AsyncOutput(output, event, stamp)

    def profile_run(self) -> None:
        self.execute_model(dummy_scheduler_output(MAX_NUM_TOKENS), dummy_run=True,
                           is_profile=True)
        cuda.check(cuda.libs().cudart.cudaDeviceSynchronize(), "cudaDeviceSynchronize")

    def capture_model(self) -> int:
        for num_tokens in CAPTURE_SIZES:
            self.execute_model(dummy_scheduler_output(num_tokens), dummy_run=True)
        cuda.check(cuda.libs().cudart.cudaDeviceSynchronize(), "cudaDeviceSynchronize")
        return 0

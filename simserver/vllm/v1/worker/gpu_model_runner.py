"""The V1 model runner (vllm/v1/worker/gpu_model_runner.py), simulated.

execute_model launches the forward pass and returns None; sample_tokens
samples and returns a ModelRunnerOutput, or with async scheduling an
AsyncGPUModelRunnerOutput whose get_output waits on an event.  Warm-up
(profile_run, capture_model) goes through _dummy_run, never execute_model.
"""
import time
from typing import Optional, Union

from simvllm import cuda
from simvllm.model import CAPTURE_SIZES, MAX_NUM_TOKENS
from simvllm.runner import SimRunnerBase
from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.outputs import (EMPTY_MODEL_RUNNER_OUTPUT, AsyncModelRunnerOutput,
                             ModelRunnerOutput)


class AsyncGPUModelRunnerOutput(AsyncModelRunnerOutput):
    """A step's output whose sampled ids are still being copied to the host."""

    def __init__(self, model_runner_output: ModelRunnerOutput, async_copy_ready_event,
                 sim_stamp):
        self._model_runner_output = model_runner_output
        self.async_copy_ready_event = async_copy_ready_event
        #: Ground-truth stamp of the step (simulation only).
        self.sim_stamp = sim_stamp

    def get_output(self) -> ModelRunnerOutput:
        self.async_copy_ready_event.synchronize()
        self.sim_stamp.output_ready()
        return self._model_runner_output


class GPUModelRunner(SimRunnerBase):
    """vLLM's V1 GPUModelRunner, on the simulated model."""

    def execute_model(self, scheduler_output: SchedulerOutput,
                      intermediate_tensors=None) -> Optional[ModelRunnerOutput]:
        begin_ns = time.monotonic_ns()
        if scheduler_output.total_num_scheduled_tokens == 0:
            return EMPTY_MODEL_RUNNER_OUTPUT
        self._begin_step(begin_ns, scheduler_output)
        self._forward(scheduler_output)
        return None

    def sample_tokens(self, grammar_output) -> Union[ModelRunnerOutput,
                                                     AsyncGPUModelRunnerOutput]:
        if not self.vllm_config.async_scheduling:
            return self._sample_sync()
        event = cuda.Event()
        output, stamp = self._sample(event)
        return AsyncGPUModelRunnerOutput(output, event, stamp)

    def _dummy_run(self, num_tokens: int, cudagraph_runtime_mode=None,
                   force_attention: bool = False, uniform_decode: bool = False,
                   allow_microbatching: bool = True, skip_eplb: bool = False,
                   is_profile: bool = False, create_mixed_batch: bool = False,
                   remove_lora: bool = True):
        self._warm_up_forward(num_tokens)

    def profile_run(self) -> None:
        self._dummy_run(MAX_NUM_TOKENS, is_profile=True)
        self.model.compute_logits(MAX_NUM_TOKENS)
        self.model.sample(MAX_NUM_TOKENS)
        cuda.check(cuda.libs().cudart.cudaDeviceSynchronize(), "cudaDeviceSynchronize")

    def capture_model(self) -> int:
        """Captures one graph per capture size; returns the graphs' memory
        (nothing, in the simulation)."""
        for num_tokens in CAPTURE_SIZES:
            self._dummy_run(num_tokens)
        cuda.check(cuda.libs().cudart.cudaDeviceSynchronize(), "cudaDeviceSynchronize")
        return 0

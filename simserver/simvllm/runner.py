"""What the V1 and V2 model runners share: the simulated model, host
buffers for sampled tokens, and the ground-truth stamps of real steps.

The runner classes themselves live at vLLM's module paths
(vllm/v1/worker/gpu_model_runner.py, vllm/v1/worker/gpu/model_runner.py) and
keep vLLM's method names and signatures, since those are what the marker
patches.
"""
import ctypes
from dataclasses import dataclass

from vllm.v1.outputs import ModelRunnerOutput

from . import cuda
from .model import EAGER, MAX_NUM_TOKENS, SimModel, dispatch_mode
from .scheduler import TARGET_TOKEN, accepted
from .truth import StepStamp

#: Bytes copied to the host per step, at most: 8 per sampled token id and
#: 4 per request for V2's count of sampled tokens (at most one per token).
HOST_BUF_BYTES = 12 * MAX_NUM_TOKENS
#: Pinned buffers per runner: outputs of a few steps may be in flight at once.
NUM_PINNED = 4


@dataclass
class SimConfig:
    """The parts of VllmConfig the simulated runners read."""

    enforce_eager: bool
    async_scheduling: bool


class SimRunnerBase:
    """State and steps common to both runners."""

    def __init__(self, vllm_config: SimConfig, device: str):
        self.vllm_config = vllm_config
        self.device = device
        self.model = SimModel()
        #: Real steps so far; the 1-based number of the latest one.
        self.num_steps = 0
        #: The stamp of the step being executed, until its sampling is done.
        self.current_stamp = None
        #: The stamp of the last step sampled synchronously (no async output).
        self.last_stamp = None
        self._scheduler_output = None
        self._pinned = [cuda.pinned_buffer(HOST_BUF_BYTES) for _ in range(NUM_PINNED)]
        self._pageable = ctypes.create_string_buffer(HOST_BUF_BYTES)

    def _begin_step(self, begin_ns: int, scheduler_output) -> None:
        self.num_steps += 1
        self.current_stamp = StepStamp(self.num_steps, begin_ns)
        self._scheduler_output = scheduler_output

    def _forward(self, scheduler_output) -> None:
        mode = dispatch_mode(scheduler_output, self.vllm_config.enforce_eager)
        self.model.forward(scheduler_output.total_num_scheduled_tokens, mode)

    def _warm_up_forward(self, num_tokens: int) -> None:
        """A dummy forward: launches, but no step (and no truth row)."""
        self.model.forward(num_tokens, EAGER)

    def _sample(self, event, copy_counts=False):
        """Logits, sampling and the copy of the sampled ids to the host.

        Returns the step's ModelRunnerOutput and its stamp; with `event`,
        the copy is only queued and `event` marks its completion. With
        copy_counts too, each request's number of sampled tokens is copied
        after the ids, as V2's AsyncOutput does (two device-to-host copies
        and the event's synchronization: vLLM's three per step).
        """
        so, stamp = self._scheduler_output, self.current_stamp
        self._scheduler_output = self.current_stamp = None
        req_ids = list(so.num_scheduled_tokens)
        spec = so.scheduled_spec_decode_tokens
        self.model.compute_logits(len(req_ids))
        self.model.sample(len(req_ids))
        nbytes = 8 * sum(1 + len(spec.get(r, ())) for r in req_ids)
        if event is not None:
            dst = self._pinned[stamp.step % NUM_PINNED]
        else:
            dst = ctypes.addressof(self._pageable)
        self.model.copy_to_host(dst, nbytes, event)
        if copy_counts and event is not None:
            self.model.copy_to_host(dst + nbytes, 4 * len(req_ids), event)
        stamp.launched()
        output = ModelRunnerOutput(
            req_ids=req_ids,
            req_id_to_index={r: i for i, r in enumerate(req_ids)},
            sampled_token_ids=[sampled_tokens(spec.get(r, ())) for r in req_ids])
        return output, stamp

    def _sample_sync(self):
        """The synchronous path: the output is on the host on return."""
        output, stamp = self._sample(None)
        stamp.output_ready()
        self.last_stamp = stamp
        return output


def sampled_tokens(drafts) -> list[int]:
    """What the rejection sampler returns for a request: the drafts the
    target model agrees with (the leading ones equal to TARGET_TOKEN), then
    the target's own token (the bonus, or the correction of the first
    rejected draft); just that token without drafts."""
    return list(drafts[:accepted(drafts)]) + [TARGET_TOKEN]

"""vLLM's scheduler class (vllm/v1/core/sched/scheduler.py, 0.26), over
simvllm's scheduler.

EngineCore calls schedule() and, once the step's output is back,
update_from_output(scheduler_output, model_runner_output), as vLLM's
EngineCore does; the marker wraps both.  The attributes are those vLLM's
Scheduler has and the marker reads (kv_cache_manager.usage, running,
waiting, requests, max_num_running_reqs, max_num_scheduled_tokens,
num_spec_tokens), backed by the simulation's own state.
"""
import time

from simvllm.model import MAX_NUM_TOKENS
from simvllm.scheduler import MAX_NUM_SEQS
from vllm.v1.core.sched.output import SchedulerOutput


class KVCacheManager:
    """The part of vLLM's KVCacheManager the marker reads."""

    def __init__(self, pool):
        self._pool = pool

    @property
    def usage(self) -> float:
        """Fraction of the KV-cache blocks in use, 0.0 to 1.0."""
        return self._pool.usage()


class Scheduler:
    """vLLM's Scheduler, driven by `sim` (a simvllm.scheduler.Scheduler)."""

    def __init__(self, sim):
        self.sim = sim
        self.kv_cache_manager = KVCacheManager(sim.kv)
        self.max_num_running_reqs = MAX_NUM_SEQS
        self.max_num_scheduled_tokens = MAX_NUM_TOKENS
        self.num_spec_tokens = sim.config.num_spec_tokens
        self.requests = sim.requests
        #: The ground truth of the step last scheduled (simulation only).
        self.last_plan = None
        self._plans = {}

    @property
    def running(self) -> list:
        return self.sim.running

    @property
    def waiting(self):
        return self.sim.waiting

    def schedule(self, throttle_prefills: bool = False) -> SchedulerOutput:
        """The next step; an empty one (no tokens) when nothing can run."""
        item = self.sim.schedule(time.monotonic())
        if item is None:
            self.last_plan = None
            return SchedulerOutput.make_empty()
        scheduler_output, self.last_plan = item
        self._plans[id(scheduler_output)] = self.last_plan
        return scheduler_output

    def update_from_output(self, scheduler_output: SchedulerOutput,
                           model_runner_output) -> dict:
        """Process the step's output: its finished requests are freed."""
        plan = self._plans.pop(id(scheduler_output), None)
        if plan is not None:
            self.sim.processed(plan)
        return {}

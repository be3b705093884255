"""Stand-in for vllm/v1/core/sched/scheduler.py (0.26): the Scheduler
attributes and methods the marker reads, with vLLM's names.

Tests set the state (running, waiting, usage, requests) and queue the
SchedulerOutputs schedule() returns.  update_from_output frees the requests
that finish in the step, as vLLM does, so a test can see whether the marker
counted the step before that.
"""
import collections
from dataclasses import dataclass


class KVCacheManager:
    def __init__(self, usage=0.0):
        self.usage = usage


@dataclass
class Request:
    request_id: str
    finished: bool = False
    async_tokens_to_discard: int = 0

    def is_finished(self):
        return self.finished


class Scheduler:
    def __init__(self, num_spec_tokens=0, max_num_seqs=16, max_num_scheduled_tokens=512,
                 raise_in=None):
        self.max_num_running_reqs = max_num_seqs
        self.max_num_scheduled_tokens = max_num_scheduled_tokens
        self.num_spec_tokens = num_spec_tokens
        self.kv_cache_manager = KVCacheManager()
        self.requests = {}
        self.running = []
        self.waiting = collections.deque()
        self.skipped_waiting = collections.deque()
        self.raise_in = raise_in
        #: SchedulerOutputs for the next schedule() calls, in order.
        self.outputs = collections.deque()
        #: Request ids update_from_output finishes and frees.
        self.finishing = set()
        #: throttle_prefills of each schedule() call.
        self.throttled = []

    def schedule(self, throttle_prefills=False):
        if self.raise_in is not None:
            raise self.raise_in
        self.throttled.append(throttle_prefills)
        return self.outputs.popleft()

    def update_from_output(self, scheduler_output, model_runner_output):
        if self.raise_in is not None:
            raise self.raise_in
        for req_id in self.finishing:
            self.requests.pop(req_id).finished = True
        return {0: ("outputs of", model_runner_output)}

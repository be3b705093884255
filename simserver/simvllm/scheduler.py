"""A small stand-in for vLLM's scheduler: it produces a SchedulerOutput per
step from a population of requests, and its own record of each step's shape
(the ground truth's StepPlan).

What it exercises: pure prefill steps (a wave of new requests), continuing
chunks of long prompts (chunked prefill), mixed steps (prefill chunks next to
decodes), decode steps, phases of speculative decoding (every decode request
scheduled 1 + SPEC_TOKENS tokens), and preempted requests that come back
resumed and recompute their tokens.  Steps are deterministic for a seed.

Requests arrive in waves (back-to-back: a new wave once the running batch is
empty or half empty), or one request every 1/rate seconds with `rate`.
"""
import collections
import random
from dataclasses import dataclass
from typing import Optional

from vllm.v1.core.sched.output import CachedRequestData, NewRequestData, SchedulerOutput

from .model import MAX_NUM_TOKENS
from .truth import StepPlan

MAX_NUM_SEQS = 16
#: Speculative tokens per decode request during a speculative phase.
SPEC_TOKENS = 2
#: Steps of a period; the last SPEC_STEPS of every period decode speculatively.
SPEC_PERIOD, SPEC_STEPS = 60, 20
#: One step in PREEMPT_EVERY preempts a decoding request.
PREEMPT_EVERY = 45
#: Smallest prefill chunk, and smallest remainder a chunk may leave: a chunk
#: must stay distinguishable from a (speculative) decode of 1 + SPEC_TOKENS.
MIN_CHUNK = SPEC_TOKENS + 2
PROMPT_LEN = (32, 900)
OUTPUT_LEN = (8, 96)
WAVE = (4, 12)


@dataclass
class Request:
    req_id: str
    prompt_len: int
    max_tokens: int
    computed: int = 0
    output: int = 0
    #: Tokens to compute before decoding: the prompt, or after preemption
    #: everything computed before it (vLLM recomputes them).
    target: int = 0
    scheduled_before: bool = False
    resumed: bool = False

    @property
    def prefilling(self) -> bool:
        return self.computed < self.target


class Scheduler:
    """Plans steps; assumes every scheduled token is computed (as vLLM's
    async scheduling does when it plans the next step early)."""

    def __init__(self, seed: int, rate: float = 0.0):
        self.rng = random.Random(seed)
        self.rate = rate
        self.waiting: collections.deque[Request] = collections.deque()
        self.running: list[Request] = []
        self.finished: set[str] = set()
        self.num_steps = 0
        self.num_requests = 0
        self._next_arrival: Optional[float] = None
        self._wave_below = 0

    def _new_request(self) -> Request:
        self.num_requests += 1
        prompt = self.rng.randint(*PROMPT_LEN)
        return Request(f"req-{self.num_requests}", prompt,
                       self.rng.randint(*OUTPUT_LEN), target=prompt)

    def _arrivals(self, now: float) -> None:
        if self.rate <= 0:
            if not self.waiting and len(self.running) <= self._wave_below:
                self.waiting.extend(self._new_request() for _ in range(self.rng.randint(*WAVE)))
                # The next wave joins running decodes (mixed steps) or waits
                # for an empty batch (pure prefill steps).
                self._wave_below = self.rng.choice((0, MAX_NUM_SEQS // 2))
            return
        if self._next_arrival is None:
            self._next_arrival = now
        while self._next_arrival <= now:
            self.waiting.append(self._new_request())
            self._next_arrival += 1.0 / self.rate

    def next_arrival(self) -> Optional[float]:
        """When a request arrives next (rate mode), for an idle engine."""
        return self._next_arrival

    def schedule(self, now: float) -> Optional[tuple[SchedulerOutput, StepPlan]]:
        """The next step, or None when there is nothing to run."""
        self._arrivals(now)
        preempted = self._maybe_preempt()
        spec = SPEC_TOKENS if self.num_steps % SPEC_PERIOD >= SPEC_PERIOD - SPEC_STEPS else 0
        budget = MAX_NUM_TOKENS
        batch: list[tuple[Request, int, bool]] = []  # (request, tokens, prefill)
        # Decodes first, then prefill chunks with what is left, as vLLM does.
        for req in sorted(self.running, key=lambda r: r.prefilling):
            n = self._chunk(req, budget) if req.prefilling else 1 + spec
            if n == 0 or n > budget:
                continue
            batch.append((req, n, req.prefilling))
            budget -= n
        while self.waiting and len(self.running) < MAX_NUM_SEQS:
            n = self._chunk(self.waiting[0], budget)
            if n == 0:
                break
            req = self.waiting.popleft()
            self.running.append(req)
            batch.append((req, n, True))
            budget -= n
        if not batch:
            return None
        self.num_steps += 1
        out = self._output(batch, spec, preempted)
        plan = self._plan(batch)
        self._advance(batch, spec)
        return out, plan

    def _chunk(self, req: Request, budget: int) -> int:
        """Tokens of `req`'s prefill to schedule within `budget` (0: none)."""
        left = req.target - req.computed
        n = min(left, budget)
        if left - n and left - n < MIN_CHUNK:
            n = left - MIN_CHUNK
        return n if n >= MIN_CHUNK else 0

    def _maybe_preempt(self) -> set[str]:
        decoding = [r for r in self.running if not r.prefilling]
        if self.num_steps % PREEMPT_EVERY != PREEMPT_EVERY - 1 or not decoding:
            return set()
        req = decoding[-1]
        self.running.remove(req)
        req.target, req.computed, req.resumed = req.computed, 0, True
        self.waiting.appendleft(req)
        return {req.req_id}

    def _output(self, batch, spec: int, preempted: set[str]) -> SchedulerOutput:
        new, cached = [], CachedRequestData.make_empty()
        for req, n, _ in batch:
            if not req.scheduled_before:
                new.append(NewRequestData(req.req_id, list(range(req.prompt_len)),
                                          ([req.computed],), req.computed))
                continue
            cached.req_ids.append(req.req_id)
            if req.resumed:
                cached.resumed_req_ids.add(req.req_id)
            cached.new_token_ids.append([])
            cached.new_block_ids.append(None)
            cached.num_computed_tokens.append(req.computed)
            cached.num_output_tokens.append(req.output)
        scheduled = {req.req_id: n for req, n, _ in batch}
        spec_tokens = {req.req_id: [0] * spec for req, _, prefill in batch
                       if spec and not prefill}
        out = SchedulerOutput(
            scheduled_new_reqs=new, scheduled_cached_reqs=cached,
            num_scheduled_tokens=scheduled,
            total_num_scheduled_tokens=sum(scheduled.values()),
            scheduled_spec_decode_tokens=spec_tokens, scheduled_encoder_inputs={},
            num_common_prefix_blocks=[0], finished_req_ids=self.finished,
            free_encoder_mm_hashes=[], preempted_req_ids=preempted)
        self.finished = set()
        return out

    @staticmethod
    def _plan(batch) -> StepPlan:
        prefill = [n for _, n, p in batch if p]
        phase = "decode" if not prefill else "prefill" if len(prefill) == len(batch) else "mixed"
        return StepPlan(phase, len(batch), sum(n for _, n, _ in batch), len(prefill),
                        sum(prefill))

    def _advance(self, batch, spec: int) -> None:
        for req, n, prefill in batch:
            req.scheduled_before = True
            req.resumed = False  # resumed_req_ids names a request once
            if prefill:
                req.computed += n
                if not req.prefilling:
                    req.output += 1  # the last chunk samples the first token
            else:
                accepted = self.rng.randint(0, spec)
                req.computed += 1 + accepted
                req.output += 1 + accepted
            if req.output >= req.max_tokens:
                self.running.remove(req)
                self.finished.add(req.req_id)


def dummy_scheduler_output(num_tokens: int) -> SchedulerOutput:
    """A schedule of one request of `num_tokens` tokens, for dummy runs."""
    return SchedulerOutput(
        scheduled_new_reqs=[], scheduled_cached_reqs=CachedRequestData.make_empty(),
        num_scheduled_tokens={"dummy": num_tokens}, total_num_scheduled_tokens=num_tokens,
        scheduled_spec_decode_tokens={}, scheduled_encoder_inputs={},
        num_common_prefix_blocks=[0], finished_req_ids=set(), free_encoder_mm_hashes=[])

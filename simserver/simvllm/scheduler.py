"""A small stand-in for vLLM's scheduler: it produces a SchedulerOutput per
step from a population of requests, and its own record of each step (the
ground truth's StepPlan).

What it exercises: pure prefill steps (a wave of new requests), continuing
chunks of long prompts (chunked prefill), mixed steps (prefill chunks next to
decodes), decode steps, speculative decoding (every decode request scheduled
1 + spec_tokens tokens; in periods, or every decode step), a token budget
(MAX_NUM_TOKENS) and MAX_NUM_SEQS running requests at most, and a KV cache
of kv_blocks blocks: each request holds blocks for the tokens it has
scheduled; when a running request needs a block that is not free, the
request admitted last is preempted (its blocks freed, vLLM's FCFS policy)
and comes back resumed, recomputing its tokens; waiting requests are
admitted only while blocks are free and nothing was preempted in the step.
Steps are deterministic for a seed and a SchedConfig.

Requests arrive in waves (back-to-back: a new wave once the running batch is
empty or half empty), or one request every 1/rate seconds with `rate`.

Drafts: each draft token agrees with the target model (TARGET_TOKEN) with
probability spec_acceptance, drawn from a random stream of its own; the
simulated rejection sampler (runner.py) accepts the leading agreeing ones.
"""
import collections
import random
from dataclasses import dataclass
from typing import Optional

from vllm.v1.core.sched.output import CachedRequestData, NewRequestData, SchedulerOutput

from .kvcache import BlockPool, blocks_for
from .model import MAX_NUM_TOKENS
from .truth import StepPlan

MAX_NUM_SEQS = 16
#: Steps of a period; with spec "periods" the last SPEC_STEPS of every
#: period decode speculatively.
SPEC_PERIOD, SPEC_STEPS = 60, 20
#: The token the simulated target model samples; a draft token of any other
#: value is rejected.
TARGET_TOKEN, OTHER_TOKEN = 1, 2
PROMPT_LEN = (32, 900)
OUTPUT_LEN = (8, 96)
WAVE = (4, 12)
#: Most draft tokens per request (the token budget must hold a full batch
#: of speculative decodes).
MAX_SPEC_TOKENS = 8


def min_kv_blocks(spec_tokens: int) -> int:
    """Fewest blocks with which the longest request still runs alone (with
    fewer, it could never be scheduled)."""
    return blocks_for(PROMPT_LEN[1] + OUTPUT_LEN[1] + spec_tokens)


@dataclass(frozen=True)
class SchedConfig:
    """The scheduler's knobs (CLI: --kv-blocks, --spec, --spec-tokens,
    --spec-acceptance)."""

    #: KV-cache blocks of kvcache.BLOCK_SIZE tokens.  The default is tight
    #: enough for waves of requests to fill it and force preemptions.
    kv_blocks: int = 320
    #: "periods", "always" or "off" (no speculative decoding configured).
    spec: str = "periods"
    spec_tokens: int = 2
    #: Probability that a draft token agrees with the target model.
    spec_acceptance: float = 0.6

    @property
    def num_spec_tokens(self) -> int:
        """vLLM's num_spec_tokens: 0 when speculative decoding is off."""
        return 0 if self.spec == "off" else self.spec_tokens

    @property
    def min_chunk(self) -> int:
        """Smallest prefill chunk, and smallest remainder a chunk may leave:
        a chunk must stay distinguishable from a speculative decode."""
        return self.num_spec_tokens + 2


@dataclass(eq=False)
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
    #: KV-cache blocks held.
    blocks: int = 0
    #: Set once the engine processed the output of the request's last step
    #: (vLLM frees a finished request in update_from_output).
    freed: bool = False

    @property
    def prefilling(self) -> bool:
        return self.computed < self.target

    def is_finished(self) -> bool:
        return self.freed


class Scheduler:
    """Plans steps; assumes every scheduled token is computed (as vLLM's
    async scheduling does when it plans the next step early), and knows at
    schedule time which drafts the target model will accept."""

    def __init__(self, seed: int, rate: float = 0.0, config: SchedConfig = SchedConfig()):
        self.rng = random.Random(seed)
        self.draft_rng = random.Random(f"drafts-{seed}")
        self.rate = rate
        self.config = config
        self.kv = BlockPool(config.kv_blocks)
        self.waiting: collections.deque[Request] = collections.deque()
        self.running: list[Request] = []
        #: req_id -> request, until the engine processed its last step.
        self.requests: dict[str, Request] = {}
        self.finished: set[str] = set()
        #: Preempted since the last SchedulerOutput (reported in the next).
        self.preempted: list[str] = []
        self.num_steps = 0
        self.num_requests = 0
        self._next_arrival: Optional[float] = None
        self._wave_below = 0

    def _new_request(self) -> Request:
        self.num_requests += 1
        prompt = self.rng.randint(*PROMPT_LEN)
        req = Request(f"req-{self.num_requests}", prompt, self.rng.randint(*OUTPUT_LEN),
                      target=prompt)
        self.requests[req.req_id] = req
        return req

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

    def _spec_now(self) -> int:
        """Draft tokens per decode request in the next step."""
        c = self.config
        if c.spec == "always" or (
                c.spec == "periods" and self.num_steps % SPEC_PERIOD >= SPEC_PERIOD - SPEC_STEPS):
            return c.num_spec_tokens
        return 0

    def schedule(self, now: float) -> Optional[tuple[SchedulerOutput, StepPlan]]:
        """The next step, or None when there is nothing to run."""
        self._arrivals(now)
        spec = self._spec_now()
        budget = MAX_NUM_TOKENS
        # (request, tokens, prefill, drafts)
        batch: list[tuple[Request, int, bool, list[int]]] = []
        preempted_now = False
        # Decodes first, then prefill chunks with what is left, as vLLM does.
        for req in sorted(self.running, key=lambda r: r.prefilling):
            if req not in self.running:
                continue  # preempted for an earlier request of this step
            n = self._chunk(req, budget) if req.prefilling else 1 + spec
            if n == 0 or n > budget:
                continue
            while blocks_for(req.computed + n) - req.blocks > self.kv.free:
                victim = self.running[-1]
                budget += self._preempt(victim, batch)
                preempted_now = True
                if victim is req:
                    break
            if req not in self.running:
                continue
            self._allocate(req, n)
            drafts = [] if req.prefilling else self._drafts(spec)
            batch.append((req, n, req.prefilling, drafts))
            budget -= n
        while not preempted_now and self.waiting and len(self.running) < MAX_NUM_SEQS:
            req = self.waiting[0]
            n = self._chunk(req, budget)
            if n == 0 or blocks_for(req.computed + n) > self.kv.free:
                break
            self.waiting.popleft()
            self.running.append(req)
            self._allocate(req, n)
            batch.append((req, n, True, []))
            budget -= n
        if not batch:
            return None
        self.num_steps += 1
        out = self._output(batch)
        finishing = self._advance(batch)
        plan = self._plan(batch, len(out.preempted_req_ids), finishing)
        return out, plan

    def _chunk(self, req: Request, budget: int) -> int:
        """Tokens of `req`'s prefill to schedule within `budget` (0: none)."""
        least = self.config.min_chunk
        left = req.target - req.computed
        n = min(left, budget)
        if left - n and left - n < least:
            n = left - least
        return n if n >= least else 0

    def _allocate(self, req: Request, n: int) -> None:
        need = blocks_for(req.computed + n) - req.blocks
        if need > 0:
            self.kv.take(need)
            req.blocks += need

    def _preempt(self, req: Request, batch) -> int:
        """Preempt running `req`: blocks freed, back to the front of the
        queue, to recompute what it had computed.  Returns the tokens it
        gives back to this step's budget (if already in the batch)."""
        self.running.remove(req)
        self.kv.give_back(req.blocks)
        req.blocks = 0
        # A request preempted mid-prompt still has its whole prompt to do.
        req.target, req.computed, req.resumed = max(req.target, req.computed), 0, True
        self.waiting.appendleft(req)
        self.preempted.append(req.req_id)
        for i, (r, n, _, _) in enumerate(batch):
            if r is req:
                del batch[i]
                return n
        return 0

    def _drafts(self, spec: int) -> list[int]:
        return [TARGET_TOKEN if self.draft_rng.random() < self.config.spec_acceptance
                else OTHER_TOKEN for _ in range(spec)]

    def _output(self, batch) -> SchedulerOutput:
        new, cached = [], CachedRequestData.make_empty()
        for req, n, _, _ in batch:
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
        scheduled = {req.req_id: n for req, n, _, _ in batch}
        out = SchedulerOutput(
            scheduled_new_reqs=new, scheduled_cached_reqs=cached,
            num_scheduled_tokens=scheduled,
            total_num_scheduled_tokens=sum(scheduled.values()),
            scheduled_spec_decode_tokens={req.req_id: d for req, _, _, d in batch if d},
            scheduled_encoder_inputs={}, num_common_prefix_blocks=[0],
            finished_req_ids=self.finished, free_encoder_mm_hashes=[],
            preempted_req_ids=set(self.preempted))
        self.finished = set()
        self.preempted = []
        return out

    def _plan(self, batch, preempted: int, finishing: tuple[str, ...]) -> StepPlan:
        prefill = [n for _, n, p, _ in batch if p]
        phase = "decode" if not prefill else "prefill" if len(prefill) == len(batch) else "mixed"
        spec_on = self.config.num_spec_tokens > 0
        return StepPlan(
            phase, len(batch), sum(n for _, n, _, _ in batch), len(prefill), sum(prefill),
            kv_usage_permille=round(self.kv.usage() * 1000),
            running_reqs=len(self.running), waiting_reqs=len(self.waiting),
            preempted_reqs=preempted, token_budget=MAX_NUM_TOKENS, max_num_seqs=MAX_NUM_SEQS,
            spec_proposed=sum(len(d) for _, _, _, d in batch) if spec_on else -1,
            spec_accepted=sum(accepted(d) for _, _, _, d in batch) if spec_on else -1,
            finishing=finishing)

    def _advance(self, batch) -> tuple[str, ...]:
        """Every scheduled token computed; returns the requests that end."""
        finishing = []
        for req, n, prefill, drafts in batch:
            req.scheduled_before = True
            req.resumed = False  # resumed_req_ids names a request once
            if prefill:
                req.computed += n
                if not req.prefilling:
                    req.output += 1  # the last chunk samples the first token
            else:
                req.computed += 1 + accepted(drafts)
                req.output += 1 + accepted(drafts)
            if req.output >= req.max_tokens:
                self.running.remove(req)
                self.kv.give_back(req.blocks)
                req.blocks = 0
                self.finished.add(req.req_id)
                finishing.append(req.req_id)
        return tuple(finishing)

    def processed(self, plan: StepPlan) -> None:
        """The engine processed the step's output: its finished requests
        are freed (gone from `requests`), as vLLM's update_from_output does."""
        for req_id in plan.finishing:
            self.requests.pop(req_id).freed = True


def accepted(drafts: list[int]) -> int:
    """Draft tokens the target model accepts: the leading agreeing ones."""
    n = 0
    while n < len(drafts) and drafts[n] == TARGET_TOKEN:
        n += 1
    return n


def dummy_scheduler_output(num_tokens: int) -> SchedulerOutput:
    """A schedule of one request of `num_tokens` tokens, for dummy runs."""
    return SchedulerOutput(
        scheduled_new_reqs=[], scheduled_cached_reqs=CachedRequestData.make_empty(),
        num_scheduled_tokens={"dummy": num_tokens}, total_num_scheduled_tokens=num_tokens,
        scheduled_spec_decode_tokens={}, scheduled_encoder_inputs={},
        num_common_prefix_blocks=[0], finished_req_ids=set(), free_encoder_mm_hashes=[])

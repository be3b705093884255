"""A deterministic stand-in for vLLM's scheduler: one SchedulerOutput per step.

The batch of step k is a pure function of (seed, k), so two runs with the
same seed schedule the same shapes at the same step ids (validate.sh
compares a traced run with a profiled one step by step).  No torch here.

Mix per step: decode (1-32 requests x 1 token) most of the time, prefill
(1-4 new requests x 128-512 prompt tokens) and mixed (decode requests plus
one prefill chunk, as chunked prefill does) now and then.
"""
import itertools
import random

from vllm.v1.core.sched.output import (CachedRequestData, NewRequestData,
                                       SchedulerOutput)

MAX_DECODE_BATCH = 32
PREFILL_REQS = (1, 4)
#: Prompt lengths come in a few buckets, so warm-up can run every token count a
#: step will have: the first forward of a new shape is many times slower
#: (kernel selection), which would make the run drift and untraced and traced
#: windows incomparable.
PREFILL_TOKENS = (128, 256, 384, 512)
#: Probability of each phase per step.
P_PREFILL = 0.08
P_MIXED = 0.08


def plan(seed, step):
    """(phase, decode_batch, prefill_lengths) of 1-based `step`."""
    rng = random.Random(seed * 1_000_003 + step)
    x = rng.random()
    if x < P_PREFILL:
        n = rng.randint(*PREFILL_REQS)
        return "prefill", 0, [rng.choice(PREFILL_TOKENS) for _ in range(n)]
    if x < P_PREFILL + P_MIXED:
        return "mixed", rng.randint(1, MAX_DECODE_BATCH // 2), [rng.choice(PREFILL_TOKENS)]
    return "decode", rng.randint(1, MAX_DECODE_BATCH), []


def multi_token_counts():
    """Every token count a prefill or mixed step can have, for warm-up."""
    prefill = {sum(c) for n in range(PREFILL_REQS[0], PREFILL_REQS[1] + 1)
               for c in itertools.product(PREFILL_TOKENS, repeat=n)}
    mixed = {d + p for d in range(1, MAX_DECODE_BATCH // 2 + 1) for p in PREFILL_TOKENS}
    return sorted(prefill | mixed)


def scheduler_output(seed, step):
    """The SchedulerOutput of 1-based `step`, with vLLM's field names."""
    phase, decode_batch, prefill_lens = plan(seed, step)
    new_reqs = []
    num_scheduled = {}
    for i, n in enumerate(prefill_lens):
        req_id = f"s{step}-p{i}"
        # Token ids are arbitrary (random weights); they only need a length.
        new_reqs.append(NewRequestData(
            req_id=req_id, prompt_token_ids=[(step * 31 + j) % 1000 + 1 for j in range(n)],
            block_ids=([],), num_computed_tokens=0))
        num_scheduled[req_id] = n
    cached_ids = [f"d{(step + j) % 997}" for j in range(decode_batch)]
    cached = CachedRequestData(
        req_ids=cached_ids, resumed_req_ids=set(),
        new_token_ids=[[] for _ in cached_ids], new_block_ids=[None for _ in cached_ids],
        num_computed_tokens=[600 + step % 400 for _ in cached_ids],
        num_output_tokens=[1 + step % 400 for _ in cached_ids])
    for req_id in cached_ids:
        num_scheduled[req_id] = 1
    return SchedulerOutput(
        scheduled_new_reqs=new_reqs, scheduled_cached_reqs=cached,
        num_scheduled_tokens=num_scheduled,
        total_num_scheduled_tokens=sum(num_scheduled.values()),
        scheduled_spec_decode_tokens={}, scheduled_encoder_inputs={},
        num_common_prefix_blocks=[0], finished_req_ids=set(), free_encoder_mm_hashes=[])


def shape(so):
    """(phase, num_reqs, num_tokens, num_prefill_reqs, num_prefill_tokens).

    Same rule as the marker (design.md): a new request with prompt tokens
    left, or one scheduled more than one token, is prefill.
    """
    prefill = {r.req_id for r in so.scheduled_new_reqs
               if r.num_computed_tokens < len(r.prompt_token_ids)}
    prefill.update(rid for rid, n in so.num_scheduled_tokens.items() if n > 1)
    n_reqs = len(so.num_scheduled_tokens)
    p_tokens = sum(n for rid, n in so.num_scheduled_tokens.items() if rid in prefill)
    phase = "prefill" if len(prefill) == n_reqs else "decode" if not prefill else "mixed"
    return phase, n_reqs, so.total_num_scheduled_tokens, len(prefill), p_tokens

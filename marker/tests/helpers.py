"""Building SchedulerOutputs for the stand-in vLLM in a line each."""


def sched(new=(), cached=(), resumed=(), spec=None):
    """new: (req_id, prompt_len, num_computed, scheduled) tuples;
    cached: (req_id, scheduled) tuples; resumed: ids among cached;
    spec: req_id -> number of speculative tokens scheduled."""
    from vllm.v1.core.sched.output import CachedRequestData, NewRequestData, SchedulerOutput

    num_scheduled = {}
    new_reqs = []
    for req_id, prompt_len, computed, scheduled in new:
        new_reqs.append(NewRequestData(req_id, list(range(prompt_len)), computed))
        num_scheduled[req_id] = scheduled
    for req_id, scheduled in cached:
        num_scheduled[req_id] = scheduled
    return SchedulerOutput(
        scheduled_new_reqs=new_reqs,
        scheduled_cached_reqs=CachedRequestData(
            req_ids=[r for r, _ in cached], resumed_req_ids=set(resumed)),
        num_scheduled_tokens=num_scheduled,
        total_num_scheduled_tokens=sum(num_scheduled.values()),
        scheduled_spec_decode_tokens={r: [7] * n for r, n in (spec or {}).items()},
    )

"""What step_begin reads off vLLM's SchedulerOutput: the batch shape and
the scheduler patch's key.

Field names are vLLM's (vllm/v1/core/sched/output.py); see
docs/vllm-facts.md for the prefill rule this follows.
"""

#: Attribute of a SchedulerOutput stamped by the scheduler patch (sched.py):
#: a tuple whose first item is the sched_key.  It travels with the object,
#: by pickle too, to tensor-parallel workers.
SCHED_ATTR = "_profilemate_sched"


def sched_key(scheduler_output):
    """The sched_key stamped on scheduler_output, or 0 when unstamped (the
    scheduler patch is off, or no tracer was attached at schedule time)."""
    stamp = getattr(scheduler_output, SCHED_ATTR, None)
    return stamp[0] if stamp else 0


def batch_shape(scheduler_output):
    """Return (num_reqs, num_tokens, num_prefill_reqs, num_prefill_tokens).

    A request counts as prefill in this step when it still has prompt tokens
    to compute: a new request with num_computed_tokens below its prompt
    length, a request resumed after preemption, or any request scheduled
    more tokens than one plus its speculative tokens (a continuing chunk of
    a chunked prefill).  Speculative tokens themselves are decode work.
    """
    scheduled = scheduler_output.num_scheduled_tokens
    spec_tokens = scheduler_output.scheduled_spec_decode_tokens or {}
    cached = scheduler_output.scheduled_cached_reqs
    resumed = getattr(cached, "resumed_req_ids", None)
    total = scheduler_output.total_num_scheduled_tokens

    # A pure decode step, the common case, without a loop over the batch:
    # every request is scheduled at least 1 + its speculative tokens, so a
    # total of exactly that leaves no request with prompt tokens.
    if not scheduler_output.scheduled_new_reqs and not resumed and \
            total == len(scheduled) + sum(map(len, spec_tokens.values())):
        return len(scheduled), total, 0, 0

    prefill = set()
    for req in scheduler_output.scheduled_new_reqs:
        prompt_len = _prompt_len(req)
        if prompt_len is None or req.num_computed_tokens < prompt_len:
            prefill.add(req.req_id)
    prefill.update(resumed or ())
    for req_id, num in scheduled.items():
        if num > 1 + len(spec_tokens.get(req_id, ())):
            prefill.add(req_id)

    prefill_tokens = [num for req_id, num in scheduled.items() if req_id in prefill]
    return (
        len(scheduled),
        total,
        len(prefill_tokens),
        sum(prefill_tokens),
    )


def _prompt_len(new_req):
    """Prompt length of a NewRequestData; None when it cannot be told.

    Prompts given as embeddings have prompt_token_ids None; their length is
    that of prompt_embeds.  A new request whose length is unknown is counted
    as prefill, which is what a new request almost always is.
    """
    if new_req.prompt_token_ids is not None:
        return len(new_req.prompt_token_ids)
    embeds = getattr(new_req, "prompt_embeds", None)
    return len(embeds) if embeds is not None else None

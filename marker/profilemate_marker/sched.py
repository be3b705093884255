"""Wrappers around vLLM's scheduler (EngineCore) that fire sched_step.

Protocol (docs/design.md, "Marker protocol"; marker/README.md):

* schedule() returned a step with work while sched_step's semaphore is set:
  the step's schedule-time values are stamped on the SchedulerOutput as
  SCHED_ATTR, a tuple (sched_key, kv_usage_permille, running_reqs,
  waiting_reqs, preempted_reqs, scheduled_tokens, token_budget,
  scheduled_reqs, max_num_seqs).  The runner's step_begin passes sched_key
  on (patch.py), in every tensor-parallel rank: the object is pickled there
  with the attribute.
* update_from_output(scheduler_output, model_runner_output) returned for a
  stamped output: sched_step fires with the stamp and the step's draft
  tokens proposed and accepted, counted from the output as vLLM counts them
  for SpecDecodingStats.  They are counted before vLLM's own processing,
  which frees finished requests; the probe fires after it returns.

Untraced cost: one extra Python frame and one semaphore read per step.
update_from_output is wrapped on the scheduler instance by its first
stamp, i.e. only once a tracer is attached, and the wrapper removes itself
at the first unstamped step after the tracer left.
A Scheduler of a vLLM that lacks a field this module reads switches the
scheduler probe off with one warning; any other exception of this module
switches it off too (logged once).  The runner patch is left working in
both cases; vLLM's results and exceptions always pass through untouched.
"""
import inspect
import logging
import os

from . import patch
from .batch import SCHED_ATTR

log = logging.getLogger("profilemate_marker")

#: True once the scheduler probe switched itself off in this process.
off = False
#: The sched_key's counter has 32 bits; past that a new nonce starts over.
COUNTER_MAX = 0xFFFFFFFF

#: What the probe reads, per object, checked once on the first stamp: a
#: vLLM without one of them is one this module does not know.
SCHEDULER_FIELDS = ("kv_cache_manager", "running", "waiting", "max_num_scheduled_tokens",
                    "max_num_running_reqs", "num_spec_tokens", "requests")
SCHEDULER_OUTPUT_FIELDS = ("total_num_scheduled_tokens", "num_scheduled_tokens",
                           "scheduled_spec_decode_tokens", "preempted_req_ids")
MODEL_RUNNER_OUTPUT_FIELDS = ("sampled_token_ids", "req_id_to_index")
#: update_from_output's leading parameters, all required.
UPDATE_PARAMS = ("self", "scheduler_output", "model_runner_output")

#: False until one model runner output was checked for its fields.
_output_checked = False


def patch_scheduler(cls):
    """Wrap schedule and update_from_output of vLLM's Scheduler `cls`.

    One whose update_from_output does not start with UPDATE_PARAMS is left
    alone, with a warning.
    """
    if not _update_fits(getattr(cls, "update_from_output", None)) or \
            not callable(getattr(cls, "schedule", None)):
        log.warning("profilemate marker: %s.schedule/update_from_output have unknown "
                    "signatures; scheduler not patched", cls.__qualname__)
        return
    patch._wrap(cls, "schedule", _schedule)


def _update_fits(method):
    if method is None:
        return False
    params = list(inspect.signature(method).parameters.values())[:len(UPDATE_PARAMS)]
    return [p.name for p in params] == list(UPDATE_PARAMS) and all(
        p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)


def _switch_off_missing(kind, missing):
    global off
    if not off:
        off = True
        log.warning("profilemate marker: this vLLM's %s has no %s; scheduler probe "
                    "switched off (the model-runner probes still fire)",
                    kind, ", ".join(missing))


def _switch_off_error():
    global off
    if not off:
        off = True
        log.exception("profilemate marker: scheduler probe failed; switching it off "
                      "for this process")


def _missing(obj, names):
    return [name for name in names if not hasattr(obj, name)]


#: Default of the wrappers' first parameter: "the caller passed none".
_NOT_GIVEN = object()


def _schedule(original):
    # The first parameter spelled out for EngineCore's call, 0.26's
    # schedule(throttle_prefills) (older: schedule()): forwarding *args costs
    # several hundred ns.  Every call shape still reaches original unchanged.
    def wrapper(self, first=_NOT_GIVEN, *args, **kwargs):
        if first is _NOT_GIVEN:
            output = original(self, **kwargs) if kwargs else original(self)
        elif args or kwargs:
            output = original(self, first, *args, **kwargs)
        else:
            output = original(self, first)
        if patch.probes.sched_step_semaphore.value and not (off or patch.off):
            try:
                if output.total_num_scheduled_tokens:
                    _stamp(self, output)
            except Exception:
                _switch_off_error()
        return output

    return wrapper


def _stamp(scheduler, output):
    """Stamp output with its key and the scheduler's state now."""
    count = getattr(scheduler, "_profilemate_count", 0) + 1
    if count == 1 or count > COUNTER_MAX:
        if count == 1:
            missing = _missing(scheduler, SCHEDULER_FIELDS) + [
                "SchedulerOutput." + n for n in _missing(output, SCHEDULER_OUTPUT_FIELDS)]
            if not missing and not hasattr(scheduler.kv_cache_manager, "usage"):
                missing = ["kv_cache_manager.usage"]
            if missing:
                _switch_off_missing("Scheduler", missing)
                return
        # os.urandom, not the random module: vLLM seeds that one alike in
        # every engine (keys would collide across data-parallel engines),
        # and drawing from it would change vLLM's own random sequence.
        scheduler._profilemate_nonce = (int.from_bytes(os.urandom(4), "little") >> 1) or 1
        count = 1
    scheduler._profilemate_count = count
    if UPDATE not in vars(scheduler):
        # An instance attribute, found before the class's method: vLLM's
        # EngineCore calls self.scheduler.update_from_output(...).
        setattr(scheduler, UPDATE, _update_from_output(scheduler, getattr(type(scheduler), UPDATE)))
    preempted = output.preempted_req_ids
    # vllm:num_requests_waiting counts the "skipped" waiting queue (0.26+) too.
    skipped = getattr(scheduler, "skipped_waiting", None)
    setattr(output, SCHED_ATTR, (
        scheduler._profilemate_nonce << 32 | count,
        int(round(scheduler.kv_cache_manager.usage * 1000)),
        len(scheduler.running),
        len(scheduler.waiting) + (len(skipped) if skipped is not None else 0),
        len(preempted) if preempted is not None else -1,
        output.total_num_scheduled_tokens,
        scheduler.max_num_scheduled_tokens,
        len(output.num_scheduled_tokens),
        scheduler.max_num_running_reqs,
    ))


#: The scheduler method wrapped per instance while traced.
UPDATE = "update_from_output"


def _update_from_output(self, original):
    """update_from_output of the scheduler `self` (original: the class's
    function), firing sched_step for stamped outputs."""
    def wrapper(scheduler_output, model_runner_output, *args, **kwargs):
        stamp = getattr(scheduler_output, SCHED_ATTR, None)
        spec = None
        if stamp and patch.probes.sched_step_semaphore.value and not (off or patch.off):
            try:
                spec = spec_counts(self, scheduler_output, model_runner_output)
            except Exception:
                _switch_off_error()
        elif not stamp and not patch.probes.sched_step_semaphore.value:
            # The tracer left: back to the class's method, at no cost.
            vars(self).pop(UPDATE, None)
        if args or kwargs:
            result = original(self, scheduler_output, model_runner_output, *args, **kwargs)
        else:
            result = original(self, scheduler_output, model_runner_output)
        if stamp and spec is not None:
            try:
                patch.probes.sched_step(*stamp, *spec)
            except Exception:
                _switch_off_error()
        return result

    return wrapper


def spec_counts(scheduler, scheduler_output, model_runner_output):
    """(proposed, accepted) draft tokens of the step, as vLLM 0.26's
    update_from_output counts them for SpecDecodingStats; (-1, -1) without
    speculative decoding; None (probe switched off) for an unknown output.

    Per request with drafts scheduled, skipped as vLLM skips it: finished
    or gone (aborted while the step ran), a stale frame still to discard
    (async_tokens_to_discard), no tokens sampled.  Proposed: the drafts,
    less those the grammar invalidated (num_invalid_spec_tokens); accepted:
    tokens sampled beyond the one a step samples anyway.
    """
    global _output_checked
    if not scheduler.num_spec_tokens:
        return (-1, -1)
    if not _output_checked:
        missing = _missing(model_runner_output, MODEL_RUNNER_OUTPUT_FIELDS)
        if missing:
            _switch_off_missing("ModelRunnerOutput", missing)
            return None
        _output_checked = True
    drafts = scheduler_output.scheduled_spec_decode_tokens
    if not drafts:
        return (0, 0)
    sampled = model_runner_output.sampled_token_ids
    index = model_runner_output.req_id_to_index
    invalid = getattr(scheduler_output, "num_invalid_spec_tokens", None) or {}
    # Diffusion models sample no token of their own per step (0.26+).
    per_step = getattr(scheduler, "num_sampled_tokens_per_step", 1)
    requests = scheduler.requests
    proposed = accepted = 0
    for req_id, draft in drafts.items():
        request = requests.get(req_id)
        if not draft or request is None or request.is_finished() or \
                getattr(request, "async_tokens_to_discard", 0):
            continue
        generated = sampled[index[req_id]] if sampled else ()
        if not generated and per_step:
            continue
        proposed += len(draft) - invalid.get(req_id, 0)
        accepted += max(len(generated) - per_step, 0)
    return (proposed, accepted)

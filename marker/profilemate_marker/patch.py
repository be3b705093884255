"""Wrappers around vLLM's model-runner methods that fire the USDT probes.

Protocol (docs/design.md, "Marker protocol"):

* step_begin   entry of a real execute_model (not dummy/warm-up/profile/
               capture, not an empty schedule); its last argument is the
               sched_key stamped by the scheduler patch (sched.py), or 0
* forward_end  execute_model returned or raised
* sample_end   sample_tokens returned (or execute_model returned an output
               itself: pooling models, non-last pipeline ranks)
* output_ready the async output's get_output returned, or right after
               sample_end when the output is already on the host
* step_end     where output_ready fires, with the CLOCK_MONOTONIC times
               forward_end and sample_end would have fired (0 where not
               taken): one probe hit a step instead of three, for a tracer
               that attaches it in their place (each hit costs the thread
               microseconds in a VM; time.monotonic_ns costs ~50 ns)

Cost while no tracer is attached: three extra Python frames, a step counter
and one read of the step_begin semaphore per step, a few hundred ns
(bench/overhead.py).  A step begun while step_begin's semaphore was zero
fires none of its later probes either (a consumer cannot use an end without
its begin); for a step begun while traced, each later probe still checks its
own semaphore.  Probe arguments are computed only while the probe's
semaphore is set.

Any exception raised by this module's own code switches the whole patch off
(logged once); vLLM's own results and exceptions always pass through
untouched.
"""
import functools
import inspect
import logging
import sys
import threading
from time import monotonic_ns

from .batch import batch_shape, sched_key

log = logging.getLogger("profilemate_marker")

#: Set on every wrapper function, so a method is never wrapped twice (the
#: plugin may run several times, and a subclass may inherit a wrapped method).
WRAPPER_MARK = "_profilemate_wrapper"
#: Attribute of an async output (class default 0): the traced step it ends.
STEP_ATTR = "_profilemate_step"
#: Attribute of an async output (class default (0, 0)): its step's
#: forward_end and sample_end times, for step_end.
TIMES_ATTR = "_profilemate_times"

#: Runner methods (V1 warm-up, profiling, graph capture) inside which no
#: execute_model call is a real step.
SUPPRESSING_METHODS = ("_dummy_run", "profile_run", "capture_model")
#: V2 execute_model keyword flags that mark a run that is not a real step.
DUMMY_FLAGS = ("dummy_run", "is_profile")

#: The loaded native.Probes; set by activate() before any class is patched.
probes = None
#: True once the patch switched itself off after an error in its own code.
off = False
#: Real steps run so far in this process, traced or not: the last step id.
steps = 0
#: The traced step whose sample_tokens call is due, or 0, and its
#: forward_end time for step_end (0: not taken).  Only the thread that runs
#: execute_model and sample_tokens touches them.
pending = 0
pending_forward_ns = 0
#: Async output classes whose get_output is wrapped (tagged with STEP_ATTR).
async_output_types = ()
#: Thread id -> depth inside warm-up/profile/capture runs.  A plain dict, not
#: threading.local: "is it empty" is the common case and costs nothing, where
#: a thread-local read costs ~200 ns.
_warm_up_depth = {}


def activate(loaded_probes):
    """Use `loaded_probes` (a native.Probes) for every probe fired from now."""
    global probes
    probes = loaded_probes


def switch_off():
    """Handle an exception of the patch's own code: log it once, stop."""
    global off
    if not off:
        off = True
        log.exception("profilemate marker failed; switching it off for this process")


#: Leading parameters the wrappers spell out (see _execute_model), with the
#: default each must have.
EXPECTED_PARAMS = {
    "execute_model": (("self", None), ("scheduler_output", None), ("intermediate_tensors", None)),
    "sample_tokens": (("self", None), ("grammar_output", None)),
}


def patch_runner(cls):
    """Wrap execute_model, sample_tokens and the non-step runs of `cls`.

    A runner whose methods do not start with EXPECTED_PARAMS is a vLLM this
    patch does not know: it is left alone, with a warning.
    """
    for name, expected in EXPECTED_PARAMS.items():
        if not _signature_fits(getattr(cls, name, None), expected):
            log.warning("profilemate marker: %s.%s has an unknown signature; not patched",
                        cls.__qualname__, name)
            return
    for name in SUPPRESSING_METHODS:
        _wrap(cls, name, _suppressing)
    _wrap(cls, "execute_model", _execute_model)
    _wrap(cls, "sample_tokens", _sample_tokens)


def patch_async_output(cls):
    """Wrap get_output of an async output class and remember the class."""
    global async_output_types
    if _wrap(cls, "get_output", _get_output):
        setattr(cls, STEP_ATTR, 0)
        setattr(cls, TIMES_ATTR, (0, 0))
        async_output_types += (cls,)


def _signature_fits(method, expected):
    """method's first parameters are `expected` (name, default) pairs,
    positional-or-keyword; the first two (self and the first argument) are
    required, later ones default to the given value."""
    if method is None:
        return False
    params = list(inspect.signature(method).parameters.values())[:len(expected)]
    return len(params) == len(expected) and all(
        p.name == name
        and p.kind is p.POSITIONAL_OR_KEYWORD
        and (p.default is p.empty if i < 2 else p.default is default)
        for i, (p, (name, default)) in enumerate(zip(params, expected)))


def _wrap(cls, name, make_wrapper):
    """Replace cls.name by make_wrapper(original); False if absent or done."""
    original = getattr(cls, name, None)
    if original is None or getattr(original, WRAPPER_MARK, False):
        return False
    wrapper = functools.wraps(original)(make_wrapper(original))
    setattr(wrapper, WRAPPER_MARK, True)
    setattr(cls, name, wrapper)
    return True


def _suppressing(original):
    """Mark the current thread as inside a warm-up/profile/capture run."""

    def wrapper(*args, **kwargs):
        thread = threading.get_ident()
        _warm_up_depth[thread] = _warm_up_depth.get(thread, 0) + 1
        try:
            return original(*args, **kwargs)
        finally:
            if _warm_up_depth[thread] == 1:
                del _warm_up_depth[thread]
            else:
                _warm_up_depth[thread] -= 1

    return wrapper


def _flag_positions(original):
    """(flag, index into *args) for each DUMMY_FLAGS parameter of original.

    Index into the arguments after (self, scheduler_output,
    intermediate_tensors), so that a flag passed positionally is seen too.
    """
    params = list(inspect.signature(original).parameters)
    return tuple((flag, params.index(flag) - 3) for flag in DUMMY_FLAGS if flag in params)


def _execute_model(original):
    flags = _flag_positions(original)
    # Calls with no keyword and at most this many extra positional arguments
    # cannot carry a dummy flag: the common case skips _is_dummy.
    first_flag = min((index for _, index in flags), default=sys.maxsize)

    # Parameters spelled out for the call vLLM makes, execute_model(
    # scheduler_output, intermediate_tensors): forwarding *args/**kwargs costs
    # several hundred ns.  _signature_fits checked that this forwards exactly.
    def wrapper(self, scheduler_output, intermediate_tensors=None, *args, **kwargs):
        global steps, pending
        step = 0
        if not off:
            try:
                if not (
                    (_warm_up_depth and threading.get_ident() in _warm_up_depth)
                    or ((kwargs or len(args) > first_flag) and _is_dummy(flags, args, kwargs))
                    or not scheduler_output.total_num_scheduled_tokens
                ):
                    steps += 1
                    if probes.step_begin_semaphore.value:
                        step = steps
                        probes.step_begin(step, *batch_shape(scheduler_output),
                                          sched_key(scheduler_output))
                # Also cleared for non-steps: a following sample_tokens fires nothing.
                pending = step
            except Exception:
                switch_off()
                step = 0
        try:
            if args or kwargs:
                result = original(self, scheduler_output, intermediate_tensors, *args, **kwargs)
            else:
                result = original(self, scheduler_output, intermediate_tensors)
        except BaseException:
            if step:
                _end_forward(step, None)
            raise
        if step:
            _end_forward(step, result)
        return result

    return wrapper


def _is_dummy(flags, args, kwargs):
    for flag, index in flags:
        if flag in kwargs:
            if kwargs[flag]:
                return True
        elif len(args) > index and args[index]:
            return True
    return False


def _end_forward(step, result):
    """forward_end; then sample_end/output_ready if result is the output."""
    global pending, pending_forward_ns
    try:
        forward_ns = monotonic_ns() if probes.step_end_semaphore.value else 0
        if probes.forward_end_semaphore.value:
            probes.forward_end(step)
        if result is not None:
            # No separate sample_tokens call comes for this step.
            pending = 0
            _end_sampling(step, result, forward_ns)
        else:
            pending_forward_ns = forward_ns
    except Exception:
        switch_off()


def _end_sampling(step, result, forward_ns):
    """sample_end; output_ready now, or once an async output is fetched."""
    sample_ns = monotonic_ns() if probes.step_end_semaphore.value else 0
    if probes.sample_end_semaphore.value:
        probes.sample_end(step)
    if isinstance(result, async_output_types):
        setattr(result, STEP_ATTR, step)
        if sample_ns:
            setattr(result, TIMES_ATTR, (forward_ns, sample_ns))
    else:
        _output_ready(step, forward_ns, sample_ns)


def _output_ready(step, forward_ns, sample_ns):
    """The step's output is on the host: step_end and output_ready."""
    if probes.step_end_semaphore.value:
        probes.step_end(step, forward_ns, sample_ns)
    if probes.output_ready_semaphore.value:
        probes.output_ready(step)


def _sample_tokens(original):
    def wrapper(self, grammar_output, *args, **kwargs):
        global pending
        if args or kwargs:
            result = original(self, grammar_output, *args, **kwargs)
        else:
            result = original(self, grammar_output)
        if pending and not off:
            step, pending = pending, 0
            try:
                _end_sampling(step, result, pending_forward_ns)
            except Exception:
                switch_off()
        return result

    return wrapper


def _get_output(original):
    # Runs in the worker's output thread, not the one that ran the step.
    def wrapper(self, *args, **kwargs):
        result = original(self, *args, **kwargs) if args or kwargs else original(self)
        step = self._profilemate_step  # STEP_ATTR; class default 0
        if step and not off:
            try:
                setattr(self, STEP_ATTR, 0)
                _output_ready(step, *self._profilemate_times)  # TIMES_ATTR
            except Exception:
                switch_off()
        return result

    return wrapper

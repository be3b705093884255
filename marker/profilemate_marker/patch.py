"""Wrappers around vLLM's model-runner methods that fire the USDT probes.

Protocol (docs/design.md, "Marker protocol"):

* step_begin   entry of a real execute_model (not dummy/warm-up/profile/
               capture, not an empty schedule)
* forward_end  execute_model returned or raised
* sample_end   sample_tokens returned (or execute_model returned an output
               itself: pooling models, non-last pipeline ranks)
* output_ready the async output's get_output returned, or right after
               sample_end when the output is already on the host

Cost while no tracer is attached: a step id counter, a thread-local read and
one semaphore read per probe; probe arguments are computed only while the
probe's semaphore is set.  Any exception raised by this module's own code
switches the whole patch off (logged once); vLLM's own results and
exceptions always pass through untouched.
"""
import functools
import inspect
import itertools
import logging
import threading

from .batch import batch_shape

log = logging.getLogger("profilemate_marker")

#: Set on every wrapper function, so a method is never wrapped twice (the
#: plugin may run several times, and a subclass may inherit a wrapped method).
WRAPPER_MARK = "_profilemate_wrapper"
#: Instance attribute: on a runner, the step whose sampling is pending; on an
#: async output, the step it belongs to.  0 means none.
STEP_ATTR = "_profilemate_step"

#: V1 runner methods whose execute_model calls (if any) are not real steps.
SUPPRESSING_METHODS = ("_dummy_run", "profile_run", "capture_model")
#: V2 execute_model keyword flags that mark a run that is not a real step.
DUMMY_FLAGS = ("dummy_run", "is_profile")

#: The loaded native.Probes; set by activate() before any class is patched.
probes = None
#: True once the patch switched itself off after an error in its own code.
off = False
#: Step ids: 1 for the first real step, +1 on every real step, whether or
#: not a tracer is attached, so a step id is the count of real steps so far.
step_ids = itertools.count(1)
#: Async output classes whose get_output is wrapped (tagged with STEP_ATTR).
async_output_types = ()

_suppressed = threading.local()


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


def patch_runner(cls):
    """Wrap execute_model, sample_tokens and the non-step runs of `cls`."""
    for name in SUPPRESSING_METHODS:
        _wrap(cls, name, _suppressing)
    _wrap(cls, "execute_model", _execute_model)
    _wrap(cls, "sample_tokens", _sample_tokens)


def patch_async_output(cls):
    """Wrap get_output of an async output class and remember the class."""
    global async_output_types
    if _wrap(cls, "get_output", _get_output):
        async_output_types += (cls,)


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
        _suppressed.depth = getattr(_suppressed, "depth", 0) + 1
        try:
            return original(*args, **kwargs)
        finally:
            _suppressed.depth -= 1

    return wrapper


def _flag_positions(original):
    """(flag, index into *args) for each DUMMY_FLAGS parameter of original.

    Index into the arguments after (self, scheduler_output), so that a flag
    passed positionally is seen too.
    """
    params = list(inspect.signature(original).parameters)
    return tuple((flag, params.index(flag) - 2) for flag in DUMMY_FLAGS if flag in params)


def _execute_model(original):
    flags = _flag_positions(original)

    def wrapper(self, scheduler_output, *args, **kwargs):
        if off:
            return original(self, scheduler_output, *args, **kwargs)
        try:
            step = _begin(self, scheduler_output, flags, args, kwargs)
        except Exception:
            switch_off()
            step = 0
        try:
            result = original(self, scheduler_output, *args, **kwargs)
        except BaseException:
            if step:
                _end_forward(self, step, None)
            raise
        if step:
            _end_forward(self, step, result)
        return result

    return wrapper


def _begin(runner, scheduler_output, flags, args, kwargs):
    """Fire step_begin for a real step; return its step id, or 0."""
    step = 0
    if not (
        getattr(_suppressed, "depth", 0)
        or (flags and _is_dummy(flags, args, kwargs))
        or not scheduler_output.total_num_scheduled_tokens
    ):
        step = next(step_ids)
        if probes.step_begin_semaphore.value:
            probes.step_begin(step, *batch_shape(scheduler_output))
    # Also cleared for non-steps, so a following sample_tokens fires nothing.
    setattr(runner, STEP_ATTR, step)
    return step


def _is_dummy(flags, args, kwargs):
    for flag, index in flags:
        if flag in kwargs:
            if kwargs[flag]:
                return True
        elif len(args) > index and args[index]:
            return True
    return False


def _end_forward(runner, step, result):
    """forward_end; then sample_end/output_ready if result is the output."""
    try:
        if probes.forward_end_semaphore.value:
            probes.forward_end(step)
        if result is not None:
            # No separate sample_tokens call comes for this step.
            setattr(runner, STEP_ATTR, 0)
            _end_sampling(step, result)
    except Exception:
        switch_off()


def _end_sampling(step, result):
    """sample_end; output_ready now, or once an async output is fetched."""
    if probes.sample_end_semaphore.value:
        probes.sample_end(step)
    if isinstance(result, async_output_types):
        setattr(result, STEP_ATTR, step)
    elif probes.output_ready_semaphore.value:
        probes.output_ready(step)


def _sample_tokens(original):
    def wrapper(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if not off:
            try:
                step = getattr(self, STEP_ATTR, 0)
                if step:
                    setattr(self, STEP_ATTR, 0)
                    _end_sampling(step, result)
            except Exception:
                switch_off()
        return result

    return wrapper


def _get_output(original):
    # Runs in the worker's output thread, not the one that ran the step.
    def wrapper(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if not off:
            try:
                step = getattr(self, STEP_ATTR, 0)
                if step:
                    setattr(self, STEP_ATTR, 0)
                    if probes.output_ready_semaphore.value:
                        probes.output_ready(step)
            except Exception:
                switch_off()
        return result

    return wrapper

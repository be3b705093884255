"""The native probe library, loaded with ctypes, its functions called
through the _fastcall extension where it was built.

`Probes` is the only way the patch reaches the USDT sites, which makes it the
seam the unit tests use: they set a semaphore (ordinary memory) and replace a
probe function with a recorder, so probe firing can be checked without root.
"""
import ctypes
import glob
import os

try:
    from . import _fastcall
except ImportError:  # built without Python's headers: ctypes calls instead
    _fastcall = None

#: Probe names, in the order of the protocol table in docs/design.md.
PROBE_NAMES = ("step_begin", "forward_end", "sample_end", "output_ready", "sched_step", "step_end")

#: The Go tracer finds the library in /proc/PID/maps by this basename prefix.
LIBRARY_PREFIX = "libprofilemate_marker"

_ARG_COUNTS = {"step_begin": 6, "forward_end": 1, "sample_end": 1, "output_ready": 1,
               "sched_step": 11, "step_end": 3}


def find_library():
    """Path of the probe library next to this file, or None if not built.

    Matches both the in-place build (libprofilemate_marker.so, `make -C
    marker`) and the wheel's libprofilemate_marker.abi3.so.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    found = sorted(glob.glob(os.path.join(here, LIBRARY_PREFIX + "*.so")))
    return found[0] if found else None


class Probes:
    """Probe functions and semaphores of one loaded probe library.

    For each probe NAME: ``NAME(*int_args)`` fires the site and
    ``NAME_semaphore.value`` is the count of attached consumers (non-zero
    while a tracer is attached; the kernel raises it).
    """

    def __init__(self, path):
        self.path = path
        # PyDLL keeps the GIL across the call: the probe functions are a
        # NOP, and releasing the GIL there would let another thread run
        # between the probe and the vLLM code it marks, skewing the times.
        # The library stays loaded while this object lives: the fast
        # functions call into it by address.
        self._lib = lib = ctypes.PyDLL(path)
        for name in PROBE_NAMES:
            fn = getattr(lib, "profilemate_" + name)
            fn.argtypes = (ctypes.c_int64,) * _ARG_COUNTS[name]
            fn.restype = None
            if _fastcall is not None:
                # Same function, called in ~0.1 us instead of ctypes' 1-3 us
                # (it runs on the thread of vLLM's step).
                fn = _fastcall.function(ctypes.cast(fn, ctypes.c_void_p).value, _ARG_COUNTS[name])
            setattr(self, name, fn)
            sem = ctypes.c_ushort.in_dll(lib, "profilemate_%s_semaphore" % name)
            setattr(self, name + "_semaphore", sem)

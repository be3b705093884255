"""The _fastcall extension that native.Probes calls the probes through."""
import ctypes

import pytest

from profilemate_marker import native


def test_probes_are_called_through_the_extension(library):
    """make -C marker builds it; only a build without Python's headers
    falls back to ctypes."""
    assert native._fastcall is not None, "_fastcall not built: make -C marker (needs python3-dev)"
    probes = native.Probes(library)
    for name in native.PROBE_NAMES:
        assert type(getattr(probes, name)).__name__ == "builtin_function_or_method", name
        assert getattr(probes, name)(*range(native._ARG_COUNTS[name])) is None


def test_arguments_are_checked(library):
    probes = native.Probes(library)
    with pytest.raises(TypeError, match="takes 3 arguments, got 2"):
        probes.step_end(1, 2)
    with pytest.raises(TypeError):
        probes.step_end(1, 2, "3")
    with pytest.raises(OverflowError):
        probes.step_end(1, 2, 1 << 63)
    probes.step_end(-1, -(1 << 63), (1 << 63) - 1)  # the int64 range passes


def test_functions_are_made_only_for_the_protocols_counts(library):
    lib = ctypes.PyDLL(library)
    address = ctypes.cast(lib.profilemate_step_end, ctypes.c_void_p).value
    with pytest.raises(ValueError, match="address is 0"):
        native._fastcall.function(0, 3)
    for count in (0, 2, 12, -1):
        with pytest.raises(ValueError, match="no probe takes"):
            native._fastcall.function(address, count)
    with pytest.raises(TypeError):
        native._fastcall.function(address)

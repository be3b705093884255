"""Shared fixtures: a fresh stand-in vLLM per test and a recording seam on
the real probe library (semaphores are set from Python: they are ordinary
memory; the probe functions are replaced by recorders)."""
import sys
import threading
from pathlib import Path

import pytest

MARKER_DIR = Path(__file__).resolve().parents[1]
FAKE_VLLM = Path(__file__).resolve().parent / "fakevllm"
sys.path.insert(0, str(MARKER_DIR))

from profilemate_marker import native, patch, sched  # noqa: E402


def _drop_vllm():
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]


def _drop_finders():
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "profilemate_finder", False)]


#: The probes a tracer attaches that knows no step_end.
OLDER_TRACER = tuple(n for n in native.PROBE_NAMES if n != "step_end")
#: Those a tracer attaches that knows it (in place of the three it replaces).
STEP_END_TRACER = ("step_begin", "step_end", "sched_step")


class Recorder:
    """Stands in for the native probe calls; keeps (probe, *args) tuples and
    the thread each probe fired in."""

    def __init__(self, probes):
        self.probes = probes
        self.events = []
        self.threads = []
        for name in native.PROBE_NAMES:
            setattr(probes, name, self._recording(name))

    def _recording(self, name):
        def fire(*args):
            self.events.append((name,) + args)
            self.threads.append(threading.get_ident())

        return fire

    def attach(self, *names):
        """Raise the semaphores of `names`, as a tracer would (default: all
        but step_end, as a tracer older than step_end attaches them)."""
        for name in names or OLDER_TRACER:
            getattr(self.probes, name + "_semaphore").value = 1

    def detach(self):
        for name in native.PROBE_NAMES:
            getattr(self.probes, name + "_semaphore").value = 0

    def take(self):
        events, self.events = self.events, []
        return events


@pytest.fixture(scope="session")
def library():
    """Path of the built probe library."""
    path = native.find_library()
    if path is None:
        pytest.fail("probe library not built: run `make -C marker` first")
    return path


@pytest.fixture
def recorder(library, monkeypatch):
    """Fresh patch state with a recording seam; stand-in vLLM importable."""
    monkeypatch.syspath_prepend(str(FAKE_VLLM))
    _drop_vllm()
    rec = Recorder(native.Probes(library))
    monkeypatch.setattr(patch, "probes", rec.probes)
    monkeypatch.setattr(patch, "off", False)
    monkeypatch.setattr(patch, "steps", 0)
    monkeypatch.setattr(patch, "pending", 0)
    monkeypatch.setattr(patch, "pending_forward_ns", 0)
    monkeypatch.setattr(patch, "async_output_types", ())
    monkeypatch.setattr(sched, "off", False)
    monkeypatch.setattr(sched, "_output_checked", False)
    yield rec
    rec.detach()
    _drop_finders()
    _drop_vllm()

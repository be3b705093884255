"""The two ways in: sitecustomize on PYTHONPATH (fresh interpreters) and the
pip entry point."""
import os
import subprocess
import sys

import pytest

from conftest import FAKE_VLLM, MARKER_DIR

IS_PATCHED = (
    "import vllm.v1.worker.gpu_model_runner as v1, vllm.v1.worker.gpu.model_runner as v2,"
    " vllm.v1.worker.gpu.async_utils as au\n"
    "print([hasattr(m, '_profilemate_wrapper') for m in ("
    "v1.GPUModelRunner.execute_model, v1.AsyncGPUModelRunnerOutput.get_output,"
    " v2.GPUModelRunner.sample_tokens, au.AsyncOutput.get_output)])\n"
)


def run_python(code, *flags, **env):
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join([str(MARKER_DIR), str(FAKE_VLLM)]))
    environ.pop("PROFILEMATE_MARKER", None)
    environ.update(env)
    done = subprocess.run([sys.executable, *flags, "-c", code], env=environ,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_sitecustomize_patches_later_imports(library):
    assert run_python(IS_PATCHED) == "[True, True, True, True]"


def test_sitecustomize_patches_earlier_imports(library):
    # -S: site (and so sitecustomize) is not imported at start-up; vLLM is
    # imported first and sitecustomize afterwards.
    code = IS_PATCHED.replace("print(", "import sitecustomize\nprint(", 1)
    assert run_python(code, "-S") == "[True, True, True, True]"


def test_sitecustomize_uses_only_find_spec(library):
    code = ("import sys, vllm.v1.worker.gpu_model_runner as v1\n"
            "f = [f for f in sys.meta_path if getattr(f, 'profilemate_finder', False)]\n"
            "print(len(f), hasattr(f[0], 'find_module'), hasattr(v1.__loader__, 'load_module'),"
            " type(v1.__loader__).__name__, v1.__loader__.get_filename().endswith('.py'))")
    assert run_python(code) == "1 False False PatchingLoader True"


def test_scheduler_alone_loads_the_library(library):
    """EngineCore with tensor parallelism imports the scheduler but no
    runner: the library is mapped and the scheduler patched all the same."""
    code = ("import vllm.v1.core.sched.scheduler as s\n"
            "print(hasattr(s.Scheduler.schedule, '_profilemate_wrapper'),"
            " hasattr(s.Scheduler.update_from_output, '_profilemate_wrapper'),"
            " 'libprofilemate_marker' in open('/proc/self/maps').read())")
    # update_from_output is wrapped per instance, once traced (sched.py).
    assert run_python(code) == "True False True"


def test_sitecustomize_switched_off(library):
    assert run_python(IS_PATCHED, PROFILEMATE_MARKER="0") == "[False, False, False, False]"


def test_without_vllm_nothing_happens(library):
    code = ("import importlib.util\n"
            "print(importlib.util.find_spec('vllm') is None,"
            " 'libprofilemate_marker' in open('/proc/self/maps').read())")
    assert run_python(code, PYTHONPATH=str(MARKER_DIR)) == "True False"


def test_entry_point_names_register():
    tomllib = pytest.importorskip("tomllib")
    with open(MARKER_DIR / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["entry-points"]["vllm.general_plugins"] == {
        "profilemate_marker": "profilemate_marker:register"}
    import profilemate_marker

    assert callable(profilemate_marker.register)

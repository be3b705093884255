"""Installing the patch: into modules already imported and, through an
import hook, into those imported later.  Safe to call any number of times.
"""
import logging
import os
import sys
import threading

from . import hook, native, patch, sched

log = logging.getLogger("profilemate_marker")

#: vLLM module -> (class name, patch function) pairs, per docs/vllm-facts.md.
TARGETS = {
    "vllm.v1.worker.gpu_model_runner": (
        ("GPUModelRunner", patch.patch_runner),
        ("AsyncGPUModelRunnerOutput", patch.patch_async_output),
    ),
    "vllm.v1.worker.gpu.model_runner": (("GPUModelRunner", patch.patch_runner),),
    "vllm.v1.worker.gpu.async_utils": (("AsyncOutput", patch.patch_async_output),),
    # EngineCore's: with tensor parallelism it imports no runner module, and
    # this is what loads the probe library there.
    "vllm.v1.core.sched.scheduler": (("Scheduler", sched.patch_scheduler),),
}

_lock = threading.Lock()


def enabled():
    """False when PROFILEMATE_MARKER=0 switches the marker off."""
    return os.environ.get("PROFILEMATE_MARKER", "1").strip() != "0"


def install():
    """Patch vLLM's model runners and scheduler now or whenever they get
    imported.

    Does nothing when PROFILEMATE_MARKER=0.  Never raises: a failure is
    logged and leaves vLLM unpatched.
    """
    if not enabled():
        return
    try:
        hook.install_finder(TARGETS, patch_module)
        for name in TARGETS:
            module = sys.modules.get(name)
            if module is not None:
                patch_module(module)
    except Exception:
        log.exception("profilemate marker: install failed; vLLM left unpatched")


def register():
    """vLLM general-plugin entry point (group vllm.general_plugins)."""
    install()


def patch_module(module):
    """Patch the target classes of one freshly executed vLLM module.

    The probe library is loaded here, on first need, so processes that
    never import a model runner or the scheduler never map it.
    """
    try:
        with _lock:
            if patch.off or not _load_probes():
                return
            for class_name, patch_class in TARGETS[module.__name__]:
                cls = getattr(module, class_name, None)
                if cls is not None:
                    patch_class(cls)
    except Exception:
        patch.switch_off()


def _load_probes():
    if patch.probes is None:
        path = native.find_library()
        if path is None:
            log.warning(
                "profilemate marker: %s*.so not found next to %s (run `make -C marker`);"
                " vLLM left unpatched", native.LIBRARY_PREFIX, native.__file__)
            patch.off = True
            return False
        patch.activate(native.Probes(path))
    return True

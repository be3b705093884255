"""What fires when, through the recording seam (no root needed)."""
import importlib
import logging
import threading
import time

import pytest

from helpers import sched
from profilemate_marker import install, native, patch, register

V1 = "vllm.v1.worker.gpu_model_runner"
V2 = "vllm.v1.worker.gpu.model_runner"

DECODE = dict(cached=[("a", 1), ("b", 1)])
PREFILL = dict(new=[("n", 40, 0, 40)])


def runner_module(name):
    install()
    return importlib.import_module(name)


def fetch_in_output_thread(async_output):
    """Call get_output the way vLLM's worker output thread does."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("out", async_output.get_output()))
    thread.start()
    thread.join()
    return result["out"], thread.ident


def test_v1_sync_step(recorder):
    runner = runner_module(V1).GPUModelRunner()
    recorder.attach()
    assert runner.execute_model(sched(**PREFILL)) is None
    assert recorder.take() == [("step_begin", 1, 1, 40, 1, 40, 0), ("forward_end", 1)]
    output = runner.sample_tokens(None)
    assert type(output).__name__ == "ModelRunnerOutput"
    assert recorder.take() == [("sample_end", 1), ("output_ready", 1)]


@pytest.mark.parametrize("module,kwargs,async_type", [
    (V1, dict(async_scheduling=True), "AsyncGPUModelRunnerOutput"),
    (V2, {}, "AsyncOutput"),
])
def test_async_output_ready_fires_in_output_thread(recorder, module, kwargs, async_type):
    runner = runner_module(module).GPUModelRunner(**kwargs)
    importlib.import_module("vllm.v1.worker.gpu.async_utils")
    recorder.attach()
    for step in (1, 2):
        runner.execute_model(sched(**DECODE))
        async_output = runner.sample_tokens(None)
        assert type(async_output).__name__ == async_type
        assert recorder.take() == [
            ("step_begin", step, 2, 2, 0, 0, 0), ("forward_end", step), ("sample_end", step)]
        output, thread = fetch_in_output_thread(async_output)
        assert output is async_output.get_output()
        assert recorder.events == [("output_ready", step)]
        assert recorder.threads[-1] == thread
        recorder.take()


def _step_end_times(events, step):
    """The times of step's step_end in events, checked to be in order."""
    ends = [e for e in events if e[0] == "step_end"]
    assert [e[1] for e in ends] == [step]
    _, _, forward_ns, sample_ns = ends[0]
    assert 0 < forward_ns <= sample_ns
    return forward_ns, sample_ns


@pytest.mark.parametrize("module,kwargs", [(V1, {}), (V1, dict(async_scheduling=True)), (V2, {})])
def test_step_end_replaces_the_three_later_probes(recorder, module, kwargs):
    """A tracer that attaches step_end gets one probe hit where forward_end,
    sample_end and output_ready are three, with the times they would have
    had, taken in the threads they would have fired in."""
    from conftest import STEP_END_TRACER
    runner = runner_module(module).GPUModelRunner(**kwargs)
    importlib.import_module("vllm.v1.worker.gpu.async_utils")
    recorder.attach(*STEP_END_TRACER)
    for step in (1, 2):
        before = time.monotonic_ns()
        runner.execute_model(sched(**DECODE))
        output = runner.sample_tokens(None)
        if hasattr(output, "get_output"):
            assert recorder.take() == [("step_begin", step, 2, 2, 0, 0, 0)]
            fetched = time.monotonic_ns()
            _, thread = fetch_in_output_thread(output)
            assert recorder.threads[-1] == thread
        else:
            fetched = time.monotonic_ns()
        events = recorder.take()
        assert [e[0] for e in events] == ["step_end"] if hasattr(output, "get_output") else \
            ["step_begin", "step_end"]
        forward_ns, sample_ns = _step_end_times(events, step)
        assert before < forward_ns <= sample_ns <= fetched


def test_step_end_with_an_older_tracer_attached_too(recorder):
    """Two tracers, one of each kind: each gets its probes."""
    runner = runner_module(V1).GPUModelRunner()
    recorder.attach(*native.PROBE_NAMES)
    runner.execute_model(sched(**DECODE))
    runner.sample_tokens(None)
    events = recorder.take()
    assert [e[0] for e in events] == ["step_begin", "forward_end", "sample_end", "step_end", "output_ready"]
    _step_end_times(events, 1)


def test_step_end_attached_mid_step_ends_it_without_times(recorder):
    """step_end's semaphore raised after the step's forward pass: the step
    still ends, its forward_end time not taken (0)."""
    runner = runner_module(V1).GPUModelRunner()
    recorder.attach("step_begin")
    runner.execute_model(sched(**DECODE))
    recorder.attach("step_end")
    runner.sample_tokens(None)
    events = recorder.take()
    assert events[1][:3] == ("step_end", 1, 0) and events[1][3] > 0


def test_async_output_ready_fires_once(recorder):
    runner = runner_module(V2).GPUModelRunner()
    recorder.attach()
    runner.execute_model(sched(**DECODE))
    async_output = runner.sample_tokens(None)
    async_output.get_output()
    async_output.get_output()
    assert [e for e in recorder.take() if e[0] == "output_ready"] == [("output_ready", 1)]


def test_output_returned_by_execute_model_ends_the_step(recorder):
    runner = runner_module(V1).GPUModelRunner(pooling=True)
    recorder.attach()
    output = runner.execute_model(sched(**PREFILL))
    assert output.req_ids == ["n"]
    assert recorder.take() == [
        ("step_begin", 1, 1, 40, 1, 40, 0), ("forward_end", 1), ("sample_end", 1), ("output_ready", 1)]


def test_empty_step_is_not_a_step(recorder):
    module = runner_module(V1)
    runner = module.GPUModelRunner()
    recorder.attach()
    assert runner.execute_model(sched()) is importlib.import_module("vllm.v1.outputs").EMPTY_MODEL_RUNNER_OUTPUT
    runner.execute_model(sched(**DECODE))
    assert recorder.take()[0] == ("step_begin", 1, 2, 2, 0, 0, 0)


@pytest.mark.parametrize("warm_up", ["_dummy_run", "profile_run", "capture_model"])
def test_v1_warm_up_runs_fire_nothing(recorder, warm_up):
    runner = runner_module(V1).GPUModelRunner()
    recorder.attach()
    method = getattr(runner, warm_up)
    method(8) if warm_up == "_dummy_run" else method()
    assert runner.forward_passes > 0
    assert recorder.take() == []
    runner.execute_model(sched(**DECODE))
    assert recorder.take()[0][:2] == ("step_begin", 1)


@pytest.mark.parametrize("call", [
    lambda r, so: r.execute_model(so, dummy_run=True),
    lambda r, so: r.execute_model(so, None, True),
    lambda r, so: r.execute_model(so, is_profile=True, dummy_run=True),
    lambda r, so: r.execute_model(so, is_profile=True),
], ids=["dummy_run", "dummy_run positional", "profile", "is_profile alone"])
def test_v2_dummy_runs_fire_nothing(recorder, call):
    runner = runner_module(V2).GPUModelRunner()
    recorder.attach()
    call(runner, sched(**PREFILL))
    runner.sample_tokens(None).get_output()  # warm-up samples too
    assert runner.forward_passes == 1
    assert recorder.take() == []
    runner.execute_model(sched(**DECODE), None, False)
    assert recorder.take()[0][:2] == ("step_begin", 1)


def test_suppression_is_per_thread(recorder):
    """A warm-up in one thread does not hide a real step in another."""
    module = runner_module(V1)
    inside, release = threading.Event(), threading.Event()

    class BlockingRunner(module.GPUModelRunner):
        def execute_model(self, scheduler_output, intermediate_tensors=None):
            if threading.current_thread() is warm_up:
                inside.set()
                release.wait()
            return super().execute_model(scheduler_output, intermediate_tensors)

    runner = BlockingRunner()
    recorder.attach()
    warm_up = threading.Thread(target=runner._dummy_run, args=(4,))
    warm_up.start()
    inside.wait()
    runner.execute_model(sched(**DECODE))
    release.set()
    warm_up.join()
    assert [e[:2] for e in recorder.take()] == [("step_begin", 1), ("forward_end", 1)]


def test_step_ids_count_steps_while_detached(recorder):
    runner = runner_module(V1).GPUModelRunner()
    for _ in range(3):
        runner.execute_model(sched(**DECODE))
        runner.sample_tokens(None)
    assert recorder.take() == []
    recorder.attach()
    runner.execute_model(sched(**DECODE))
    assert recorder.take()[0][:2] == ("step_begin", 4)


def test_arguments_computed_only_while_attached(recorder, monkeypatch):
    computed = []
    monkeypatch.setattr(patch, "batch_shape", lambda so: computed.append(so) or (0, 0, 0, 0))
    runner = runner_module(V1).GPUModelRunner()
    runner.execute_model(sched(**DECODE))
    assert computed == []
    recorder.attach("step_begin")
    runner.execute_model(sched(**DECODE))
    assert len(computed) == 1


def test_later_probes_follow_their_own_semaphores(recorder):
    runner = runner_module(V1).GPUModelRunner()
    recorder.attach("step_begin", "output_ready")
    runner.execute_model(sched(**DECODE))
    runner.sample_tokens(None)
    assert recorder.take() == [("step_begin", 1, 2, 2, 0, 0, 0), ("output_ready", 1)]


def test_step_begun_before_attach_fires_nothing_later(recorder):
    """A consumer cannot use a step's end without its begin."""
    runner = runner_module(V2).GPUModelRunner()
    runner.execute_model(sched(**DECODE))
    recorder.attach()
    output = runner.sample_tokens(None)
    output.get_output()
    assert recorder.take() == []
    runner.execute_model(sched(**DECODE))
    assert recorder.take()[0][:2] == ("step_begin", 2)


def test_unknown_signature_is_left_alone(recorder, caplog):
    module = runner_module(V1)

    class FutureRunner:
        def execute_model(self, batch):
            return batch

        def sample_tokens(self, grammar_output):
            return None

    with caplog.at_level(logging.WARNING, logger="profilemate_marker"):
        patch.patch_runner(FutureRunner)
    assert not hasattr(FutureRunner.execute_model, patch.WRAPPER_MARK)
    assert "unknown signature" in caplog.text
    assert getattr(module.GPUModelRunner.execute_model, patch.WRAPPER_MARK)


def test_vllm_exception_passes_through(recorder):
    error = ValueError("CUDA out of memory (stand-in)")
    runner = runner_module(V2).GPUModelRunner(raise_in=error)
    recorder.attach()
    with pytest.raises(ValueError) as raised:
        runner.execute_model(sched(**DECODE))
    assert raised.value is error
    assert recorder.take() == [("step_begin", 1, 2, 2, 0, 0, 0), ("forward_end", 1)]
    assert not patch.off


def test_error_in_patch_switches_it_off(recorder, monkeypatch, caplog):
    def broken(scheduler_output):
        raise KeyError("bug in the marker")

    monkeypatch.setattr(patch, "batch_shape", broken)
    runner = runner_module(V1).GPUModelRunner(pooling=True)
    recorder.attach()
    with caplog.at_level(logging.ERROR, logger="profilemate_marker"):
        first = runner.execute_model(sched(**DECODE))
        second = runner.execute_model(sched(**PREFILL))
    assert first.req_ids == ["a", "b"] and second.req_ids == ["n"]
    assert runner.forward_passes == 2
    assert patch.off
    assert recorder.take() == []
    errors = [r for r in caplog.records if r.name == "profilemate_marker"]
    assert len(errors) == 1 and "KeyError" in errors[0].exc_text


def test_error_while_firing_keeps_vllm_output(recorder):
    def broken(step_id):
        raise OSError("probe call failed")

    recorder.probes.sample_end = broken
    runner = runner_module(V2).GPUModelRunner()
    recorder.attach()
    runner.execute_model(sched(**DECODE))
    output = runner.sample_tokens(None)
    assert type(output).__name__ == "AsyncOutput"
    assert patch.off
    assert output.get_output() is output.model_runner_output


def test_loaded_twice_patches_once(recorder):
    register()
    register()
    module = importlib.import_module(V1)
    register()
    install()
    execute_model = module.GPUModelRunner.execute_model
    assert getattr(execute_model, patch.WRAPPER_MARK)
    assert not getattr(execute_model.__wrapped__, patch.WRAPPER_MARK, False)
    assert sum(getattr(f, "profilemate_finder", False) for f in __import__("sys").meta_path) == 1
    recorder.attach("step_begin")
    module.GPUModelRunner().execute_model(sched(**DECODE))
    assert recorder.take() == [("step_begin", 1, 2, 2, 0, 0, 0)]


def test_vllm_imported_before_install(recorder):
    module = importlib.import_module(V2)
    assert not hasattr(module.GPUModelRunner.execute_model, patch.WRAPPER_MARK)
    install()
    assert getattr(module.GPUModelRunner.execute_model, patch.WRAPPER_MARK)


def test_switched_off_by_environment(recorder, monkeypatch):
    monkeypatch.setenv("PROFILEMATE_MARKER", "0")
    module = runner_module(V1)
    assert not hasattr(module.GPUModelRunner.execute_model, patch.WRAPPER_MARK)


def test_missing_library_leaves_vllm_unpatched(recorder, monkeypatch, caplog):
    monkeypatch.setattr(patch, "probes", None)
    monkeypatch.setattr(native, "find_library", lambda: None)
    with caplog.at_level(logging.WARNING, logger="profilemate_marker"):
        module = runner_module(V1)
    assert not hasattr(module.GPUModelRunner.execute_model, patch.WRAPPER_MARK)
    assert "not found" in caplog.text

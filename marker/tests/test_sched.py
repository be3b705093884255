"""The scheduler probe through the recording seam: what is stamped at the
end of schedule(), what sched_step fires after update_from_output, and the
key step_begin carries."""
import importlib
import logging
import pickle

import pytest

from helpers import sched
from profilemate_marker import install, patch, sched as sched_patch

SCHED = "vllm.v1.core.sched.scheduler"
V1 = "vllm.v1.worker.gpu_model_runner"
DECODE = dict(cached=[("a", 1), ("b", 1)])


def scheduler_module():
    install()
    return importlib.import_module(SCHED)


def make_scheduler(num_spec_tokens=0, **kwargs):
    module = scheduler_module()
    scheduler = module.Scheduler(num_spec_tokens=num_spec_tokens, **kwargs)
    return module, scheduler


def output(req_ids, sampled):
    from vllm.v1.outputs import ModelRunnerOutput

    return ModelRunnerOutput(req_ids, sampled)


def run_step(scheduler, planned, sampled=None):
    """schedule() handing out `planned`, then update_from_output."""
    scheduler.outputs.append(planned)
    so = scheduler.schedule()
    ids = list(so.num_scheduled_tokens)
    result = scheduler.update_from_output(so, output(ids, sampled or [[1]] * len(ids)))
    return so, result


def test_stamp_and_fire_values(recorder):
    module, scheduler = make_scheduler(max_num_seqs=8, max_num_scheduled_tokens=256)
    scheduler.running[:] = ["a", "b", "c"]
    scheduler.waiting.extend(["w1", "w2"])
    scheduler.skipped_waiting.append("w3")
    scheduler.kv_cache_manager.usage = 0.8125
    planned = sched(new=[("n", 40, 0, 40)], **DECODE)
    planned.preempted_req_ids = {"p1", "p2"}
    recorder.attach("sched_step")
    so, result = run_step(scheduler, planned)
    assert so is planned and result[0][1].req_ids == ["n", "a", "b"]
    (event,) = recorder.take()
    key = event[1]
    # Without speculative decoding both spec arguments are -1.
    assert event == ("sched_step", key, 812, 3, 3, 2, 42, 256, 3, 8, -1, -1)
    assert key >> 32 and key & 0xFFFFFFFF == 1 and key < 1 << 63
    assert so._profilemate_sched[0] == key


def test_schedule_arguments_pass_through(recorder):
    _, scheduler = make_scheduler()
    scheduler.outputs.extend(sched(**DECODE) for _ in range(3))
    scheduler.schedule()
    scheduler.schedule(True)
    scheduler.schedule(throttle_prefills=True)
    assert scheduler.throttled == [False, True, True]
    with pytest.raises(TypeError):
        scheduler.schedule(True, "no such parameter")


def test_kv_usage_rounds_to_permille(recorder):
    _, scheduler = make_scheduler()
    recorder.attach("sched_step")
    for usage, permille in ((0.0, 0), (0.0004, 0), (0.0006, 1), (0.9996, 1000), (1.0, 1000)):
        scheduler.kv_cache_manager.usage = usage
        run_step(scheduler, sched(**DECODE))
        assert recorder.take()[0][2] == permille, usage


def test_keys_count_stamped_steps_per_scheduler(recorder):
    _, first = make_scheduler()
    _, second = make_scheduler()
    run_step(first, sched(**DECODE))  # untraced: not stamped, not counted
    recorder.attach("sched_step")
    keys = [run_step(s, sched(**DECODE))[0]._profilemate_sched[0]
            for s in (first, second, first, first)]
    assert [k & 0xFFFFFFFF for k in keys] == [1, 1, 2, 3]
    assert len({k >> 32 for k in keys}) == 2, "each scheduler its own nonce"
    assert [e[1] for e in recorder.take()] == keys


def test_counter_wraps_to_a_new_nonce(recorder, monkeypatch):
    _, scheduler = make_scheduler()
    recorder.attach("sched_step")
    run_step(scheduler, sched(**DECODE))
    old = scheduler._profilemate_nonce
    scheduler._profilemate_count = sched_patch.COUNTER_MAX
    key = run_step(scheduler, sched(**DECODE))[0]._profilemate_sched[0]
    assert key & 0xFFFFFFFF == 1 and key != old << 32 | 1


def test_empty_schedule_is_not_stamped(recorder):
    _, scheduler = make_scheduler()
    recorder.attach("sched_step")
    so, _ = run_step(scheduler, sched())
    assert not hasattr(so, "_profilemate_sched")
    assert recorder.take() == []
    run_step(scheduler, sched(**DECODE))
    assert recorder.take()[0][1] & 0xFFFFFFFF == 1


def test_untraced_computes_nothing(recorder):
    _, scheduler = make_scheduler()
    del scheduler.kv_cache_manager  # would raise if read
    so, _ = run_step(scheduler, sched(**DECODE))
    assert not hasattr(so, "_profilemate_sched") and not sched_patch.off
    assert recorder.take() == []


def test_stamped_then_detached_fires_nothing(recorder):
    _, scheduler = make_scheduler()
    recorder.attach("sched_step")
    scheduler.outputs.append(sched(**DECODE))
    so = scheduler.schedule()
    recorder.detach()
    scheduler.update_from_output(so, output(["a", "b"], [[1], [1]]))
    assert recorder.take() == []


@pytest.mark.parametrize("case,drafts,sampled,finishing,want", [
    ("all accepted", {"a": 3, "b": 3}, [[1, 2, 3, 4], [1, 2, 3, 4]], (), (6, 6)),
    ("prefix accepted", {"a": 3, "b": 3}, [[1, 2], [1]], (), (6, 1)),
    ("no drafts this step", {}, [[1], [1]], (), (0, 0)),
    ("request without drafts", {"a": 2}, [[1, 2, 3], [1]], (), (2, 2)),
    ("finished while running", {"a": 2, "b": 2}, [[1, 2], [1, 2, 3]], ("a",), (4, 3)),
])
def test_spec_counts(recorder, case, drafts, sampled, finishing, want):
    module, scheduler = make_scheduler(num_spec_tokens=3)
    scheduler.requests = {r: module.Request(r) for r in ("a", "b")}
    # update_from_output frees these: the counts must be taken before.
    scheduler.finishing = set(finishing)
    recorder.attach("sched_step")
    run_step(scheduler, sched(cached=[("a", 4), ("b", 4)], spec=drafts), sampled)
    assert recorder.take()[0][-2:] == want, case


def test_spec_counts_skip_what_vllm_skips(recorder):
    module, scheduler = make_scheduler(num_spec_tokens=2)
    scheduler.requests = {"a": module.Request("a"), "b": module.Request("b", finished=True),
                          "c": module.Request("c", async_tokens_to_discard=1),
                          "d": module.Request("d")}
    # "e" is gone (aborted); "d"'s sampled list is empty (nothing sampled).
    planned = sched(cached=[(r, 3) for r in "abcde"], spec={r: 2 for r in "abcde"})
    planned.num_invalid_spec_tokens = {"a": 1}
    recorder.attach("sched_step")
    run_step(scheduler, planned, [[1, 2], [1, 2, 3], [1, 2, 3], [], [1]])
    assert recorder.take()[0][-2:] == (1, 1)


def test_step_begin_carries_the_key_also_after_pickling(recorder):
    _, scheduler = make_scheduler()
    runner = importlib.import_module(V1).GPUModelRunner()
    recorder.attach()
    scheduler.outputs.append(sched(**DECODE))
    so = scheduler.schedule()
    key = so._profilemate_sched[0]
    # A tensor-parallel worker receives the SchedulerOutput pickled.
    for received in (so, pickle.loads(pickle.dumps(so))):
        runner.execute_model(received)
        runner.sample_tokens(None)
    scheduler.update_from_output(so, output(["a", "b"], [[1], [1]]))
    events = recorder.take()
    assert [e for e in events if e[0] == "step_begin"] == [
        ("step_begin", 1, 2, 2, 0, 0, key), ("step_begin", 2, 2, 2, 0, 0, key)]
    assert events[-1][:2] == ("sched_step", key), "fires after the forward passes"


def test_async_scheduling_order(recorder):
    """The scheduler runs a step ahead: step N+1 is scheduled (and begun)
    before step N's output is processed; each key still names its step."""
    _, scheduler = make_scheduler()
    runner = importlib.import_module(V1).GPUModelRunner(async_scheduling=True)
    recorder.attach()
    scheduled = []
    for _ in range(2):
        scheduler.outputs.append(sched(**DECODE))
        scheduled.append(scheduler.schedule())
        runner.execute_model(scheduled[-1])
        runner.sample_tokens(None).get_output()
    for so in scheduled:
        scheduler.update_from_output(so, output(["a", "b"], [[1], [1]]))
    keys = [so._profilemate_sched[0] for so in scheduled]
    events = recorder.take()
    assert [e[-1] for e in events if e[0] == "step_begin"] == keys
    assert [e[1] for e in events if e[0] == "sched_step"] == keys
    assert [e[0] for e in events].index("sched_step") > 5, "both steps began first"


def test_unstamped_output_gives_key_zero(recorder):
    runner = importlib.import_module(V1).GPUModelRunner()
    install()
    recorder.attach()
    runner.execute_model(sched(**DECODE))
    assert recorder.take()[0] == ("step_begin", 1, 2, 2, 0, 0, 0)


def test_missing_field_switches_only_the_scheduler_off(recorder, caplog):
    _, scheduler = make_scheduler()
    del scheduler.max_num_running_reqs
    runner = importlib.import_module(V1).GPUModelRunner()
    recorder.attach()
    with caplog.at_level(logging.WARNING, logger="profilemate_marker"):
        for _ in range(2):
            so, result = run_step(scheduler, sched(**DECODE))
            assert result[0][1].req_ids == ["a", "b"]
    warnings = [r for r in caplog.records if r.name == "profilemate_marker"]
    assert len(warnings) == 1 and "max_num_running_reqs" in warnings[0].getMessage()
    assert sched_patch.off and not patch.off
    assert not hasattr(so, "_profilemate_sched")
    runner.execute_model(so)
    assert [e[0] for e in recorder.take()] == ["step_begin", "forward_end"]


def test_missing_output_field_switches_it_off(recorder, caplog):
    _, scheduler = make_scheduler(num_spec_tokens=2)
    recorder.attach("sched_step")
    scheduler.outputs.append(sched(cached=[("a", 3)], spec={"a": 2}))
    so = scheduler.schedule()
    with caplog.at_level(logging.WARNING, logger="profilemate_marker"):
        scheduler.update_from_output(so, object())
    assert sched_patch.off and "sampled_token_ids" in caplog.text
    assert recorder.take() == []


def test_vllm_exception_passes_through(recorder):
    error = RuntimeError("scheduler failed (stand-in)")
    _, scheduler = make_scheduler(raise_in=error)
    recorder.attach("sched_step")
    with pytest.raises(RuntimeError) as raised:
        scheduler.schedule()
    assert raised.value is error
    with pytest.raises(RuntimeError) as raised:
        scheduler.update_from_output(sched(**DECODE), output([], []))
    assert raised.value is error and not sched_patch.off
    assert recorder.take() == []


def test_error_in_patch_switches_the_scheduler_off(recorder, caplog, monkeypatch):
    def broken(*args):
        raise ZeroDivisionError("bug in the marker")

    monkeypatch.setattr(sched_patch, "spec_counts", broken)
    _, scheduler = make_scheduler()
    recorder.attach("sched_step")
    with caplog.at_level(logging.ERROR, logger="profilemate_marker"):
        _, first = run_step(scheduler, sched(**DECODE))
        _, second = run_step(scheduler, sched(**DECODE))
    assert first[0][1].req_ids == second[0][1].req_ids == ["a", "b"]
    assert sched_patch.off and not patch.off
    errors = [r for r in caplog.records if r.name == "profilemate_marker"]
    assert len(errors) == 1 and "ZeroDivisionError" in errors[0].exc_text
    assert recorder.take() == []


def test_unknown_update_signature_is_left_alone(recorder, caplog):
    class FutureScheduler:
        def schedule(self):
            return None

        def update_from_output(self, outputs):
            return outputs

    with caplog.at_level(logging.WARNING, logger="profilemate_marker"):
        sched_patch.patch_scheduler(FutureScheduler)
    assert not hasattr(FutureScheduler.schedule, patch.WRAPPER_MARK)
    assert "unknown signatures" in caplog.text


def test_patched_once_and_inherited(recorder):
    module = scheduler_module()
    install()

    class AsyncScheduler(module.Scheduler):  # vLLM's overrides neither method
        pass

    schedule = AsyncScheduler.schedule
    assert getattr(schedule, patch.WRAPPER_MARK)
    assert not getattr(schedule.__wrapped__, patch.WRAPPER_MARK, False)
    recorder.attach("sched_step")
    run_step(AsyncScheduler(), sched(**DECODE))
    assert len(recorder.take()) == 1


def test_update_from_output_is_wrapped_only_while_traced(recorder):
    module, scheduler = make_scheduler()
    # Untraced: the class's own method, no wrapper frame at all.
    run_step(scheduler, sched(**DECODE))
    assert "update_from_output" not in vars(scheduler) and recorder.take() == []
    recorder.attach("sched_step")
    run_step(scheduler, sched(**DECODE))
    assert "update_from_output" in vars(scheduler)
    assert [e[0] for e in recorder.take()] == ["sched_step"]
    # A step stamped while traced still fires if its update comes after
    # the schedule of the next one.
    scheduler.outputs.append(sched(**DECODE))
    first = scheduler.schedule()
    recorder.detach()
    scheduler.outputs.append(sched(**DECODE))
    second = scheduler.schedule()
    recorder.attach("sched_step")
    scheduler.update_from_output(first, output(list(first.num_scheduled_tokens), [[1], [1]]))
    assert [e[0] for e in recorder.take()] == ["sched_step"]
    recorder.detach()
    # The first unstamped step after the tracer left removes the wrapper.
    scheduler.update_from_output(second, output(list(second.num_scheduled_tokens), [[1], [1]]))
    assert "update_from_output" not in vars(scheduler) and recorder.take() == []
    run_step(scheduler, sched(**DECODE))
    assert "update_from_output" not in vars(scheduler)

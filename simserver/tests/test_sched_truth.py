"""The scheduler's known truth: KV pressure that forces preemptions,
queues and budgets, speculative decoding with a known acceptance rate,
and the truth files that record them (worker rows, the engine's rows and
totals)."""
import csv
import json
from pathlib import Path

import pytest
from conftest import start_serve

from simvllm.kvcache import blocks_for
from simvllm.model import CAPTURE_SIZES, MAX_CAPTURE_SIZE, MAX_NUM_TOKENS, dispatch_mode
from simvllm.scheduler import (MAX_NUM_SEQS, MAX_SPEC_TOKENS, SchedConfig, Scheduler, accepted,
                               dummy_scheduler_output, min_kv_blocks)
from simvllm.truth import SCHED_COLUMNS, totals

STEPS = 3000


def plans(config: SchedConfig, seed: int = 0, steps: int = STEPS):
    """(scheduler, [(SchedulerOutput, StepPlan)]) of `steps` steps."""
    sched = Scheduler(seed, config=config)
    return sched, [sched.schedule(0.0) for _ in range(steps)]


def test_graphs_are_captured_as_vllm_sizes_them_and_bigger_steps_run_eagerly():
    # vLLM's default largest capture size, with the most draft tokens.
    assert MAX_CAPTURE_SIZE == min(2 * MAX_NUM_SEQS * (1 + MAX_SPEC_TOKENS), 512) < MAX_NUM_TOKENS
    assert max(CAPTURE_SIZES) == MAX_CAPTURE_SIZE
    assert MAX_NUM_SEQS * (1 + MAX_SPEC_TOKENS) <= MAX_CAPTURE_SIZE  # every uniform decode has its graph
    # Under load the scheduler makes steps on both sides of it.
    sched = Scheduler(0)
    sizes = [sched.schedule(0.0)[1].num_tokens for _ in range(400)]
    assert min(sizes) <= MAX_CAPTURE_SIZE < max(sizes)
    assert dispatch_mode(dummy_scheduler_output(MAX_CAPTURE_SIZE + 1), enforce_eager=False) == "eager"
    assert dispatch_mode(dummy_scheduler_output(MAX_CAPTURE_SIZE), enforce_eager=False) == "piecewise"


def test_kv_pressure_forces_preemptions():
    """Preemptions come from running out of blocks: none with a KV cache
    that holds every request, more the smaller it is."""
    counts = {}
    for blocks in (4000, SchedConfig.kv_blocks, min_kv_blocks(2)):
        _, steps = plans(SchedConfig(kv_blocks=blocks))
        counts[blocks] = sum(plan.preempted_reqs for _, plan in steps)
    assert counts[4000] == 0
    assert 0 < counts[SchedConfig.kv_blocks] < counts[min_kv_blocks(2)], counts


def test_kv_usage_is_the_blocks_running_requests_hold():
    sched = Scheduler(0, config=SchedConfig(kv_blocks=100))
    peak = 0
    for _ in range(STEPS):
        _, plan = sched.schedule(0.0)
        held = sum(r.blocks for r in sched.running)
        assert held == sched.kv.used
        assert plan.kv_usage_permille == round(1000 * held / 100)
        assert all(r.blocks >= blocks_for(r.computed) for r in sched.running)
        peak = max(peak, plan.kv_usage_permille)
    assert peak > 900, "the small cache fills up"


def test_a_preempted_request_is_resumed_and_recomputed():
    _, steps = plans(SchedConfig(kv_blocks=100), steps=600)
    preempted = {}
    for i, (out, plan) in enumerate(steps):
        assert plan.preempted_reqs == len(out.preempted_req_ids)
        for req_id in out.preempted_req_ids:
            preempted[req_id] = i
    assert len(preempted) > 5
    for req_id, i in preempted.items():
        later = [(out, j) for j, (out, _) in enumerate(steps) if j > i
                 and req_id in out.scheduled_cached_reqs.resumed_req_ids]
        if not later:
            continue  # preempted near the end of the run
        out, j = later[0]
        index = out.scheduled_cached_reqs.req_ids.index(req_id)
        assert out.scheduled_cached_reqs.num_computed_tokens[index] == 0, "recomputed"


def test_queues_and_budgets():
    _, steps = plans(SchedConfig())
    assert all(plan.num_tokens <= plan.token_budget == MAX_NUM_TOKENS for _, plan in steps)
    assert all(max(plan.batch_size, plan.running_reqs) <= plan.max_num_seqs == MAX_NUM_SEQS
               for _, plan in steps)
    assert any(plan.num_tokens == MAX_NUM_TOKENS for _, plan in steps), "token budget used up"
    assert sum(plan.waiting_reqs > 0 for _, plan in steps) > STEPS / 10, "requests queue"
    # With blocks to spare, max_num_seqs is what limits the batch.
    _, roomy = plans(SchedConfig(kv_blocks=4000))
    assert any(plan.batch_size == MAX_NUM_SEQS for _, plan in roomy), "max_num_seqs reached"


@pytest.mark.parametrize("spec_tokens,acceptance", [(2, 0.6), (4, 0.8), (3, 0.3)])
def test_spec_acceptance_rate_is_known(spec_tokens, acceptance):
    """Each draft agrees with probability p; the first disagreeing one ends
    the accepted run, so the expected rate is (p + ... + p^k) / k."""
    config = SchedConfig(spec="always", spec_tokens=spec_tokens, spec_acceptance=acceptance)
    _, steps = plans(config)
    proposed = sum(plan.spec_proposed for _, plan in steps)
    got = sum(plan.spec_accepted for _, plan in steps) / proposed
    want = sum(acceptance ** i for i in range(1, spec_tokens + 1)) / spec_tokens
    assert abs(got - want) < 0.03, (got, want)
    for out, plan in steps:
        drafts = out.scheduled_spec_decode_tokens.values()
        assert plan.spec_proposed == sum(map(len, drafts))
        assert plan.spec_accepted == sum(accepted(d) for d in drafts)
        decodes = plan.batch_size - plan.num_prefill_reqs
        assert plan.spec_proposed == spec_tokens * decodes


def test_steps_are_deterministic_for_a_seed():
    config = SchedConfig(spec="always", kv_blocks=100)
    runs = [[plan for _, plan in plans(config, seed)[1]] for seed in (5, 5, 6)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_spec_off_is_unknown():
    _, steps = plans(SchedConfig(spec="off"), steps=300)
    assert {(plan.spec_proposed, plan.spec_accepted) for _, plan in steps} == {(-1, -1)}
    assert not any(out.scheduled_spec_decode_tokens for out, _ in steps)


def read_csv(path: Path):
    return list(csv.DictReader(path.open()))


def test_truth_files_carry_the_scheduler_values(tmp_path):
    """Every rank's row of a step carries that scheduler step's values, the
    engine's row of it the same, and the engine's totals sum its rows; the
    run replays from the seed with the same options."""
    args = ["--workers", 2, "--spec", "always", "--spec-tokens", 3, "--spec-acceptance", 0.7,
            "--kv-blocks", 90, "--duration", 2]
    proc = start_serve(*args, "--truth-dir", tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    server = json.loads((tmp_path / "server.json").read_text())
    engine = server["engine_core"]["pid"]
    rows = read_csv(tmp_path / f"sched_{engine}.csv")
    assert len(rows) > 100
    by_step = {int(r["step"]): r for r in rows}
    for w in server["workers"]:
        for r in read_csv(tmp_path / f"truth_{w['pid']}.csv"):
            e = by_step[int(r["step"])]
            assert int(r["engine_pid"]) == engine
            assert [r[c] for c in SCHED_COLUMNS] == [e[c] for c in SCHED_COLUMNS]
            assert (r["num_tokens"], r["batch_size"]) == (e["num_tokens"], e["batch_size"])
    for r in rows:
        assert int(r["update_begin_ns"]) <= int(r["update_end_ns"])
    sched = Scheduler(0, config=SchedConfig(kv_blocks=90, spec="always", spec_tokens=3,
                                            spec_acceptance=0.7))
    for r in rows:
        _, plan = sched.schedule(0.0)
        assert [int(r[c]) for c in SCHED_COLUMNS] == list(plan.sched_values()), r["step"]
    got = json.loads((tmp_path / f"sched_totals_{engine}.json").read_text())
    assert got == totals(rows)
    assert got["sched_steps"] == len(rows) and got["preemptions"] > 0
    assert 0 < got["spec_accepted"] < got["spec_proposed"]


@pytest.mark.parametrize("args,message", [
    (["--kv-blocks", "10"], "--kv-blocks must be at least 63"),
    (["--spec-tokens", "9"], "--spec-tokens must be 1 to 8"),
    (["--spec-acceptance", "1.5"], "--spec-acceptance must be 0 to 1"),
    (["--spec", "sometimes"], "invalid choice: 'sometimes'"),
])
def test_bad_scheduler_options_are_refused(args, message):
    proc = start_serve(*args)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert message in err

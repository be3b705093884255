"""Checks of the real-vLLM validation without a GPU: its statistics, its
metrics parser, and the whole script run against a stand-in `vllm serve`
that speaks the same HTTP (completions, /metrics counters).

    python3 -m pytest gpu/test_vllm_validate.py
"""
import json
import math
import os
import re
import statistics
import subprocess
import sys
import textwrap
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import tracerrun  # noqa: E402
import vllm_validate  # noqa: E402
import vllmserve  # noqa: E402
import vllmstats  # noqa: E402


def test_t95_matches_tabulated_quantiles():
    assert vllmstats.t95(1) == pytest.approx(12.706)
    assert vllmstats.t95(7) == pytest.approx(2.365)
    assert vllmstats.t95(22) == pytest.approx(2.086)  # 20's, slightly wider
    assert vllmstats.t95(500) == pytest.approx(1.960)
    assert vllmstats.t95(0) == math.inf


def test_mean_ci():
    m, h, sd = vllmstats.mean_ci([0.98, 1.00, 0.99, 1.01])
    assert m == pytest.approx(0.995)
    assert sd == pytest.approx(0.012910, rel=1e-3)
    assert h == pytest.approx(3.182 * sd / 2)
    assert vllmstats.mean_ci([]) == (None, None, None)


def test_ratio_ci_averages_on_the_log_scale():
    # An A/A test: identical servers, each pair as likely r as 1/r. The
    # arithmetic mean of such ratios is above 1 (by about sd²/2); the
    # geometric mean is 1.
    r = vllmstats.ratio_ci([1.2, 1 / 1.2, 1.1, 1 / 1.1])
    assert r.mean == pytest.approx(1.0)
    assert statistics.fmean([1.2, 1 / 1.2, 1.1, 1 / 1.1]) > 1.005
    logs = [math.log(1.2), -math.log(1.2), math.log(1.1), -math.log(1.1)]
    assert r.sd == pytest.approx(statistics.stdev(logs))
    h = 3.182 * statistics.stdev(logs) / 2
    assert (r.lo, r.hi) == (pytest.approx(math.exp(-h)), pytest.approx(math.exp(h)))
    assert r.half == pytest.approx((r.hi - r.lo) / 2)
    assert vllmstats.ratio_ci([0.97]) == (pytest.approx(0.97), math.inf, 0.0, None, None)
    assert vllmstats.ratio_ci([]) == (None, None, None, None, None)


def test_runs_pool_by_inverse_variance():
    # A quiet run around 0.98 and a noisy one around 0.94: the pooled mean
    # leans to the quiet run by its weight, n / variance of the logs.
    quiet = [0.98 * math.exp(d) for d in (0.01, -0.01, 0.02, -0.02)]
    noisy = [0.94 * math.exp(d) for d in (0.2, -0.2)]
    p = vllmstats.pooled_ratio_ci([quiet, noisy])
    lq, ln = [math.log(x) for x in quiet], [math.log(x) for x in noisy]
    wq, wn = 4 / statistics.variance(lq), 2 / statistics.variance(ln)
    m = (wq * statistics.fmean(lq) + wn * statistics.fmean(ln)) / (wq + wn)
    assert p.mean == pytest.approx(math.exp(m))
    assert 0.979 < p.mean < 0.98  # pooled pair by pair it would be 0.966
    h = vllmstats.t95(4) / math.sqrt(wq + wn)
    assert (p.lo, p.hi) == (pytest.approx(math.exp(m - h)), pytest.approx(math.exp(m + h)))
    # A run of one pair has no noise to weigh: left out; with one run left,
    # its ratios as they are.
    assert vllmstats.pooled_ratio_ci([quiet, noisy, [0.5]]) == p
    assert vllmstats.pooled_ratio_ci([quiet, [0.5]]) == vllmstats.ratio_ci(quiet + [0.5])


def batch(pair, window, server, traced, wall, steps=100, cpu=1.0, **kw):
    b = dict(mode="graph", config="default", pair=pair, window=window, server=server, traced=traced,
             wall_s=wall, gen_tokens=1000, steps=steps, step_tokens=1500, prompt_tokens=500, cpu_user=cpu,
             cpu_sys=0.1)
    b.update(kw)
    return b


def test_overhead_cancels_the_servers_difference_and_the_machines_drift():
    # Server 1 is 10% faster than server 0; the tracer costs 4%; the
    # machine is twice as slow in the second pair.
    def win(pair, w, traced, slow):
        walls = [2.0 * slow, 2.0 * slow / 1.1]
        walls[traced] *= 1.04
        return [batch(pair, w, i, i == traced, walls[i], cpu=1.0 + 0.1 * (i == traced)) for i in (0, 1)]
    bs = win(0, 0, 0, 1) + win(0, 1, 1, 1) + win(1, 0, 1, 2) + win(1, 1, 0, 2)
    o = vllmstats.overhead(bs)
    assert o["pairs"] == 2
    assert o["tokens"].mean == pytest.approx(1 / 1.04) and o["tokens"].sd == pytest.approx(0.0, abs=1e-12)
    assert o["steps"].mean == pytest.approx(1 / 1.04)
    assert o["asymmetry"].mean == pytest.approx(1.1)
    assert o["cpu_ms_per_step"][0] == pytest.approx(1.0)  # 0.1 s more over 100 steps


def test_cpu_per_step_under_steady_load_counts_each_servers_own_steps():
    # Windows of the same 10 s and the same CPU seconds (the servers spin
    # while they wait); the traced server ran 95 steps to the other's 100.
    bs = [batch(p, w, i, i == w ^ (p % 2), 10.0, steps=95 if i == w ^ (p % 2) else 100, cpu=12.0)
          for p in range(2) for w in range(2) for i in range(2)]
    o = vllmstats.overhead(bs)
    per_step = lambda steps: (12.0 + 0.1) / steps * 1e3
    assert o["cpu_ms_per_step"][0] == pytest.approx(per_step(95) - per_step(100))
    assert o["sys_ms_per_step"][0] == pytest.approx(0.1e3 / 95 - 0.1e3 / 100)
    assert o["steps"].mean == pytest.approx(0.95)


def test_one_server_traced_and_untraced_in_turn():
    # One server, 2% slower traced; its speed drifts by 1% a pair, which
    # the order alternating between pairs (traced first, then second)
    # spreads evenly over both windows.
    bs = []
    for p in range(6):
        speed = 1 + 0.01 * p
        for w in range(2):
            traced = w == p % 2
            bs.append(batch(p, w, 0, traced, 2.0 / (speed * (0.98 if traced else 1.0)), servers=1))
    o = vllmstats.overhead(bs)
    assert o["pairs"] == 6 and o["tokens"].mean == pytest.approx(0.98, abs=1e-9)
    assert o["asymmetry"].mean is None  # no second server to compare
    assert o["cpu_ms_per_step"][0] == pytest.approx(0.0)
    # A pair cut off after its first window is left out.
    assert vllmstats.overhead(bs + [batch(6, 0, 0, True, 1.0, servers=1)]) == o


def test_a_window_without_its_partner_is_left_out():
    bs = [batch(0, 0, 0, False, 2.0), batch(0, 0, 1, True, 2.1), batch(0, 1, 0, True, 2.1)]
    assert vllmstats.overhead(bs)["pairs"] == 1 and vllmstats.overhead(bs)["tokens"].mean is None


def test_report_pools_the_pairs_of_several_runs(tmp_path, capsys):
    # Two runs numbering their pairs alike: 1.04 and 1.06 slower traced.
    def run(path, slow):
        recs = [batch(p, w, i, i == w ^ (p % 2), 2.0 * (slow if i == w ^ (p % 2) else 1.0))
                for p in range(2) for w in range(2) for i in range(2)]
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    run(tmp_path / "a.jsonl", 1.04)
    run(tmp_path / "b.jsonl", 1.06)
    pooled = vllm_validate.load_runs([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")])
    o = vllmstats.overhead(pooled)
    # Each run's pairs alike: no noise to weight by, so the pairs pool as one.
    assert o["pairs"] == 4 and o["tokens"].mean == pytest.approx((1 / 1.04 / 1.06) ** 0.5)
    assert vllmstats.overhead(vllm_validate.load_runs([str(tmp_path / "a.jsonl")] * 2))["pairs"] == 4
    assert vllm_validate.main(["--report", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"),
                               "--plan", "graph:default"]) == 0
    assert "graph       default            4  " in capsys.readouterr().out
    assert vllm_validate.main(["--report", str(tmp_path / "none.jsonl"), "--plan", "graph:default"]) == 1
    assert "none.jsonl" in capsys.readouterr().err


def test_agreement_sums_traced_batches():
    bs = [batch(0, 0, 0, False, 2.0),
          batch(0, 0, 1, True, 2.0, tracer_steps=99, tracer_tokens=1500, tracer_prefill_tokens=500,
                tracer_launches=2000, tracer_graphs=99, tracer_syncs=300)]
    a = vllmstats.agreement(bs)
    assert a["steps"] == (99, 100) and a["tokens"] == (1500, 1500) and a["prompt"] == (500, 500)
    assert a["launches_per_step"] == pytest.approx(2000 / 99)
    assert a["worst_batch_steps"] == pytest.approx(0.01)
    assert vllmstats.agreement([batch(0, 0, 0, False, 2.0)]) is None


def test_agreement_of_steady_windows_over_the_window_or_the_whole_trace():
    # The window saw 100 steps; the trace around it 130, all of which the
    # tracer timed.
    w = batch(0, 0, 1, True, 2.0, tracer_steps=130, tracer_tokens=1950, tracer_prefill_tokens=650,
              tracer_launches=0, tracer_graphs=0, tracer_syncs=0, trace_steps=130, trace_step_tokens=1950,
              trace_prompt_tokens=650, tracer_sched_sched_steps=130, trace_preemptions=0, preemptions=0,
              trace_spec_drafts=0, spec_drafts=0, trace_spec_accepted=0, spec_accepted=0)
    a = vllmstats.agreement([w])
    assert a["span"] == "trace" and a["steps"] == (130, 130) and a["tokens"] == (1950, 1950)
    assert a["prompt"] == (650, 650) and a["worst_batch_steps"] == 0
    assert vllmstats.sched_agreement([w])["sched_steps"] == (130, 130)
    assert vllmstats.overhead([batch(0, 0, 0, False, 2.0), w])["pairs"] == 1  # the rates stay the window's
    # Where the tracer gave the steps out within the window (99 of them),
    # those are set against the window's counters.
    inside = dict(w, window_tracer_steps=99, window_tracer_tokens=1490, window_tracer_prefill_tokens=500)
    a = vllmstats.agreement([inside])
    assert a["span"] == "window" and a["steps"] == (99, 100) and a["tokens"] == (1490, 1500)
    assert a["prompt"] == (500, 500) and a["worst_batch_steps"] == pytest.approx(0.01)
    assert a["launches_per_step"] == 0  # per step of the whole trace, as before
    # One window without them and the whole trace stands for all.
    assert vllmstats.agreement([inside, w])["span"] == "trace"
    # The scheduler's too: the rows joined to a scheduler step within the
    # window against the window's counters, the whole trace's join count.
    sched_in = dict(inside, tracer_sched_joined=129, window_tracer_sched_sched_steps=98,
                    window_tracer_sched_preemptions=2, window_tracer_sched_spec_proposed=0,
                    window_tracer_sched_spec_accepted=0, preemptions=3)
    a = vllmstats.sched_agreement([sched_in])
    assert a["span"] == "window" and a["sched_steps"] == (98, 100) and a["preemptions"] == (2, 3)
    assert a["joined"] == 129
    assert vllmstats.sched_agreement([sched_in, w])["sched_steps"] == (130 + 130, 130 + 130)
    assert "graph       default        window 98 / 100" in vllmstats.table([sched_in], [("graph", "default")])
    # Pooled in a table, each keeps its own span: a row over the windows
    # that have their steps, a row over the traces of those that do not.
    text = vllmstats.table([sched_in, w], [("graph", "default")])
    assert "graph       default        window 99 / 100" in text
    assert "graph       default        trace  130 / 130" in text
    assert re.search(r"window 98 / 100 = 0\.9800 +129 2 / 3", text)
    assert re.search(r"trace  130 / 130 = 1\.0000 +0 0 / 0", text)


def test_go_durations_and_the_window_offset_that_keeps_the_launch_duty():
    assert tracerrun.go_seconds("1s") == 1 and tracerrun.go_seconds("10s") == 10
    assert tracerrun.go_seconds("500ms") == 0.5 and tracerrun.go_seconds("1m30s") == 90
    assert tracerrun.go_seconds("1.5s") == 1.5
    for bad in ("", "10", "1s!", "-1s", "s"):
        with pytest.raises(ValueError):
            tracerrun.go_seconds(bad)
    off = tracerrun.duty_offset
    assert off(10, (1, 10)) == 0 and off(20, (1, 10)) == 0  # a whole cycle holds its share
    assert off(2.5, (1, 10)) == pytest.approx(0.75) and off(5, (0.5, 5)) == 0
    assert off(2.5, None) == 0  # launches off, or all
    # The window [offset, offset + w] holds on * w / every of probed time.
    for w in (1, 2.5, 4, 9.5):
        o = off(w, (1, 10))
        assert min(1, o + w) - o == pytest.approx(w / 10)


def test_a_traced_batch_begins_where_it_holds_the_launch_duty(monkeypatch):
    """A batch of the seconds the last one took starts where a window of
    that length holds the sampling's share of probed launches (0.75 s after
    the attach for 2.5 s in a 1s-in-10s trace), not over the trace's first
    probed second; without sampling, or before a batch's length is known,
    after the settle."""
    import windows

    class FakeServer:
        def metrics(self):
            return {}

        def cpu_seconds(self):
            return (0.0, 0.0)

        def run_batch(self, reqs, concurrency):
            started.append(time.monotonic())
            return 2.5, 100

    class FakeTracer:
        def __init__(self, sampling):
            self.sampling = sampling

        def wait_attached(self):
            attached.append(time.monotonic())

        def duty_offset(self, window):
            return tracerrun.duty_offset(window, self.sampling)

        def stop(self):
            return 0.0

        def results(self):
            return {}

    monkeypatch.setattr(windows.vllmserve, "delta", lambda m0, m1: {k: 0 for k in (
        vllmserve.STEPS, vllmserve.STEP_TOKENS, vllmserve.PROMPT, vllmserve.GENERATED,
        vllmserve.PREEMPTIONS, vllmserve.DRAFTS, vllmserve.ACCEPTED)})
    for sampling, expect, want in (((1, 10), 2.5, 0.75), ((1, 10), None, 0.2), (None, 2.5, 0.2),
                                   ((1, 10), 12, 0.2)):
        started, attached = [], []
        recs = windows.batch_window([FakeServer(), FakeServer()], 1, [], 1, FakeTracer(sampling),
                                    settle=0.2, expect=expect)
        assert [r["offset_s"] for r in recs] == [want, want], (sampling, expect)
        waited = min(started) - attached[0]
        assert want - 0.01 <= waited < want + 0.15, (sampling, expect, waited)
        assert [r["traced"] for r in recs] == [False, True]


def test_the_sampling_is_read_off_the_line_after_the_attach_summary():
    """The tracer's line names the window of launches, or of GPU waits where
    launches are not sampled (the sampled classes share their windows)."""
    read = lambda line: tracerrun.SAMPLING.search(line) and tracerrun.SAMPLING.search(line).groups()
    assert read("  kernel launches counted 1s in every 10s and GPU waits timed in the same seconds "
                "(--launches=all, --syncs=all: every step)") == ("1s", "10s")
    assert read("  kernel launches not counted (--launches=off); GPU waits timed 500ms in every 5s "
                "(--syncs=all: every step)") == ("500ms", "5s")
    assert read("  kernel launches counted 1s in every 10s (--launches=all counts them in every step)") == ("1s", "10s")
    assert not read("  kernel launches counted and GPU waits timed in every step (--launches=all, --syncs=all)")


def test_steady_load_cycles_the_requests_and_reports_a_failure():
    class Server:
        name, log = "s", "s.log"

        def __init__(self, fail_at=None):
            self.calls, self.fail_at, self.lock = [], fail_at, threading.Lock()

        def complete(self, prompt, max_tokens):
            with self.lock:
                self.calls.append(prompt)
                if len(self.calls) == self.fail_at:
                    raise OSError("connection refused")
            time.sleep(0.001)
            return max_tokens

    reqs = [([i], 1) for i in range(5)]
    s = Server()
    ld = vllmserve.SteadyLoad(s, reqs, 3)
    while ld.answered < 40:
        time.sleep(0.01)
    ld.stop()
    n = len(s.calls)
    counts = [sum(c == [i] for c in s.calls) for i in range(5)]
    assert n >= 40 and max(counts) - min(counts) <= 1  # taken in turn, round after round
    time.sleep(0.05)
    assert len(s.calls) == n  # nothing is sent after stop
    failing = Server(fail_at=7)
    bad = vllmserve.SteadyLoad(failing, reqs, 2)
    while not bad.errors:
        time.sleep(0.01)
    with pytest.raises(RuntimeError, match="connection refused"):
        bad.check()
    sent = len(failing.calls)
    time.sleep(0.05)
    assert len(failing.calls) <= sent + 1  # the load stops at its first failure
    with pytest.raises(RuntimeError, match="s: a request failed"):
        bad.stop()


def test_scheduler_totals_are_summed_over_traced_batches_and_kv_weighed_by_steps():
    sched = lambda steps, pre, kvm, kvp: dict(tracer_sched_sched_steps=steps, tracer_sched_joined=steps - 1,
                                              tracer_sched_preemptions=pre, tracer_sched_spec_proposed=30,
                                              tracer_sched_spec_accepted=12, tracer_sched_mean_kv_cache_usage=kvm,
                                              tracer_sched_peak_kv_cache_usage=kvp)
    bs = [batch(0, 0, 0, True, 2.0, steps=100, preemptions=5, spec_drafts=30, spec_accepted=12, kv_samples=20,
                kv_mean=0.5, kv_peak=0.9, **sched(100, 5, 0.4, 0.95)),
          batch(0, 0, 1, False, 2.0, steps=100, preemptions=7, spec_drafts=0, spec_accepted=0),
          batch(0, 1, 1, True, 2.0, steps=300, preemptions=9, spec_drafts=30, spec_accepted=12, kv_samples=20,
                kv_mean=0.7, kv_peak=0.99, **sched(300, 8, 0.8, 0.98))]
    a = vllmstats.sched_agreement(bs)
    assert a["sched_steps"] == (400, 400) and a["joined"] == 398
    assert a["preemptions"] == (13, 14) and a["drafts"] == (60, 60) and a["accepted"] == (24, 24)
    assert a["kv_mean"] == (pytest.approx(0.7), pytest.approx(0.6)) and a["kv_peak"] == (0.98, 0.99)
    assert vllmstats.sched_agreement([bs[1]]) is None
    unknown = dict(bs[0], tracer_sched_mean_kv_cache_usage=None, tracer_sched_peak_kv_cache_usage=None)
    assert vllmstats.sched_agreement([unknown])["kv_mean"] == (None, 0.5)
    t = vllmstats.table(bs, [("graph", "default")])
    assert "13 / 14 = 0.9286" in t and "0.700 / 0.600" in t


def test_parse_metrics_sums_label_sets_and_skips_comments():
    text = textwrap.dedent("""\
        # HELP vllm:prompt_tokens_total Number of prefill tokens processed.
        # TYPE vllm:prompt_tokens_total counter
        vllm:prompt_tokens_total{engine="0",model_name="llama"} 1234.0
        vllm:prompt_tokens_total{engine="1",model_name="llama"} 6.0
        vllm:iteration_tokens_total_bucket{engine="0",le="1.0",model_name="llama"} 3.0
        vllm:iteration_tokens_total_count{engine="0",model_name="llama"} 77.0
        process_open_fds 12.0
        bogus{a="b"} notanumber
        """)
    m = vllmserve.parse_metrics(text)
    assert m["vllm:prompt_tokens_total"] == 1240.0
    assert m["vllm:iteration_tokens_total_count"] == 77.0
    assert m["process_open_fds"] == 12.0
    assert "bogus" not in m


def test_requests_are_the_same_work_every_time():
    a, b = vllmserve.requests_of(16, seed=1), vllmserve.requests_of(16, seed=1)
    assert a == b and a != vllmserve.requests_of(16, seed=2)
    assert all(32 <= len(p) <= 1024 and 64 <= n <= 256 and min(p) >= 3 for p, n in a)


def test_parse_plan_rejects_what_it_does_not_know():
    tr = {"default": "/bin/true", "old": "/bin/true"}
    assert vllm_validate.parse_plan("graph:default*3,no-sync;eager:launches-off@old/2", tr) == [
        ("graph", [("default", 3, 1), ("no-sync", 1, 1)]), ("eager", [("launches-off@old", 1, 2)])]
    for bad, says in [("gpu:default", "unknown mode"), ("graph:nope", "unknown config"),
                      ("graph:default@new", "no --tracer new"), ("", "empty plan"),
                      ("graph:default*0", "not a positive integer"), ("graph:default*x", "not a positive"),
                      ("graph:default/0", "not a positive integer"),
                      ("graph:default,untraced,default", "twice")]:
        with pytest.raises(ValueError, match=says):
            vllm_validate.parse_plan(bad, tr)


def test_a_round_spreads_a_weighted_config_over_the_others():
    plan = vllm_validate.parse_plan("graph:default*3,untraced;eager:default*2,launches-off/2", None)
    assert vllm_validate.rounds(plan, 0) == [
        ("graph", "default"), ("graph", "untraced"), ("eager", "default"), ("eager", "launches-off"),
        ("graph", "default"), ("eager", "default"), ("graph", "default")]
    assert vllm_validate.rounds(plan, 1) == [
        ("graph", "default"), ("graph", "untraced"), ("eager", "default"),
        ("graph", "default"), ("eager", "default"), ("graph", "default")]


def test_measuring_stops_at_the_deadline_between_pairs(monkeypatch, tmp_path):
    clock = [0.0]
    ran = []
    def fake_pair(servers, mode, cfg, pair, *rest):
        ran.append((mode, cfg, pair))
        clock[0] += 25  # seconds per pair
    monkeypatch.setattr(vllm_validate, "run_pair", fake_pair)
    monkeypatch.setattr(vllm_validate.time, "monotonic", lambda: clock[0])
    plan = vllm_validate.parse_plan("graph:default*2,untraced,no-sync/3", None)
    args = type("A", (), dict(pairs=10, minutes=2.0, load="batch"))
    (tmp_path / "b.jsonl").write_text("")
    vllm_validate.measure_plan(plan, {"graph": None}, args, [], {}, None, str(tmp_path / "b.jsonl"))
    # Pairs start at 0, 25, ... 100 s; the one due at 125 s is not begun.
    assert ran == [("graph", "default", 0), ("graph", "untraced", 0), ("graph", "no-sync", 0),
                   ("graph", "default", 1), ("graph", "default", 2)]


def test_split_cores_keeps_smt_siblings_together(tmp_path):
    # 8 cores of 2 threads, siblings numbered c and c+8 (as Linux numbers them).
    for c in range(16):
        d = tmp_path / f"cpu{c}" / "topology"
        d.mkdir(parents=True)
        (d / "core_id").write_text(f"{c % 8}\n")
        (d / "physical_package_id").write_text("0\n")
    a, b, rest = vllmserve.split_cores(list(range(16)), 2, sysfs=str(tmp_path))
    assert a == [0, 1, 2, 8, 9, 10] and b == [3, 4, 5, 11, 12, 13] and rest == [6, 7, 14, 15]
    assert vllmserve.split_cores([0, 1, 2, 3], 2, sysfs=str(tmp_path)) is None  # 2 cores for 2 servers and the rest
    # Without topology files every CPU is its own core.
    assert vllmserve.split_cores(list(range(12)), 2, sysfs=str(tmp_path / "none")) == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


def test_model_dir_is_a_llama_with_a_tokenizer_for_every_id(tmp_path):
    from tokenizers import Tokenizer
    d = vllmserve.make_model(str(tmp_path / "m"))
    cfg = json.load(open(os.path.join(d, "config.json")))
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["num_hidden_layers"] == 22
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    assert tok.get_vocab_size() == cfg["vocab_size"]
    assert tok.encode("w5 w31999").ids == [5, 31999]
    assert tok.decode([5, 6, 2], skip_special_tokens=False) == "w5 w6 </s>"


# A stand-in for `python -m vllm.entrypoints.cli.main serve`: the endpoints
# and counters the validation reads, with a known number of steps per
# request (one prefill step and one step per generated token).
FAKE_SERVE = textwrap.dedent("""\
    import json, sys, threading, time
    from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
    port = int(sys.argv[sys.argv.index("--port") + 1])
    c = {"vllm:iteration_tokens_total_count": 0, "vllm:iteration_tokens_total_sum": 0,
         "vllm:prompt_tokens_total": 0, "vllm:generation_tokens_total": 0}
    lock = threading.Lock()
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def reply(self, body, ctype="application/json"):
            self.send_response(200); self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
        def do_GET(self):
            if self.path == "/v1/models":
                return self.reply(b'{"data": [{"id": "llama"}]}')
            with lock:
                text = "".join(f'{k}{{engine="0",model_name="llama"}} {v}\\n' for k, v in c.items())
            self.reply(("# HELP x y\\n" + text).encode(), "text/plain")
        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert req["ignore_eos"] and req["model"] == "llama"
            n, p = req["max_tokens"], len(req["prompt"])
            time.sleep(n / 20000)
            with lock:
                c["vllm:iteration_tokens_total_count"] += n
                c["vllm:iteration_tokens_total_sum"] += p + n - 1
                c["vllm:prompt_tokens_total"] += p
                c["vllm:generation_tokens_total"] += n
            self.reply(json.dumps({"usage": {"completion_tokens": n}}).encode())
    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
    """)


def stand_in_vllm(tmp_path):
    """A package `vllm` whose CLI is FAKE_SERVE, and the environment that
    makes the script find it."""
    if os.geteuid() != 0:
        pytest.skip("the script refuses to run unless root (its tracer needs it); CI runs as root")
    pkg = tmp_path / "fake" / "vllm" / "entrypoints" / "cli"
    pkg.mkdir(parents=True)
    for d in (pkg, pkg.parent, pkg.parent.parent):
        (d / "__init__.py").write_text("")
    (pkg / "main.py").write_text(FAKE_SERVE)
    return dict(os.environ, PYTHONPATH=str(tmp_path / "fake"))


def run_against_stand_ins(env, data, port, *args):
    """Runs the script against the stand-ins (stand_in_vllm's env): 2
    rounds of 6 requests, 3 in flight, its data in data; returns the
    records it wrote."""
    r = subprocess.run([sys.executable, os.path.join(HERE, "vllm_validate.py"), *args,
                        "--pairs", "2", "--requests", "6", "--concurrency", "3", "--data", str(data),
                        "--port", str(port), "--shared-libs"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return [json.loads(x) for x in (data / "batches.jsonl").read_text().splitlines()]


def test_the_script_runs_against_a_stand_in_server(tmp_path):
    env = stand_in_vllm(tmp_path)
    data = tmp_path / "data"
    recs = run_against_stand_ins(env, data, 18931, "--plan", "graph:untraced*2;eager:untraced",
                                 "--bin", "/bin/true", "--load", "batch")
    want = sum(n for _, n in vllmserve.requests_of(6, seed=1))
    assert len(recs) == 24  # (4 graph + 2 eager pairs) x two windows x two servers
    assert {(r["mode"], r["pair"], r["window"], r["server"], r["traced"]) for r in recs} == {
        (m, p, w, s, s == w ^ (p % 2)) for m, n in (("graph", 4), ("eager", 2))
        for p in range(n) for w in (0, 1) for s in (0, 1)}
    assert all(r["gen_tokens"] == want and r["steps"] == want and r["vllm_gen_tokens"] == want for r in recs)
    table = (data / "table.txt").read_text()
    assert "graph       untraced" in table and "eager       untraced" in table
    # Each server got its own marker beside "vLLM", with its entry point.
    for name in ("graph-a", "graph-b", "eager-a", "eager-b"):
        assert list((data / name / "marker-site").glob("profilemate_marker-*.dist-info/entry_points.txt"))


# A stand-in for profilemate-bpf: attached at once, it reads the stand-in
# server's counters at its start and, 0.3 s after SIGINT (detaching takes a
# while), at its end, says so as the real one does, and only then writes
# the steps between as its own.
FAKE_TRACER = textwrap.dedent("""\
    import json, os, signal, sys, time, urllib.request
    args = sys.argv[1:]
    pid, out = args[args.index("--pid") + 1], args[args.index("--out") + 1]
    assert args[args.index("--format") + 1] == "csv"  # no pictures to wait for between windows
    cmd = open(f"/proc/{pid}/cmdline").read().split("\\0")
    port = cmd[cmd.index("--port") + 1]
    def counters():
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        c = {}
        for line in text.splitlines():
            if line and line[0] != "#":
                c[line.split("{")[0]] = float(line.split()[-1])
        return c
    stop = []
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    # Named old-tracer: no _trace.start_monotonic_ns, as before the tracer gave it.
    old = os.path.basename(sys.argv[0]) == "old-tracer"
    # The real tracer's lines, in its order: each library's probes, a
    # while later the summary once all are live (the trace's start), then
    # the sampling.
    print(f"  marker /x/libprofilemate_marker.abi3.so: 3 probes attached (found in pid {pid})", file=sys.stderr, flush=True)
    print(f"  CUDA driver /x/libcuda.so.1: 24 probes attached (found in pid {pid})", file=sys.stderr, flush=True)
    time.sleep(0.1)
    start = {} if old else {"start_monotonic_ns": time.monotonic_ns()}
    t0 = time.monotonic()
    c0 = counters()
    print("  27 probes attached in 120 ms; marker found", file=sys.stderr, flush=True)
    print("  kernel launches counted 400ms in every 1s (--launches=all counts them in every step)", file=sys.stderr, flush=True)
    # The time each step was seen counted, a step per poll of the counters.
    seen, last = [], c0["vllm:iteration_tokens_total_count"]
    while not stop:
        n = counters()["vllm:iteration_tokens_total_count"]
        seen += [time.monotonic()] * int(n - last)
        last = n
        time.sleep(0.005)
    time.sleep(0.3)
    c1 = counters()
    n = c1["vllm:iteration_tokens_total_count"]
    seen += [time.monotonic()] * int(n - last)
    print("profilemate-bpf: interrupted; writing what was traced", file=sys.stderr, flush=True)
    d = {k: int(c1[k] - c0[k]) for k in c0}
    steps = d["vllm:iteration_tokens_total_count"]
    with open(os.path.join(out, "forward_pass_timing.csv"), "w") as f:
        f.write("timestamp_sec,duration_ms,num_tokens,num_prefill_tokens,running_reqs\\n")
        for i in range(steps):
            f.write(f"{seen[i] - t0:.6f},0.000,{d['vllm:iteration_tokens_total_sum'] if i == 0 else 0},"
                    f"{d['vllm:prompt_tokens_total'] if i == 0 else 0},3\\n")
    sched = {"sched_steps": steps, "joined": steps, "preemptions": 0}
    json.dump({"_activity": [], "_trace": {"dropped_records": 0, **start}, "_scheduler": sched},
              open(os.path.join(out, "summary.json"), "w"))
    """)


def stand_in_tracers(tmp_path, *names):
    for name in names:
        (tmp_path / name).write_text(f"#!{sys.executable}\n" + FAKE_TRACER)
        (tmp_path / name).chmod(0o755)


def test_steady_windows_against_a_stand_in_server_and_tracer(tmp_path):
    env = stand_in_vllm(tmp_path)
    stand_in_tracers(tmp_path, "tracer", "old-tracer")
    data = tmp_path / "data"
    recs = run_against_stand_ins(env, data, 18941, "--plan", "graph:default,default@old,untraced",
                                 "--tracer", f"old={tmp_path / 'old-tracer'}", "--window", "0.5",
                                 "--bin", str(tmp_path / "tracer"))
    assert len(recs) == 24  # 2 rounds x 3 configs x two windows x two servers
    assert all(r["load"] == "steady" and 0.45 < r["wall_s"] < 1.0 for r in recs)
    # A window of 0.5 s of sampling 400ms in every 1s begins 0.2 s after the
    # attach: after the summary line, whose next line gives the sampling, not
    # after the first library's line (lease 6 took that one, found no
    # sampling on the line after it, and began every window at once).
    assert all(r["offset_s"] == pytest.approx(0.2) for r in recs if r["config"] != "untraced")
    assert all(r["offset_s"] == 0 for r in recs if r["config"] == "untraced")
    assert all(r["gen_tokens"] == r["vllm_gen_tokens"] > 0 and r["steps"] > 0 for r in recs)
    traced = {c: [r for r in recs if r["traced"] and r["config"] == c] for c in ("default", "default@old")}
    assert len(traced["default"]) == len(traced["default@old"]) == 4
    assert not any("trace_steps" in r for r in recs if r["config"] == "untraced" or not r["traced"])
    for t in traced["default"]:
        # The tracer's steps that were out within the window are those
        # the window's counters saw; its whole trace holds more.
        # The stand-in stamps a step when its 5 ms poll of the counters
        # sees it, late by as long as a poll takes on a busy machine (a 0.5
        # s window lost 5% once); the whole trace is twice the window.
        assert t["window_tracer_steps"] == pytest.approx(t["steps"], rel=0.1)
        assert t["window_tracer_steps"] < t["tracer_steps"]
        assert t["window_tracer_sched_sched_steps"] == t["window_tracer_steps"]  # every row joined
    for t in traced["default@old"]:
        # Without its start on the clock, its whole trace: that outlasts
        # the window by the tracer's 0.3 s of detaching, and the counters
        # the script read over it match the tracer's own.
        assert "window_tracer_steps" not in t and t["trace_steps"] > t["steps"]
        assert t["tracer_steps"] == pytest.approx(t["trace_steps"], rel=0.05)
    table = (data / "table.txt").read_text()
    assert "graph       untraced" in table
    assert "graph       default        window" in table and "graph       default@old    trace" in table
    sched = table[table.index("Scheduler:"):]
    assert "graph       default        window" in sched and "graph       default@old    trace" in sched


def test_traced_batches_against_stand_ins_begin_where_they_hold_the_launch_duty(tmp_path):
    """Under --load batch each traced batch begins where a window as long as
    the last untraced batch of its mode holds the sampling's share (the
    stand-in tracer samples 400ms in every 1s), the first one after the
    warm-up's batches; A/A batches begin at once."""
    env = stand_in_vllm(tmp_path)
    stand_in_tracers(tmp_path, "tracer")
    data = tmp_path / "data"
    recs = run_against_stand_ins(env, data, 18951, "--plan", "graph:default,untraced", "--load", "batch",
                                 "--bin", str(tmp_path / "tracer"))
    assert len(recs) == 16  # 2 rounds x 2 configs x two windows x two servers
    windows = [recs[i:i + 2] for i in range(0, len(recs), 2)]
    assert all(a["window"] == b["window"] and a["pair"] == b["pair"] for a, b in windows)
    last = None
    for w in windows:
        offsets = {x["offset_s"] for x in w}
        assert len(offsets) == 1
        if w[0]["config"] == "untraced":
            assert offsets == {0.0}
        elif last is not None:
            want = tracerrun.duty_offset(last, (0.4, 1.0)) or 0.5
            assert offsets.pop() == pytest.approx(want), (last, w)
        last = max(x["wall_s"] for x in w if not x["traced"])
    assert all(x["gen_tokens"] == x["vllm_gen_tokens"] > 0 for x in recs)


def test_one_server_traced_and_untraced_in_turn_against_stand_ins(tmp_path):
    env = stand_in_vllm(tmp_path)
    stand_in_tracers(tmp_path, "tracer")
    data = tmp_path / "data"
    recs = run_against_stand_ins(env, data, 18951, "--servers", "1", "--plan", "graph:default,untraced",
                                 "--window", "0.5", "--bin", str(tmp_path / "tracer"))
    # One server, traced in the first window of even pairs and the second
    # of odd ones; the A/A config has the roles without a tracer.
    assert {(r["config"], r["pair"], r["window"], r["server"], r["traced"]) for r in recs} == {
        (c, p, w, 0, w == p % 2) for c in ("default", "untraced") for p in range(2) for w in (0, 1)}
    assert len(recs) == 8 and all(r["servers"] == 1 for r in recs)
    assert [r["window_tracer_steps"] > 0 for r in recs if r["config"] == "default" and r["traced"]] == [True, True]
    assert not any("tracer_steps" in r for r in recs if not (r["config"] == "default" and r["traced"]))
    assert not (data / "graph-b").exists()
    table = (data / "table.txt").read_text()
    assert re.search(r"graph       default            2  \d\.\d{3} ±\d+\.\d{3} ", table), table
    assert re.search(r"graph       untraced           2 .* n/a ", table), table


def test_the_tracer_class_reads_the_real_tracer_on_the_simulated_server(tmp_path):
    # The stand-in tracer above prints what the real one prints; this checks
    # that against the real one, whose lines the script depends on (lease 6
    # ran with its windows misplaced when they were read wrongly).
    if os.geteuid() != 0:
        pytest.skip("the tracer loads eBPF programs, which needs root; CI runs as root")
    repo = os.path.dirname(HERE)
    binary = os.path.join(repo, "bin", "profilemate-bpf")
    assert os.access(binary, os.X_OK), f"{binary}: run make build (make test does)"
    truth = tmp_path / "truth"
    srv = subprocess.Popen([os.path.join(repo, "simserver", "serve"), "--workers", "1", "--duration", "30",
                            "--truth-dir", str(truth)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (truth / "server.json").exists():
            assert time.monotonic() < deadline and srv.poll() is None, "the simulated server did not start"
            time.sleep(0.1)
        out = tmp_path / "out"
        out.mkdir()
        tr = tracerrun.Tracer(binary, srv.pid, str(out), ["--launch-sample", "300ms/3s"],
                                  str(tmp_path / "tracer.log"))
        tr.wait_attached()
        attached = time.monotonic()
        # Attached once the summary came, after every library's own line.
        assert tracerrun.ATTACHED.search((tmp_path / "tracer.log").read_text())
        assert tr.duty_offset(1.0) == pytest.approx(0.2)  # 300 ms * (1 - 1 s / 3 s)
        time.sleep(1.5)
        tr.stop()
        r = tr.results(window=(attached + 0.5, attached + 1.0))
        assert r["tracer_steps"] > 0 and r["dropped"] == 0
        assert 0 < r["window_tracer_steps"] < r["tracer_steps"]
    finally:
        srv.terminate()
        srv.wait()

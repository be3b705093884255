"""Checks of the GPU validation's pure-Python parts (no torch, no GPU).

    PYTHONPATH=simserver python3 -m pytest gpu/test_gpu.py
"""
import csv
import glob
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [HERE, os.path.join(REPO, "simserver"), os.path.join(REPO, "marker")]

import gpusched  # noqa: E402
import profcount  # noqa: E402
import report  # noqa: E402


def test_schedule_is_a_function_of_seed_and_step():
    a = [gpusched.plan(7, k) for k in range(1, 200)]
    b = [gpusched.plan(7, k) for k in range(1, 200)]
    assert a == b
    assert a != [gpusched.plan(8, k) for k in range(1, 200)]
    assert {p for p, _, _ in a} == {"decode", "prefill", "mixed"}


@pytest.mark.parametrize("step", range(1, 300))
def test_shape_agrees_with_the_marker(step):
    from profilemate_marker.batch import batch_shape
    so = gpusched.scheduler_output(3, step)
    phase, n_reqs, n_tokens, p_reqs, p_tokens = gpusched.shape(so)
    assert batch_shape(so) == (n_reqs, n_tokens, p_reqs, p_tokens)
    plan_phase, decode, prefill = gpusched.plan(3, step)
    assert phase == plan_phase
    assert n_tokens == decode + sum(prefill)
    assert 1 <= n_tokens and (phase != "decode" or n_tokens <= gpusched.MAX_DECODE_BATCH)


def _x(cat, name, ts, dur=1, tid=1, corr=None, pid=1):
    ev = {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "pid": pid, "tid": tid}
    if corr is not None:
        ev["args"] = {"correlation": corr}
    return ev


def test_profcount_attributes_kernels_by_correlation():
    events = [
        _x("user_annotation", "pm_step_1", 0, 100),
        _x("user_annotation", "pm_step_2", 200, 100),
        _x("cuda_runtime", "cudaLaunchKernel", 10, corr=1),
        _x("cuda_driver", "cuLaunchKernelEx", 20, corr=2),
        _x("cuda_runtime", "cudaGraphLaunch", 210, corr=3),
        _x("cuda_runtime", "cudaLaunchKernel", 250, tid=2, corr=4),  # other thread
        _x("kernel", "k1", 500, pid=0, tid=7, corr=1),
        _x("kernel", "k2", 510, pid=0, tid=7, corr=2),
        _x("kernel", "g1", 520, pid=0, tid=7, corr=3),
        _x("kernel", "g2", 530, pid=0, tid=7, corr=3),
        _x("kernel", "other", 540, pid=0, tid=7, corr=4),
        _x("gpu_user_annotation", "pm_step_3", 600, 100, pid=0, tid=7),
        _x("kernel", "nocall", 650, pid=0, tid=7, corr=99),  # falls back to the GPU span
        _x("kernel", "lost", 900, pid=0, tid=7, corr=98),
    ]
    steps, unattributed = profcount.count_steps({"traceEvents": events})
    assert steps[1] == {"kernels": 2, "launch_calls": 2, "graph_launches": 0}
    assert steps[2] == {"kernels": 2, "launch_calls": 0, "graph_launches": 1}
    assert steps[3]["kernels"] == 1
    assert unattributed == 2


TRUTH = ("pid", "step", "phase", "batch_size", "num_tokens", "num_prefill_reqs",
         "num_prefill_tokens", "begin_ns", "forward_end_ns", "sample_end_ns", "end_ns",
         "host_ms", "gpu_ms", "graph", "traced")
TRACER = ("timestamp_sec,phase,batch_size,num_tokens,duration_ms,throughput_tokens_per_sec,pid,"
          "step,cpu_ms,interval_ms,launches,graph_launches,sync_wait_ms,rank,process,"
          "num_prefill_reqs,num_prefill_tokens,forward_ms").split(",")


def _kernels(phase):
    return 528 if phase == "decode" else 540


def _write_run(d, name, pid, steps, slow, graph, windows=True, prof=False, err=0.01, slow_all=1.0):
    """Fake truth and tracer CSVs: traced in alternating 200-step windows,
    steps `slow` times longer while traced (and `slow_all` times longer in
    all), tracer durations off by err."""
    run = os.path.join(d, name)
    os.makedirs(run)
    t, truth, traced_rows = 0, [], {}
    for k in range(1, steps + 1):
        phase, n, tok, pr, pt = gpusched.shape(gpusched.scheduler_output(1, k))
        traced = int(windows and (k - 1) // 200 % 2 == 0)
        period = (2 + tok * 0.01) * (slow if traced else 1) * slow_all
        host = period * 1.5
        g = int(graph and phase == "decode")
        truth.append((pid, k, phase, n, tok, pr, pt, t, t, t, t + int(host * 1e6), host,
                      host * 0.9, g, traced))
        if traced:
            traced_rows.setdefault((k - 1) // 400 + 1, []).append(dict(zip(TRACER, (
                t / 1e9, phase, n, tok, host * (1 + err), 0, pid, k, 0, 0,
                1 if g else _kernels(phase), g, 0, 0, "python3", pr, pt, 0))))
        t += int(period * 1e6)
    with open(os.path.join(run, "truth.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRUTH)
        w.writerows(truth)
    for i, rows in traced_rows.items():
        os.makedirs(os.path.join(run, f"trace{i}"))
        with open(os.path.join(run, f"trace{i}", "forward_pass_timing.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, TRACER)
            w.writeheader()
            w.writerows(rows)
        with open(os.path.join(run, f"trace{i}.log"), "w") as f:
            f.write("profilemate-bpf: tracing pid 1\n  31 probes attached in 412 ms; marker found\n")
    with open(os.path.join(run, "workload.log"), "w") as f:
        f.write("WORKLOAD_RESULT " + json.dumps({"pid": pid, "steps": steps}) + "\n")
    if prof:
        with open(os.path.join(run, "counts.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(("step", "phase", "batch_size", "num_tokens", "kernels", "launch_calls",
                        "graph_launches"))
            for r in truth[:150]:
                w.writerow((r[1], r[2], r[3], r[4], _kernels(r[2]), 0, 0))


def test_report_on_synthetic_runs(tmp_path):
    d = str(tmp_path)
    _write_run(d, "graph", 11, 1200, 1.02, True)
    _write_run(d, "eager", 12, 1200, 1.05, False)
    _write_run(d, "prof", 13, 150, 1.0, False, windows=False, prof=True, slow_all=1.9)
    _write_run(d, "sync", 14, 400, 1.0, True, windows=False)
    _write_run(d, "sync-eager", 15, 400, 1.0, False, windows=False, slow_all=1.03)
    _write_run(d, "prof-graph", 16, 400, 1.0, True, windows=False, slow_all=1.5)
    rep = report.build(d)
    for mode in ("graph", "eager"):
        acc = rep["accuracy"][mode]
        assert acc["matched_steps"] == acc["truth_traced_steps"] == 600
        assert acc["shape_agreement"] == 1
        assert acc["median_abs_rel_err"] == pytest.approx(0.01)
    assert rep["overhead"]["graph"]["matched_slowdown"] == pytest.approx(1.02)
    assert rep["overhead"]["eager"]["matched_slowdown"] == pytest.approx(1.05)
    sync, prof = rep["overhead"]["sync_every_step"], rep["overhead"]["torch_profiler"]
    assert sync["graph"]["matched_slowdown"] == pytest.approx(1.0)
    assert sync["eager"]["decode_slowdown"] == pytest.approx(1.03)
    assert prof["graph"]["decode_slowdown"] == pytest.approx(1.5)
    assert prof["eager"]["matched_slowdown"] == pytest.approx(1.9)
    # graph: sync (1.0) beats the tracer (1.02); eager: sync (1.03) beats 1.05
    assert rep["lowest_overhead"] == {"graph": "sync_every_step", "eager": "sync_every_step"}
    assert "eager_nolaunch" not in rep["overhead"]  # not run: no rows either
    assert "--launches=false: " not in report.table(rep)
    assert rep["overhead"]["graph"]["decode_slowdown"] == pytest.approx(1.02)
    assert rep["overhead"]["eager"]["decode_slowdown"] == pytest.approx(1.05)
    cov = rep["coverage"]
    assert cov["method"] == "step id" and cov["compared_steps"] == 150
    assert cov["median_ratio"] == 1 and cov["within_1pct"] == 1
    assert rep["graph_decode"]["median_graph_launches"] == 1
    assert rep["attach_ms"]["eager"] == [412, 412, 412]
    text = report.table(rep)
    assert "+5.0%" in text and "412,412" in text and "+50.0%" in text
    assert "| lowest decode-step overhead of the three | sync_every_step |" in text


def test_report_with_an_eager_run_without_launch_probes(tmp_path):
    d = str(tmp_path)
    _write_run(d, "graph", 11, 1200, 1.002, True)
    _write_run(d, "eager", 12, 1200, 1.05, False)
    _write_run(d, "eager-nolaunch", 17, 1200, 1.001, False, err=0.02)
    _write_run(d, "prof", 13, 150, 1.0, False, windows=False, prof=True, slow_all=1.9)
    _write_run(d, "sync", 14, 400, 1.0, True, windows=False, slow_all=1.2)
    _write_run(d, "sync-eager", 15, 400, 1.0, False, windows=False, slow_all=1.03)
    _write_run(d, "prof-graph", 16, 400, 1.0, True, windows=False, slow_all=1.5)
    rep = report.build(d)
    assert rep["overhead"]["eager_nolaunch"]["decode_slowdown"] == pytest.approx(1.001)
    assert rep["accuracy"]["eager_nolaunch"]["median_abs_rel_err"] == pytest.approx(0.02)
    # eager: sync (1.03) beats the tracer counting launches (1.05), not without (1.001)
    assert rep["lowest_overhead"] == {"graph": "profilemate-bpf",
                                      "eager": "profilemate-bpf --launches=false"}
    text = report.table(rep)
    assert "| --launches=false: tracer overhead (decode steps, batch-matched period) |  | +0.1% |" in text
    assert "| --launches=false: duration |rel err| median / p99 |  | 2.00% / 2.00% |" in text


def _tp_layout(d, name, steps, slow, graph, prof=False, tp=2):
    """A TP run directory (as validate_tp.sh leaves it) from one fake run per
    rank: truth_rank<R>.csv, trace windows holding every rank's rows (rank 1
    0.5 ms slower), the engine's WORKLOAD_RESULT and counts_rank<R>.csv."""
    import shutil
    run = os.path.join(d, name)
    os.makedirs(run)
    results, windows = [], {}
    for rank in range(tp):
        tmp = os.path.join(d, f"tmp{rank}")
        pid = 100 + 10 * rank + len(name)
        _write_run(tmp, name, pid, steps, slow, graph, windows=not prof, prof=prof)
        src = os.path.join(tmp, name)
        shutil.copy(os.path.join(src, "truth.csv"), os.path.join(run, f"truth_rank{rank}.csv"))
        if prof:
            shutil.copy(os.path.join(src, "counts.csv"), os.path.join(run, f"counts_rank{rank}.csv"))
        for w in sorted(os.listdir(src)):
            if w.startswith("trace") and os.path.isdir(os.path.join(src, w)):
                rows = report.read_csv(os.path.join(src, w, "forward_pass_timing.csv"))
                for r in rows:
                    r["rank"] = str(rank)
                    r["process"] = f"VLLM::Worker_TP{rank}"
                    r["duration_ms"] = str(float(r["duration_ms"]) + 0.5 * rank)
                windows.setdefault(w, []).extend(rows)
                shutil.copy(os.path.join(src, w + ".log"), os.path.join(run, w + ".log"))
        results.append({"pid": pid, "rank": rank, "steps": steps, "graphs": 32, "mode": name})
        shutil.rmtree(tmp)
    for w, rows in windows.items():
        os.makedirs(os.path.join(run, w))
        with open(os.path.join(run, w, "forward_pass_timing.csv"), "w", newline="") as f:
            wr = csv.DictWriter(f, TRACER)
            wr.writeheader()
            wr.writerows(rows)
        with open(os.path.join(run, w, "summary.json"), "w") as f:
            json.dump({"_ranks": {"count": 200, "unaligned_steps": 0, "mean_ms": 0.5,
                                  "p50_ms": 0.5, "p95_ms": 0.5, "p99_ms": 0.5, "max_ms": 0.5,
                                  "slowest": [{"rank": 0, "share": 0.0}, {"rank": 1, "share": 1.0}]}}, f)
    with open(os.path.join(run, "workload.log"), "w") as f:
        f.write("WORKLOAD_RESULT " + json.dumps({"pid": 99, "tp": tp, "ranks": results}) + "\n")


def test_report_on_synthetic_tp_runs(tmp_path):
    d = str(tmp_path)
    _tp_layout(d, "graph", 1200, 1.02, True)
    _tp_layout(d, "eager", 1200, 1.05, False)
    _tp_layout(d, "prof", 150, 1.0, False, prof=True)
    assert report.is_tp(d)
    rep = report.build_tp(d)
    assert rep["tp"] == 2 and set(rep["ranks"]) == {"0", "1"}
    for rank, one in rep["ranks"].items():
        assert one["labels"]["graph"]["rank_ok"] == 1
        acc = one["accuracy"]["eager"]
        assert acc["matched_steps"] == acc["truth_traced_steps"] == 600
        assert one["overhead"]["eager"]["matched_slowdown"] == pytest.approx(1.05)
        assert one["coverage"]["compared_steps"] == 150
        if rank == "0":
            assert one["coverage"]["median_ratio"] == 1
            assert acc["median_abs_rel_err"] == pytest.approx(0.01)
    cr = rep["cross_rank"]["graph"]
    assert cr["aligned_steps"] == 600
    assert cr["recomputed"]["p50_ms"] == pytest.approx(0.5)
    assert cr["recomputed"]["slowest"] == {"1": 600}
    assert cr["truth"]["p50_ms"] == pytest.approx(0.0)
    text = report.table_tp(rep)
    assert "### rank 1 (VLLM::Worker_TP1)" in text and "slowest TP0 0.0%, TP1 100.0%" in text
    report.main(["report.py", d])
    assert os.path.exists(os.path.join(d, "table.txt"))


def test_sync_debug_counts_syncs_not_the_prototype_notice():
    import workload
    assert workload.is_sync_warning("called a synchronizing CUDA operation")
    assert not workload.is_sync_warning(
        "Synchronization debug mode is a prototype feature and does not yet detect all "
        "synchronizing operations (Triggered internally at Module.cpp:1003.)")


def test_engine_output_lines_stay_whole():
    # The engine's forwarder threads and its main thread write to one stdout;
    # validate_tp.sh greps for lines that start with WORKLOAD_READY.
    import subprocess
    script = (
        "import threading, tensorpar\n"
        "def run(t):\n"
        "    for i in range(2000):\n"
        "        tensorpar.emit(f'T{t} line {i} ' + 'x' * (i % 50))\n"
        "ts = [threading.Thread(target=run, args=(t,)) for t in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=HERE, check=True,
                         capture_output=True, text=True,
                         env=dict(os.environ, PYTHONUNBUFFERED="1")).stdout
    lines = out.splitlines()
    assert len(lines) == 8000
    for line in lines:
        t, word, i, *rest = line.split(" ")
        assert t[0] == "T" and word == "line", line
        assert rest == ["x" * (int(i) % 50)], line


def test_report_on_a_graph_run_traced_with_launches_off(tmp_path):
    # TRACER_FLAGS=--launches=false RUNS=graph: empty launches cells, no other run.
    d = str(tmp_path)
    _write_run(d, "graph", 11, 1200, 1.002, True)
    for path in glob.glob(os.path.join(d, "graph", "trace*", "forward_pass_timing.csv")):
        rows = report.read_csv(path)
        for r in rows:
            r["launches"] = ""
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, TRACER)
            w.writeheader()
            w.writerows(rows)
    rep = report.build(d)
    assert rep["graph_decode"]["median_launches"] is None
    assert rep["graph_decode"]["median_graph_launches"] == 1
    assert rep["overhead"]["graph"]["decode_slowdown"] == pytest.approx(1.002)
    assert "| graph decode: graph_launches, launches per step | 1, not counted |" in report.table(rep)

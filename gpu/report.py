#!/usr/bin/env python3
"""Compares profilemate-bpf's output with the GPU workload's own records.

    python3 gpu/report.py DIR        (DIR as laid out by gpu/validate.sh)

DIR/<run>/ for run in graph, eager (traced in alternating windows),
eager-nolaunch (the same, the tracer run with --launches=false), prof
(eager under torch.profiler), prof-graph (graph under torch.profiler), sync
and sync-eager (graph and eager with --sync-every-step):
  truth.csv          the workload's ground truth (one row per step)
  workload.log       its output (WORKLOAD_RESULT line)
  trace<N>/forward_pass_timing.csv, trace<N>.log   one per tracer window
  counts.csv         (prof) kernels per step from the PyTorch profiler

Prints one table and writes DIR/report.json and DIR/table.txt. Stdlib only.

Tensor parallelism (gpu/validate_tp.sh; detected by DIR/graph/truth_rank0.csv):
runs graph, eager, prof of `workload.py --tp N`; per run truth_rank<R>.csv,
the engine's workload.log (WORKLOAD_RESULT with each rank's result and pid),
trace<N>/ (forward_pass_timing.csv, summary.json with "_ranks") and
counts_rank<R>.csv (prof). The same measures per rank (the tracer's rows of
that rank's pid), then the cross-rank spread. One table per rank, one across.
"""
import csv
import glob
import json
import os
import re
import statistics
import sys

ATTACH_RE = re.compile(r"(\d+) probes attached in (\d+) ms")
SKIP_AFTER_TOGGLE = 10  # steps dropped after the tracer attaches or detaches


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def pct(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q / 100 * len(v) + 0.5)) - 1))]


def fmt(x, spec=".3f", none="n/a"):
    return none if x is None else format(x, spec)


def load_run(d):
    run = {"truth": read_csv(os.path.join(d, "truth.csv")), "tracer": [], "attach_ms": [],
           "probes": [], "result": None}
    for csv_path in sorted(glob.glob(os.path.join(d, "trace*", "forward_pass_timing.csv"))):
        run["tracer"].extend(read_csv(csv_path))
    for log in sorted(glob.glob(os.path.join(d, "trace*.log"))):
        with open(log, errors="replace") as f:
            m = ATTACH_RE.search(f.read())
        if m:
            run["probes"].append(int(m.group(1)))
            run["attach_ms"].append(int(m.group(2)))
    log = os.path.join(d, "workload.log")
    if os.path.exists(log):
        with open(log, errors="replace") as f:
            for line in f:
                if line.startswith("WORKLOAD_RESULT "):
                    run["result"] = json.loads(line.split(" ", 1)[1])
    pid = str(run["result"]["pid"]) if run["result"] else None
    run["tracer_own"] = [r for r in run["tracer"] if pid is None or r.get("pid") == pid]
    return run


# --- duration accuracy ------------------------------------------------------
def accuracy(run):
    truth = {int(r["step"]): r for r in run["truth"]}
    errs, shape_ok, matched = [], 0, 0
    for r in run["tracer_own"]:
        t = truth.get(int(r["step"]))
        if t is None or float(t["host_ms"]) <= 0:
            continue
        matched += 1
        errs.append(float(r["duration_ms"]) / float(t["host_ms"]) - 1)
        shape_ok += (r["phase"] == t["phase"] and r["batch_size"] == t["batch_size"]
                     and r["num_tokens"] == t["num_tokens"])
    # Secondary columns: cpu_ms (step_begin -> sample_end) and interval_ms
    # (step_begin -> next step_begin) against the same points in the truth.
    cpu_errs, int_errs = [], []
    for r in run["tracer_own"]:
        step = int(r["step"])
        t, nxt = truth.get(step), truth.get(step + 1)
        if t is None:
            continue
        cpu_true = (int(t["sample_end_ns"]) - int(t["begin_ns"])) / 1e6
        if cpu_true > 0 and r.get("cpu_ms"):
            cpu_errs.append(abs(float(r["cpu_ms"]) / cpu_true - 1))
        if nxt is not None and r.get("interval_ms") and float(r["interval_ms"]) > 0:
            int_true = (int(nxt["begin_ns"]) - int(t["begin_ns"])) / 1e6
            if int_true > 0:
                int_errs.append(abs(float(r["interval_ms"]) / int_true - 1))
    traced_truth = sum(1 for t in run["truth"] if t["traced"] == "1")
    out = {"matched_steps": matched, "tracer_rows": len(run["tracer_own"]),
           "truth_traced_steps": traced_truth,
           "shape_agreement": shape_ok / matched if matched else None}
    if cpu_errs:
        out["cpu_ms_median_abs_rel_err"] = statistics.median(cpu_errs)
    if int_errs:
        out["interval_ms_median_abs_rel_err"] = statistics.median(int_errs)
    if errs:
        absd = [abs(e) for e in errs]
        out.update(median_abs_rel_err=statistics.median(absd), p99_abs_rel_err=pct(absd, 99),
                   median_signed_rel_err=statistics.median(errs))
    return out


# --- overhead ---------------------------------------------------------------
def segments(truth):
    """Runs of consecutive steps with the same traced flag, edges trimmed."""
    rows = sorted(truth, key=lambda r: int(r["step"]))
    segs, cur = [], []
    for r in rows:
        if cur and r["traced"] != cur[-1]["traced"]:
            segs.append(cur)
            cur = []
        cur.append(r)
    if cur:
        segs.append(cur)
    trimmed = []
    for i, s in enumerate(segs):
        lo = SKIP_AFTER_TOGGLE if i > 0 else 0
        s = s[lo:len(s) - 1 if i < len(segs) - 1 else len(s)]
        if len(s) >= 3:
            trimmed.append((s[0]["traced"] == "1", s))
    return trimmed


def periods(seg):
    """(shape key, step period in ms) of each step but the last of a segment."""
    out = []
    for a, b in zip(seg, seg[1:]):
        out.append(((a["phase"], a["num_tokens"]), (int(b["begin_ns"]) - int(a["begin_ns"])) / 1e6))
    return out


def rate(segs):
    n = sum(len(s) - 1 for s in segs)
    t = sum((int(s[-1]["begin_ns"]) - int(s[0]["begin_ns"])) / 1e9 for s in segs)
    return n / t if t > 0 else None


def matched_slowdown(base_periods, other_periods):
    """Median step period of `other` / of `base`, shape by shape, weighted by
    base's count of each shape (so a different batch mix does not count).
    Medians: one slow step (a page fault, a new kernel) must not decide it."""
    def by_key(ps):
        d = {}
        for k, v in ps:
            d.setdefault(k, []).append(v)
        return d
    b, o = by_key(base_periods), by_key(other_periods)
    num = den = 0.0
    for k, vs in b.items():
        if k in o:
            num += len(vs) * statistics.median(o[k])
            den += len(vs) * statistics.median(vs)
    return num / den if den else None


def decode_only(ps):
    """The periods of decode steps: in graph mode they replay one graph each,
    so their period is the steadiest measure of what tracing adds, while a
    few prefill steps of rare shapes can swing a window's mean by percents."""
    return [(k, v) for k, v in ps if k[0] == "decode"]


def overhead(run):
    segs = segments(run["truth"])
    traced = [s for on, s in segs if on]
    plain = [s for on, s in segs if not on]
    out = {"traced_segments": len(traced), "plain_segments": len(plain),
           "plain_steps_per_sec": rate(plain), "traced_steps_per_sec": rate(traced)}
    if out["plain_steps_per_sec"] and out["traced_steps_per_sec"]:
        out["rate_ratio"] = out["traced_steps_per_sec"] / out["plain_steps_per_sec"]
        base = [p for s in plain for p in periods(s)]
        other = [p for s in traced for p in periods(s)]
        out["matched_slowdown"] = matched_slowdown(base, other)
        out["decode_slowdown"] = matched_slowdown(decode_only(base), decode_only(other))
    return out, plain


def other_mode_overhead(run, base_plain):
    """A whole run (sync-every-step, torch profiler) against a base run's
    untraced segments."""
    rows = sorted(run["truth"], key=lambda r: int(r["step"]))[SKIP_AFTER_TOGGLE:]
    if len(rows) < 3 or not base_plain:
        return {}
    r = rate([rows])
    base = rate(base_plain)
    base_periods = [p for s in base_plain for p in periods(s)]
    return {"steps_per_sec": r, "base_steps_per_sec": base, "rate_ratio": r / base if base else None,
            "matched_slowdown": matched_slowdown(base_periods, periods(rows)),
            "decode_slowdown": matched_slowdown(decode_only(base_periods), decode_only(periods(rows)))}


# --- launch coverage ----------------------------------------------------------
def coverage(eager, counts):
    prof = {int(r["step"]): r for r in counts}
    ratios, same_shape, by_step = [], 0, 0
    for r in eager["tracer_own"]:
        p = prof.get(int(r["step"]))
        if p is None or int(p["kernels"]) == 0:
            continue
        by_step += 1
        same_shape += (p["phase"] == r["phase"] and p["num_tokens"] == r["num_tokens"])
        ratios.append(int(r["launches"]) / int(p["kernels"]))
    method = "step id"
    if not ratios:  # no common step ids: match by batch shape
        method = "batch shape"
        med = {}
        for p in counts:
            med.setdefault((p["phase"], p["num_tokens"]), []).append(int(p["kernels"]))
        for r in eager["tracer_own"]:
            ks = med.get((r["phase"], r["num_tokens"]))
            if ks and statistics.median(ks) > 0:
                ratios.append(int(r["launches"]) / statistics.median(ks))
    out = {"method": method, "compared_steps": len(ratios),
           "same_shape": same_shape / by_step if by_step else None}
    if ratios:
        out.update(median_ratio=statistics.median(ratios), min_ratio=min(ratios),
                   max_ratio=max(ratios),
                   within_1pct=sum(abs(x - 1) <= 0.01 for x in ratios) / len(ratios))
    per_phase = {}
    for r in eager["tracer_own"]:
        per_phase.setdefault(r["phase"], [[], []])[0].append(int(r["launches"]))
    for p in counts:
        per_phase.setdefault(p["phase"], [[], []])[1].append(int(p["kernels"]))
    out["median_per_phase"] = {ph: (statistics.median(a) if a else None,
                                    statistics.median(b) if b else None)
                               for ph, (a, b) in sorted(per_phase.items())}
    return out


def graph_decode(run):
    rows = [r for r in run["tracer_own"] if r["phase"] == "decode"]
    if not rows:
        return {}
    launches = [int(r["launches"]) for r in rows if r["launches"] != ""]
    return {"decode_steps": len(rows),
            "median_graph_launches": statistics.median(int(r["graph_launches"]) for r in rows),
            # An empty cell: the tracer ran with --launches=false.
            "median_launches": statistics.median(launches) if launches else None,
            "truth_graph_steps": sum(1 for t in run["truth"] if t["graph"] == "1")}


#: The runs of the two other ways to time steps, by method and mode.
OTHER_METHODS = {"sync_every_step": {"graph": "sync", "eager": "sync-eager"},
                 "torch_profiler": {"graph": "prof-graph", "eager": "prof"}}


#: The eager run traced with --launches=false: its folder, and its key in
#: the report's accuracy and overhead.
NOLAUNCH_RUN, NOLAUNCH = "eager-nolaunch", "eager_nolaunch"


def lowest(o):
    """Per mode, the method with the least decode-step overhead, of the
    tracer (each way it was run) and the other ways measured."""
    out = {}
    for mode in ("graph", "eager"):
        cands = {"profilemate-bpf": o.get(mode, {}).get("decode_slowdown")}
        if mode == "eager":
            cands["profilemate-bpf --launches=false"] = o.get(NOLAUNCH, {}).get("decode_slowdown")
        for method in OTHER_METHODS:
            cands[method] = o.get(method, {}).get(mode, {}).get("decode_slowdown")
        cands = {k: v for k, v in cands.items() if v is not None}
        if len(cands) > 1:
            out[mode] = min(cands, key=cands.get)
    return out


def build(d):
    names = ("graph", "eager", NOLAUNCH_RUN, "prof", "prof-graph", "sync", "sync-eager")
    runs = {name: load_run(os.path.join(d, name)) for name in names}
    rep = {"accuracy": {}, "overhead": {}, "attach_ms": {}, "probes": {}}
    plain = {}
    for name in ("graph", "eager"):
        rep["accuracy"][name] = accuracy(runs[name])
        rep["overhead"][name], plain[name] = overhead(runs[name])
        rep["attach_ms"][name] = runs[name]["attach_ms"]
        rep["probes"][name] = runs[name]["probes"]
    if runs[NOLAUNCH_RUN]["truth"]:
        rep["accuracy"][NOLAUNCH] = accuracy(runs[NOLAUNCH_RUN])
        rep["overhead"][NOLAUNCH], _ = overhead(runs[NOLAUNCH_RUN])
    for method, by_mode in OTHER_METHODS.items():
        rep["overhead"][method] = {mode: other_mode_overhead(runs[run], plain[mode])
                                   for mode, run in by_mode.items()}
    rep["lowest_overhead"] = lowest(rep["overhead"])
    rep["coverage"] = coverage(runs["eager"], read_csv(os.path.join(d, "prof", "counts.csv")))
    rep["graph_decode"] = graph_decode(runs["graph"])
    rep["results"] = {k: r["result"] for k, r in runs.items()}
    return rep


def _accuracy_rows(add, a, pid, whose):
    """The rows on matching and duration accuracy, for one process's steps
    (`pid` and `whose` word the notes)."""
    add("steps matched tracer<->truth", f"{a['graph']['matched_steps']}/{a['graph']['truth_traced_steps']}",
        f"{a['eager']['matched_steps']}/{a['eager']['truth_traced_steps']}",
        f"tracer rows for {pid} / truth steps with the tracer attached")
    add("shape agreement (phase,batch,tokens)", _share(a["graph"].get("shape_agreement")),
        _share(a["eager"].get("shape_agreement")), "share of matched steps")
    for key, label in (("median_abs_rel_err", "duration |rel err| median"),
                       ("p99_abs_rel_err", "duration |rel err| p99"),
                       ("median_signed_rel_err", "duration rel err median (signed)")):
        f = _pcnt if "signed" in key else _absp
        add(label, f(a["graph"].get(key)), f(a["eager"].get(key)),
            f"duration_ms vs {whose}execute_model entry -> get_output return")


def _tracer_overhead_rows(add, o):
    """The rows on what the tracer costs, from overhead() per mode."""
    add("tracer overhead (step rate)", _ovh(1 / o["graph"]["rate_ratio"]) if o["graph"].get("rate_ratio") else "n/a",
        _ovh(1 / o["eager"]["rate_ratio"]) if o["eager"].get("rate_ratio") else "n/a",
        "plain rate / traced rate - 1")
    add("tracer overhead (shape-matched period)", _ovh(o["graph"].get("matched_slowdown")),
        _ovh(o["eager"].get("matched_slowdown")), "same batch shapes only")
    add("tracer overhead (decode steps, batch-matched period)", _ovh(o["graph"].get("decode_slowdown")),
        _ovh(o["eager"].get("decode_slowdown")), "median period per decode batch size, traced vs untraced")


def _nolaunch_rows(add, a, o):
    """The rows of the eager run traced with --launches=false, if it ran."""
    n, acc = o.get(NOLAUNCH), a.get(NOLAUNCH)
    if not n or not acc:
        return
    add("--launches=false: tracer overhead (shape-matched period)", "", _ovh(n.get("matched_slowdown")),
        "a run of its own, traced vs untraced windows; launches not counted")
    add("--launches=false: tracer overhead (decode steps, batch-matched period)", "",
        _ovh(n.get("decode_slowdown")), "median period per decode batch size, traced vs untraced")
    add("--launches=false: duration |rel err| median / p99", "",
        f"{_absp(acc.get('median_abs_rel_err'))} / {_absp(acc.get('p99_abs_rel_err'))}",
        f"{acc['matched_steps']}/{acc['truth_traced_steps']} steps matched")


def _coverage_rows(add, c, prof_result):
    """The rows on launch coverage (coverage()) and on host syncs the
    profiled eager run flagged."""
    add("launch coverage (tracer/profiler kernels) median", "",
        fmt(c.get("median_ratio"), ".4f"),
        f"{c['compared_steps']} steps by {c['method']}; min {fmt(c.get('min_ratio'), '.3f')} "
        f"max {fmt(c.get('max_ratio'), '.3f')}; within 1%: {_share(c.get('within_1pct'))}")
    for ph, (tr, pr) in c.get("median_per_phase", {}).items():
        add(f"launches/step {ph} (tracer vs profiler kernels)", "", f"{tr} vs {pr}", "medians")
    if "flagged_syncs" in (prof_result or {}):
        add("host syncs flagged in eager steps", "", str(prof_result["flagged_syncs"]),
            "torch.cuda sync debug mode over the profiled steps; expect 0")


def table(rep):
    a, o, c = rep["accuracy"], rep["overhead"], rep["coverage"]
    lines = []

    def add(metric, graph, eager, note=""):
        lines.append(f"| {metric} | {graph} | {eager} | {note} |")

    lines.append("| metric | graph mode | eager mode | note |")
    lines.append("|---|---|---|---|")
    _accuracy_rows(add, a, "the pid", "")
    add("cpu_ms |rel err| median", _absp(a["graph"].get("cpu_ms_median_abs_rel_err")),
        _absp(a["eager"].get("cpu_ms_median_abs_rel_err")), "vs execute_model entry -> sample_tokens return")
    add("interval_ms |rel err| median", _absp(a["graph"].get("interval_ms_median_abs_rel_err")),
        _absp(a["eager"].get("interval_ms_median_abs_rel_err")), "vs entry -> next step's entry")
    add("plain steps/s", fmt(o["graph"].get("plain_steps_per_sec"), ".1f"),
        fmt(o["eager"].get("plain_steps_per_sec"), ".1f"), "untraced windows")
    add("traced steps/s", fmt(o["graph"].get("traced_steps_per_sec"), ".1f"),
        fmt(o["eager"].get("traced_steps_per_sec"), ".1f"), "tracer attached")
    _tracer_overhead_rows(add, o)
    _nolaunch_rows(add, a, o)
    for method, label in (("sync_every_step", "--sync-every-step"), ("torch_profiler", "--torch-profiler")):
        m = o.get(method, {})
        g, e = m.get("graph", {}), m.get("eager", {})
        add(f"{label} overhead (shape-matched period)", _ovh(g.get("matched_slowdown")),
            _ovh(e.get("matched_slowdown")),
            f"separate run vs the plain windows; steps/s {fmt(g.get('steps_per_sec'), '.1f')}, "
            f"{fmt(e.get('steps_per_sec'), '.1f')}")
        add(f"{label} overhead (decode steps, batch-matched period)", _ovh(g.get("decode_slowdown")),
            _ovh(e.get("decode_slowdown")), "median period per decode batch size vs plain")
    low = rep.get("lowest_overhead", {})
    add("lowest decode-step overhead of the three", low.get("graph", "n/a"), low.get("eager", "n/a"),
        "profilemate-bpf (eager: also with --launches=false), --sync-every-step, --torch-profiler")
    _coverage_rows(add, c, (rep.get("results") or {}).get("prof"))
    gres = (rep.get("results") or {}).get("graph") or {}
    add("CUDA graphs captured (failures)", f"{gres.get('graphs')} ({gres.get('graph_capture_failures')})",
        "", "one per decode batch size 1-32; failed sizes run eagerly")
    g = rep.get("graph_decode", {})
    launches = g.get("median_launches")
    add("graph decode: graph_launches, launches per step", f"{g.get('median_graph_launches')}, "
        f"{'not counted' if g and launches is None else launches}", "",
        f"{g.get('decode_steps')} decode steps traced")
    att = rep["attach_ms"]
    add("attach time ms (per tracer window)", ",".join(map(str, att["graph"])) or "n/a",
        ",".join(map(str, att["eager"])) or "n/a",
        f"probes: {rep['probes']['graph'][:1] or rep['probes']['eager'][:1]}")
    return "\n".join(lines)


# --- tensor parallelism ---------------------------------------------------------
TP_RUNS = ("graph", "eager", "prof")
RANK_FILE_RE = re.compile(r"truth_rank(\d+)\.csv$")


def is_tp(d):
    return bool(glob.glob(os.path.join(d, "graph", "truth_rank*.csv")))


def load_tp_run(d):
    """load_run of an engine's directory, plus "ranks": {rank: run of that
    rank alone} (its truth, its worker's result, the tracer rows of its pid)
    and "spread": each tracer window's summary.json "_ranks"."""
    run = load_run(d)
    engine = run["result"] or {}
    per_rank_results = engine.get("ranks") or []
    run["ranks"] = {}
    for path in sorted(glob.glob(os.path.join(d, "truth_rank*.csv"))):
        rank = int(RANK_FILE_RE.search(path).group(1))
        res = per_rank_results[rank] if rank < len(per_rank_results) else None
        truth = read_csv(path)
        pid = str(res["pid"]) if res else (truth[0]["pid"] if truth else None)
        own = [r for r in run["tracer"] if r.get("pid") == pid]
        run["ranks"][rank] = {"truth": truth, "tracer": run["tracer"], "tracer_own": own,
                              "result": res, "attach_ms": run["attach_ms"],
                              "probes": run["probes"], "pid": pid}
    run["spread"] = []
    for path in sorted(glob.glob(os.path.join(d, "trace*", "summary.json"))):
        try:
            with open(path) as f:
                run["spread"].append(json.load(f).get("_ranks"))
        except (OSError, ValueError):
            run["spread"].append(None)
    return run


def rank_labels(rank, run):
    """How the tracer labelled this rank's process: share of its rows whose
    rank column is `rank`, and the titles seen."""
    rows = run["tracer_own"]
    if not rows:
        return {"rows": 0}
    return {"rows": len(rows), "rank_ok": sum(r.get("rank") == str(rank) for r in rows) / len(rows),
            "titles": sorted({r.get("process", "") for r in rows})}


def cross_rank(run):
    """The spread of each step over the ranks, recomputed from the tracer's
    rows (slowest minus fastest duration_ms among the ranks' pids, steps that
    every rank timed) and, for the same steps, from the ranks' truths
    (host_ms); plus the tracer's own "_ranks" of each window."""
    ranks = run["ranks"]
    by_step = {}
    for rank, rr in ranks.items():
        for r in rr["tracer_own"]:
            by_step.setdefault(int(r["step"]), {})[rank] = float(r["duration_ms"])
    truth = {rank: {int(t["step"]): float(t["host_ms"]) for t in rr["truth"]}
             for rank, rr in ranks.items()}
    spreads, true_spreads, slowest, diffs = [], [], {}, []
    for step, d in sorted(by_step.items()):
        if len(d) < len(ranks) or len(ranks) < 2:
            continue
        spread = max(d.values()) - min(d.values())
        spreads.append(spread)
        top = max(d, key=d.get)
        slowest[top] = slowest.get(top, 0) + 1
        tv = [truth[r].get(step) for r in ranks]
        if all(v is not None and v > 0 for v in tv):
            true_spreads.append(max(tv) - min(tv))
            diffs.append(abs(spread - true_spreads[-1]))
    out = {"aligned_steps": len(spreads), "tracer_windows": run["spread"]}
    if spreads:
        out["recomputed"] = {"mean_ms": statistics.mean(spreads), "p50_ms": pct(spreads, 50),
                             "p95_ms": pct(spreads, 95), "p99_ms": pct(spreads, 99),
                             "slowest": {str(k): v for k, v in sorted(slowest.items())}}
    if true_spreads:
        out["truth"] = {"mean_ms": statistics.mean(true_spreads),
                        "p50_ms": pct(true_spreads, 50), "p99_ms": pct(true_spreads, 99),
                        "median_abs_diff_ms": statistics.median(diffs)}
    return out


def build_tp(d):
    runs = {name: load_tp_run(os.path.join(d, name)) for name in TP_RUNS}
    ranks = sorted(set(runs["graph"]["ranks"]) | set(runs["eager"]["ranks"]))
    rep = {"tp": len(ranks), "ranks": {}, "cross_rank": {}, "attach_ms": {}, "probes": {},
           "results": {k: r["result"] for k, r in runs.items()}}
    for name in ("graph", "eager"):
        rep["attach_ms"][name] = runs[name]["attach_ms"]
        rep["probes"][name] = runs[name]["probes"]
        rep["cross_rank"][name] = cross_rank(runs[name])
    empty = {"truth": [], "tracer": [], "tracer_own": [], "result": None}
    for rank in ranks:
        one = {"accuracy": {}, "overhead": {}, "labels": {}}
        plain = {}
        for name in ("graph", "eager"):
            rr = runs[name]["ranks"].get(rank, empty)
            one["accuracy"][name] = accuracy(rr)
            one["overhead"][name], plain[name] = overhead(rr)
            one["labels"][name] = rank_labels(rank, rr)
        prof = runs["prof"]["ranks"].get(rank, empty)
        one["overhead"]["torch_profiler"] = other_mode_overhead(prof, plain["eager"])
        one["coverage"] = coverage(runs["eager"]["ranks"].get(rank, empty), read_csv(
            os.path.join(d, "prof", f"counts_rank{rank}.csv")))
        one["graph_decode"] = graph_decode(runs["graph"]["ranks"].get(rank, empty))
        one["results"] = {name: runs[name]["ranks"].get(rank, empty)["result"]
                          for name in TP_RUNS}
        rep["ranks"][str(rank)] = one
    return rep


def _pcnt(x):
    return "n/a" if x is None else f"{100 * x:+.2f}%"


def _share(x):
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _absp(x):
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _ovh(x):  # slowdown factor -> overhead percent
    return "n/a" if x is None else f"{100 * (x - 1):+.1f}%"


def _spread_text(s):
    if not s:
        return "n/a"
    text = (f"n={s.get('count')} mean {fmt(s.get('mean_ms'), '.3f')} p50 {fmt(s.get('p50_ms'), '.3f')} "
            f"p95 {fmt(s.get('p95_ms'), '.3f')} p99 {fmt(s.get('p99_ms'), '.3f')} ms")
    slow = s.get("slowest") or []
    if slow:
        text += "; slowest " + ", ".join(
            f"TP{x.get('rank')} {_share(x.get('share'))}" for x in slow)
    return text


def _cross_rank_text(x):
    """One cell of the spread recomputed from the CSV or the truths."""
    if not x:
        return "n/a"
    t = f"mean {fmt(x.get('mean_ms'), '.3f')} p50 {fmt(x.get('p50_ms'), '.3f')} " \
        f"p99 {fmt(x.get('p99_ms'), '.3f')} ms"
    if "slowest" in x:
        t += "; slowest " + ", ".join(f"TP{k} {v}" for k, v in x["slowest"].items())
    if "median_abs_diff_ms" in x:
        t += f"; |tracer-truth| median {fmt(x['median_abs_diff_ms'], '.3f')} ms"
    return t


def table_tp(rep):
    lines = []

    def add(metric, graph, eager, note=""):
        lines.append(f"| {metric} | {graph} | {eager} | {note} |")

    for rank, one in rep["ranks"].items():
        a, o, c = one["accuracy"], one["overhead"], one["coverage"]
        lb = one["labels"]
        lines.append("")
        lines.append(f"### rank {rank} (VLLM::Worker_TP{rank})")
        lines.append("")
        lines.append("| metric | graph mode | eager mode | note |")
        lines.append("|---|---|---|---|")
        add("tracer rows labelled rank " + rank, _share(lb["graph"].get("rank_ok")),
            _share(lb["eager"].get("rank_ok")),
            "titles: " + ", ".join(sorted(set(lb["graph"].get("titles", []))
                                          | set(lb["eager"].get("titles", [])))))
        _accuracy_rows(add, a, "the rank's pid", "the rank's ")
        add("plain / traced steps/s", f"{fmt(o['graph'].get('plain_steps_per_sec'), '.1f')} / "
            f"{fmt(o['graph'].get('traced_steps_per_sec'), '.1f')}",
            f"{fmt(o['eager'].get('plain_steps_per_sec'), '.1f')} / "
            f"{fmt(o['eager'].get('traced_steps_per_sec'), '.1f')}", "untraced / traced windows")
        _tracer_overhead_rows(add, o)
        p = o.get("torch_profiler", {})
        add("--torch-profiler overhead", "", _ovh(p.get("matched_slowdown")),
            f"shape-matched vs plain eager; steps/s {fmt(p.get('steps_per_sec'), '.1f')}")
        add("--torch-profiler overhead (decode steps)", "", _ovh(p.get("decode_slowdown")),
            "median period per decode batch size vs plain eager")
        _coverage_rows(add, c, one["results"].get("prof"))
        gres = one["results"].get("graph") or {}
        add("CUDA graphs captured (failures)",
            f"{gres.get('graphs')} ({gres.get('graph_capture_failures')})", "",
            "decode batch sizes 1-32, NCCL all_reduce inside; failed sizes run eagerly")
        g = one.get("graph_decode", {})
        add("graph decode: graph_launches, launches per step",
            f"{g.get('median_graph_launches')}, {g.get('median_launches')}", "",
            f"{g.get('decode_steps')} decode steps traced")
    lines.append("")
    lines.append(f"### across the {rep['tp']} ranks of the server")
    lines.append("")
    lines.append("| metric | graph mode | eager mode | note |")
    lines.append("|---|---|---|---|")
    cr = rep["cross_rank"]
    n_win = max(len(cr["graph"].get("tracer_windows", [])), len(cr["eager"].get("tracer_windows", [])))
    for i in range(n_win):
        g = cr["graph"]["tracer_windows"][i] if i < len(cr["graph"]["tracer_windows"]) else None
        e = cr["eager"]["tracer_windows"][i] if i < len(cr["eager"]["tracer_windows"]) else None
        add(f"tracer _ranks, window {i + 1}", _spread_text(g), _spread_text(e),
            "summary.json: slowest minus fastest rank per step")
    for name_key, label in (("recomputed", "spread from the CSV"), ("truth", "spread in the truths")):
        add(label, _cross_rank_text(cr["graph"].get(name_key)), _cross_rank_text(cr["eager"].get(name_key)),
            f"{cr['graph'].get('aligned_steps')} / {cr['eager'].get('aligned_steps')} "
            "steps timed on every rank (all windows)")
    att = rep["attach_ms"]
    add("attach time ms (per tracer window)", ",".join(map(str, att["graph"])) or "n/a",
        ",".join(map(str, att["eager"])) or "n/a",
        f"whole tree from --pid <engine>; probes: "
        f"{rep['probes']['graph'][:1] or rep['probes']['eager'][:1]}")
    return "\n".join(lines).lstrip("\n")


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    if is_tp(argv[1]):
        rep = build_tp(argv[1])
        text = table_tp(rep)
    else:
        rep = build(argv[1])
        text = table(rep)
    print(text)
    with open(os.path.join(argv[1], "report.json"), "w") as f:
        json.dump(rep, f, indent=1, default=str)
    with open(os.path.join(argv[1], "table.txt"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main(sys.argv)

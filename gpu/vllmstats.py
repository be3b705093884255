"""The validation's numbers: ratios of paired batches with their 95%
confidence intervals, agreement of the tracer with vLLM's counters, and the
table that prints them. Pure Python, tested without a GPU."""
import math
import statistics
from typing import NamedTuple, Optional

# Two-sided 95% quantiles of Student's t, by degrees of freedom.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
        16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042,
        40: 2.021, 60: 2.000, 120: 1.980}


def t95(df):
    """The 97.5% quantile of t with df degrees of freedom (the next smaller
    tabulated df where df is not tabulated: a slightly wider interval)."""
    if df < 1:
        return math.inf
    return _T95[max(k for k in _T95 if k <= df)] if df <= 120 else 1.960


def mean_ci(xs):
    """Mean, half-width of its 95% confidence interval, standard deviation."""
    n = len(xs)
    if n == 0:
        return None, None, None
    m = statistics.fmean(xs)
    if n == 1:
        return m, math.inf, 0.0
    sd = statistics.stdev(xs)
    return m, t95(n - 1) * sd / math.sqrt(n), sd


class Ratio(NamedTuple):
    """A ratio's estimate: the geometric mean, the half-width of its 95%
    confidence interval [lo, hi], and the standard deviation of one ratio's
    log (the design's noise); all None without ratios."""
    mean: Optional[float]
    half: Optional[float]
    sd: Optional[float]
    lo: Optional[float]
    hi: Optional[float]


_NO_RATIO = Ratio(None, None, None, None, None)


def _from_logs(m, h, sd):
    """The Ratio of a mean of logs m, its interval's half-width h, sd."""
    if not math.isfinite(h):
        return Ratio(math.exp(m), h, sd, None, None)
    lo, hi = math.exp(m - h), math.exp(m + h)
    return Ratio(math.exp(m), (hi - lo) / 2, sd, lo, hi)


def ratio_ci(ratios):
    """The Ratio of ratios: their mean and interval on the log scale, taken
    back. Ratios are averaged on the log scale because the arithmetic mean
    of ratios is biased upward by about sd²/2, whatever the cost: with
    windows that wander by 11%, an A/A test of identical servers comes out
    about 0.6% above 1, and so does every traced/untraced figure."""
    m, h, sd = mean_ci([math.log(x) for x in ratios])
    return _NO_RATIO if m is None else _from_logs(m, h, sd)


def pooled_ratio_ci(runs):
    """The Ratio of several runs' ratios pooled by inverse variance on the
    log scale: each run's mean weighted by 1/se² (fixed-effect pooling), so
    that runs whose designs differ in noise count by what they measured,
    not by their number of pairs. Falls back to ratio_ci over all the
    ratios where fewer than two runs have two pairs or more, or where a
    run's ratios do not vary (its weight would be infinite); otherwise a run
    of one pair, whose noise is unknown, is left out."""
    logs = [[math.log(x) for x in r] for r in runs if len(r) >= 2]
    if len(logs) < 2 or not all(statistics.variance(r) for r in logs):
        return ratio_ci([x for r in runs for x in r])
    weights = [len(r) / statistics.variance(r) for r in logs]
    m = sum(w * statistics.fmean(r) for w, r in zip(weights, logs)) / sum(weights)
    h = t95(sum(len(r) - 1 for r in logs)) / math.sqrt(sum(weights))
    return _from_logs(m, h, statistics.stdev([x for r in logs for x in r]))


def windows_of(batches):
    """The pairs of one comparison: {(run, pair): [(untraced, traced), ...]},
    one tuple per window from the records of both servers of each window,
    or with one server (servers: 1) a single tuple of its two windows (run:
    the record's run where runs are pooled, see load_runs)."""
    by = {}
    for b in batches:
        # A lone server's two windows are one comparison.
        window = 0 if _lone(b) else b["window"]
        by.setdefault((b.get("run", ""), b["pair"], window), {})[b["traced"]] = b
    pairs = {}
    for (run, pair, _), w in sorted(by.items()):
        if len(w) == 2:
            pairs.setdefault((run, pair), []).append((w[False], w[True]))
    return pairs


def _lone(b):
    """Whether record b is of --servers 1 (older records have two)."""
    return b.get("servers", 2) == 1


def _whole(ws):
    """Whether a pair has all its windows: two with two servers, one tuple
    of both windows with one."""
    return len(ws) == (1 if _lone(ws[0][0]) else 2)


def rate(b, key):
    return b[key] / b["wall_s"] if b["wall_s"] > 0 else 0.0


def _per_pair(pairs, f):
    """f(untraced, traced) per window, combined per pair of windows by the
    geometric mean: each server was traced in one of the two, so a speed
    difference between the servers cancels (with one server, f of its two
    windows). {run: [value per whole pair]}."""
    out = {}
    for (run, _), ws in pairs.items():
        vals = [f(u, t) for u, t in ws]
        if _whole(ws) and all(v > 0 for v in vals):
            out.setdefault(run, []).append(math.prod(vals) ** (1 / len(vals)))
    return out


def overhead(batches):
    """Traced over untraced generated tokens/s and steps/s per pair of
    windows and the speed of server 1 over server 0 (their asymmetry, which
    the pairing cancels), as Ratios; the servers' extra CPU time per step
    when traced, as mean_ci triples."""
    pairs = windows_of(batches)
    ratio = lambda key: lambda u, t: rate(t, key) / rate(u, key) if rate(u, key) else 0.0
    # Per step of each server: under steady load both run for the same
    # seconds at the same CPU use (EngineCore spins while it waits), so
    # their CPU seconds differ by nothing and their steps by the cost.
    per_step = lambda b, key: sum(b[k] for k in key) / b["steps"] * 1e3
    def extra(key):
        return [statistics.fmean(per_step(t, key) - per_step(u, key) for u, t in ws)
                for ws in pairs.values() if _whole(ws) and all(t["steps"] and u["steps"] for u, t in ws)]
    cpu, sys_ = extra(("cpu_user", "cpu_sys")), extra(("cpu_sys",))
    def b_over_a(u, t):
        a, b = sorted((u, t), key=lambda r: r["server"])
        return rate(b, "gen_tokens") / rate(a, "gen_tokens") if rate(a, "gen_tokens") else 0.0
    asym = _per_pair({k: ws for k, ws in pairs.items() if not _lone(ws[0][0])}, b_over_a)
    return dict(pairs=len(pairs), tokens=pooled_ratio_ci(_per_pair(pairs, ratio("gen_tokens")).values()),
                steps=pooled_ratio_ci(_per_pair(pairs, ratio("steps")).values()),
                cpu_ms_per_step=mean_ci(cpu), sys_ms_per_step=mean_ci(sys_), asymmetry=pooled_ratio_ci(asym.values()))


#: vLLM's counters that a traced window of --load steady also records over
#: its tracer's whole trace, as trace_<name>: the window itself is a span
#: inside the trace, which the tracer's steps are not.
TRACE_COUNTERS = ("steps", "step_tokens", "prompt_tokens", "preemptions", "spec_drafts", "spec_accepted")


def over_trace(b, key):
    """vLLM's counter key over b's trace: trace_<key> where the window
    recorded one, else the window's own (a batch is its trace)."""
    return b.get("trace_" + key, b[key])


def _span(traced, tracer_key):
    """"window" where every traced window has tracer_key's count of the
    tracer's rows within it (window_<tracer_key>), else "trace"."""
    return "window" if all("window_" + tracer_key in b for b in traced) else "trace"


def _pair(b, span, tracer_key, vllm_key):
    """(tracer, vLLM) of one traced window over span: the tracer's rows
    within the window against the window's counters, or its whole trace
    against the counters over it (see over_trace)."""
    if span == "window":
        return b.get("window_" + tracer_key) or 0, b.get(vllm_key) or 0
    return b.get(tracer_key) or 0, over_trace(b, vllm_key) or 0


def _sums(traced, span, tracer_key, vllm_key):
    pairs = [_pair(b, span, tracer_key, vllm_key) for b in traced]
    return sum(p[0] for p in pairs), sum(p[1] for p in pairs)


def by_span(batches, tracer_key):
    """batches split into those whose windows have tracer_key's count within
    them (window_<tracer_key>) and the rest, leaving out an empty part: runs
    of steady windows pooled with runs of batches, or with older records,
    each keep their own span in the table instead of all falling back to
    the whole traces: under steady load a trace's counters run from the
    tracer's start, before its probes are attached (lease 10: 0.958 over
    the traces, 0.9996 over the windows)."""
    parts = ([b for b in batches if "window_" + tracer_key in b],
             [b for b in batches if "window_" + tracer_key not in b])
    return [p for p in parts if p]


def agreement(batches):
    """Tracer against vLLM's counters over the traced windows that timed
    steps: (tracer sum, vLLM sum) of steps, step tokens and prompt tokens,
    and span: "window" where every window has the tracer's steps whose
    output was ready within it (window_tracer_*, compared with the window's
    counters), else "trace" (the tracer's whole trace, against the counters
    over it: see over_trace)."""
    traced = [b for b in batches if b["traced"] and b.get("tracer_steps") is not None]
    if not traced:
        return None
    span = _span(traced, "tracer_steps")
    s = lambda k: sum(b[k] for b in traced)
    steps = [_pair(b, span, "tracer_steps", "steps") for b in traced]
    return dict(batches=len(traced), span=span, steps=_sums(traced, span, "tracer_steps", "steps"),
                tokens=_sums(traced, span, "tracer_tokens", "step_tokens"),
                prompt=_sums(traced, span, "tracer_prefill_tokens", "prompt_tokens"),
                launches_per_step=s("tracer_launches") / max(s("tracer_steps"), 1),
                graphs_per_step=s("tracer_graphs") / max(s("tracer_steps"), 1),
                syncs_per_step=s("tracer_syncs") / max(s("tracer_steps"), 1),
                worst_batch_steps=max(abs(t / v - 1) if v else 1 for t, v in steps))


def sched_agreement(batches):
    """The tracer's scheduler totals against vLLM's over the traced windows
    that have them: (tracer, vLLM) sums of scheduler steps, preemptions,
    draft and accepted tokens, over span as in agreement (in a window, the
    scheduler steps are the forward passes joined to one); joined, the
    whole traces' sched_step records joined to a forward pass; and the KV
    cache's use, the tracer's mean and peak over the traces' steps against
    vLLM's gauge sampled in time (close, not equal: one weighs steps, the
    other seconds)."""
    traced = [b for b in batches if b["traced"] and b.get("tracer_sched_sched_steps") is not None]
    if not traced:
        return None
    span = _span(traced, "tracer_sched_sched_steps")
    both = lambda tracer_key, vllm_key: _sums(traced, span, tracer_key, vllm_key)
    kv = [b for b in traced if b.get("kv_samples")]
    # The tracer's KV figures are null where no record knew the usage.
    kv_known = [b for b in traced if b.get("tracer_sched_mean_kv_cache_usage") is not None]
    kv_steps = sum(b["tracer_sched_sched_steps"] for b in kv_known)
    peaks = [b["tracer_sched_peak_kv_cache_usage"] for b in kv_known
             if b.get("tracer_sched_peak_kv_cache_usage") is not None]
    return dict(batches=len(traced), span=span, sched_steps=both("tracer_sched_sched_steps", "steps"),
                joined=sum(b.get("tracer_sched_joined") or 0 for b in traced),
                preemptions=both("tracer_sched_preemptions", "preemptions"),
                drafts=both("tracer_sched_spec_proposed", "spec_drafts"),
                accepted=both("tracer_sched_spec_accepted", "spec_accepted"),
                kv_mean=(sum(b["tracer_sched_mean_kv_cache_usage"] * b["tracer_sched_sched_steps"] for b in kv_known)
                         / kv_steps if kv_steps else None,
                         statistics.fmean(b["kv_mean"] for b in kv) if kv else None),
                kv_peak=(max(peaks, default=None), max((b["kv_peak"] for b in kv), default=None)))


def _ratio(x):
    if x.mean is None:
        return "n/a"
    return f"{x.mean:.3f} ±{x.half:.3f}" if math.isfinite(x.half) else f"{x.mean:.3f}"


def _interval(x):
    return "n/a" if x.lo is None else f"[{x.lo:.3f}, {x.hi:.3f}]"


def _ms(x):
    m, h, _ = x
    return "n/a" if m is None else f"{m:+.3f}" + (f" ±{h:.3f}" if math.isfinite(h) else "")


def _agree(pair):
    a, b = pair
    return f"{a:.0f} / {b:.0f} = {a / b:.4f}" if b else f"{a:.0f} / 0"


def table(batches, modes_cfgs):
    """The validation table: one overhead line per (mode, config) run, then
    agreement lines per (mode, config) that timed steps, one per span
    (see by_span)."""
    of = lambda mode, cfg: [b for b in batches if b["mode"] == mode and b["config"] == cfg]
    lines = ["Overhead: traced / untraced server, the same load on both at once; per pair of windows (each "
             "server traced in one) the geometric mean, or with one server (--servers 1) its traced window over "
             "its untraced one; geometric mean over pairs ±95% CI half-width [interval], runs pooled by inverse "
             "variance; sd: spread of one pair's log (the design's noise; config 'untraced' runs no tracer: "
             "an A/A test); "
             "b/a: speed of server b over a",
             f"{'mode':<11} {'config':<14} {'pairs':>5}  {'gen tokens/s':<14} {'interval':<16} {'sd':>6}  "
             f"{'steps/s':<14} {'b/a':<14} {'server CPU ms/step (sys)':<26}"]
    for mode, cfg in modes_cfgs:
        bs = of(mode, cfg)
        if not bs:
            continue
        o = overhead(bs)
        sd = o["tokens"].sd
        lines.append(f"{mode:<11} {cfg:<14} {o['pairs']:>5}  {_ratio(o['tokens']):<14} {_interval(o['tokens']):<16} "
                     f"{'n/a' if sd is None else f'{sd:.3f}':>6}  {_ratio(o['steps']):<14} {_ratio(o['asymmetry']):<14} "
                     f"{_ms(o['cpu_ms_per_step'])} ({_ms(o['sys_ms_per_step'])})")
    lines += ["", "Agreement: tracer / vLLM counters over the traced windows (steps: iteration_tokens_total "
              "count; tokens: its sum; prompt: prompt_tokens_total; over window: the tracer's steps whose output "
              "was ready in the window; over trace: its whole trace, a batch or, under steady load, the counters "
              "from the tracer's start, before its probes are attached: close, not exact)",
              f"{'mode':<11} {'config':<14} {'over':<6} {'steps':<26} {'step tokens':<30} {'prompt tokens':<30} "
              f"{'per step: launches graphs syncs':<32}"]
    for mode, cfg in modes_cfgs:
        for a in filter(None, map(agreement, by_span(of(mode, cfg), "tracer_steps"))):
            if not a["steps"][0]:
                continue
            lines.append(f"{mode:<11} {cfg:<14} {a['span']:<6} {_agree(a['steps']):<26} {_agree(a['tokens']):<30} "
                         f"{_agree(a['prompt']):<30} {a['launches_per_step']:7.1f} {a['graphs_per_step']:6.2f} "
                         f"{a['syncs_per_step']:6.2f}")
    sched = [(m, c, sched_agreement(part)) for m, c in modes_cfgs
             for part in by_span(of(m, c), "tracer_sched_sched_steps")]
    sched = [(m, c, a) for m, c, a in sched if a]
    if sched:
        lines += ["", "Scheduler: tracer / vLLM over the traced windows, as above (steps: the sched_step records, "
                  "over a window those joined to a forward pass in it, against iteration_tokens_total's count; "
                  "joined: the whole traces' records joined to a forward pass; preemptions: "
                  "num_preemptions_total; drafts, accepted: spec_decode_num_{draft,accepted}_tokens_total; KV use: "
                  "the tracer's mean and peak over the traces' steps, vLLM's kv_cache_usage_perc sampled every 0.1 s)",
                  f"{'mode':<11} {'config':<14} {'over':<6} {'steps':<26} {'joined':>7} {'preemptions':<22} "
                  f"{'drafts':<24} {'accepted':<24} {'KV mean':<14} {'KV peak':<14}"]
        kvs = lambda p: " / ".join("n/a" if v is None else f"{v:.3f}" for v in p)
        for m, c, a in sched:
            lines.append(f"{m:<11} {c:<14} {a['span']:<6} {_agree(a['sched_steps']):<26} {a['joined']:>7.0f} "
                         f"{_agree(a['preemptions']):<22} {_agree(a['drafts']):<24} {_agree(a['accepted']):<24} "
                         f"{kvs(a['kv_mean']):<14} {kvs(a['kv_peak']):<14}")
    return "\n".join(lines)

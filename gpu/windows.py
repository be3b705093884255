"""The windows of gpu/vllm_validate.py: what vLLM's counters and the
servers' CPU times say of one span of a comparison, a batch run on the
servers at once (--load batch) or seconds of their steady load (--load
steady), with the tracer attached to the server in the traced role."""
import os
import threading
import time

import vllmserve
import vllmstats

def counters(m0, m1, cpu0, cpu1):
    """What vLLM's counters and the CPU times say of the span between two
    readings of them."""
    d = vllmserve.delta(m0, m1)
    return dict(steps=d[vllmserve.STEPS], step_tokens=d[vllmserve.STEP_TOKENS], prompt_tokens=d[vllmserve.PROMPT],
                vllm_gen_tokens=d[vllmserve.GENERATED], preemptions=d[vllmserve.PREEMPTIONS],
                spec_drafts=d[vllmserve.DRAFTS], spec_accepted=d[vllmserve.ACCEPTED],
                cpu_user=cpu1[0] - cpu0[0], cpu_sys=cpu1[1] - cpu0[1])


def kv_summary(samples):
    """The record's fields of vLLM's KV-usage gauge sampled over a window
    (none without samples)."""
    if not samples:
        return {}
    return dict(kv_samples=len(samples), kv_mean=sum(samples) / len(samples), kv_peak=max(samples))


def measure(server, reqs, concurrency, out, key, sample_kv=False):
    """Runs reqs once on server and stores in out[key] what vLLM's counters
    and the CPU times say of it (and its KV-usage gauge, sampled every
    0.1 s, if sample_kv)."""
    m0, cpu0 = server.metrics(), server.cpu_seconds()
    kv, done = [], threading.Event()
    if sample_kv:
        def sample():
            while not done.wait(0.1):
                kv.append(server.metrics().get(vllmserve.KV_USAGE, 0.0))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    wall, gen = server.run_batch(reqs, concurrency)
    done.set()
    cpu1, m1 = server.cpu_seconds(), server.metrics()
    out[key] = dict(wall_s=wall, gen_tokens=gen, **counters(m0, m1, cpu0, cpu1))
    out[key].update(kv_summary(kv))


def batch_window(pair_of_servers, traced, reqs, concurrency, tracer=None, settle=0.5, sample_kv=False, expect=None):
    """One window of --load batch: the same batch on both servers at once,
    the one at index traced with tracer attached (None: neither, an A/A
    window). Running both at once puts them under the same machine: this
    host's CPUs change speed by tens of percent from one second to the
    next, which a comparison of batches run one after the other cannot tell
    from the tracer's cost. The batch begins settle seconds after the
    attach, or, where the tracer samples launches and expect (the batch's
    seconds, as the last ones took) is given, where a window of that length
    holds the sampling's steady share (tracerrun.duty_offset): a trace
    probes launches in its first second, which would otherwise cover the
    batch's prefill-heavy start far beyond a tenth of its steps."""
    offset = 0.0
    if tracer:
        tracer.wait_attached()
        attached = time.monotonic()
        offset = (tracer.duty_offset(expect) if expect else 0.0) or settle
        # The tracer's periodic work runs from here on, as in a long trace.
        time.sleep(max(0.0, offset - (time.monotonic() - attached)))
    out, mach0 = {}, machine_cpu()
    threads = [threading.Thread(target=measure, args=(s, reqs, concurrency, out, i, sample_kv))
               for i, s in enumerate(pair_of_servers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    mach1 = machine_cpu()
    if len(out) != len(pair_of_servers):
        raise RuntimeError("a batch failed (see the server logs)")
    for i, rec in out.items():
        rec.update(server=i, traced=i == traced, offset_s=offset, **machine_span(mach0, mach1))
    if tracer:
        out[traced]["tracer_cpu_s"] = tracer.stop()
        out[traced].update(tracer.results())
    return [out[i] for i in sorted(out)]


def snapshot(server):
    """(time, counters, CPU seconds) of server now; the time is the middle
    of the /metrics request."""
    t0 = time.monotonic()
    m = server.metrics()
    return (t0 + time.monotonic()) / 2, m, server.cpu_seconds()


def steady_window(pair_of_servers, traced, seconds, loads, tracer=None, sample_kv=False):
    """One window of --load steady: the servers' counters over the same
    seconds of their steady load, the one at index traced (-1: none) in the
    traced role, with tracer attached (None: an A/A window). The window
    begins duty_offset seconds after the tracer's probes are live, so that
    it holds launches probed for the share of its time a long trace does
    (one second in ten): a window of 10 s at once, one of 2.5 s after 0.75 s.
    The agreement compares the tracer's steps whose output was ready
    within the window with the window's counters; for a tracer that does
    not give its start on the clock, its whole trace with the traced
    server's counters read again once the tracer has detached."""
    offset, at_attach = 0.0, None
    if tracer:
        tracer.wait_attached()
        at_attach = snapshot(pair_of_servers[traced])  # the trace's start, for a tracer without its own
        offset = tracer.duty_offset(seconds)
        time.sleep(max(0.0, offset - (time.monotonic() - at_attach[0])))
    mach0 = machine_cpu()
    s0 = [snapshot(s) for s in pair_of_servers]
    kv = [[] for _ in pair_of_servers]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if sample_kv:
            for i, s in enumerate(pair_of_servers):
                kv[i].append(s.metrics().get(vllmserve.KV_USAGE, 0.0))
        time.sleep(max(0.0, min(0.1 if sample_kv else seconds, end - time.monotonic())))
    s1 = [snapshot(s) for s in pair_of_servers]
    mach1 = machine_cpu()
    for ld in loads:
        ld.check()
    out = []
    for i, ((t0, m0, c0), (t1, m1, c1)) in enumerate(zip(s0, s1)):
        rec = dict(wall_s=t1 - t0, **counters(m0, m1, c0, c1))
        rec.update(gen_tokens=rec["vllm_gen_tokens"], server=i, traced=i == traced, offset_s=offset,
                   **machine_span(mach0, mach1))
        rec.update(kv_summary(kv[i]))
        out.append(rec)
    if tracer:
        end_of_trace = []
        out[traced]["tracer_cpu_s"] = tracer.stop(lambda: end_of_trace.append(snapshot(pair_of_servers[traced])))
        _, m2, c2 = end_of_trace[0]
        whole = counters(at_attach[1], m2, at_attach[2], c2)
        out[traced].update({"trace_" + k: whole[k] for k in vllmstats.TRACE_COUNTERS})
        out[traced].update(tracer.results(window=(s0[traced][0], s1[traced][0])))
    return out


def machine_cpu():
    """Busy and stolen CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = v[3] + v[4]
    steal = v[7] if len(v) > 7 else 0
    return (sum(v[:8]) - idle) / hz, steal / hz


def machine_span(mach0, mach1):
    """The record's fields of the machine's busy and stolen CPU seconds
    between two machine_cpu readings."""
    return dict(machine_busy_s=mach1[0] - mach0[0], machine_steal_s=mach1[1] - mach0[1])

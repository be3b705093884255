#!/usr/bin/env python3
"""Validates profilemate-bpf against a real `vllm serve` and measures what
tracing it costs. Run as root on a GPU host where `python3 -c 'import vllm'`
works:

    python3 gpu/vllm_validate.py [--plan PLAN] [--pairs 8] [--data DIR]

For each mode of the plan it starts two identical `vllm serve` of a
random-weight 1.1B Llama (all at once, each with its own fixed KV cache, so
that their start-ups overlap), each with its own copy of the marker and of
the CUDA driver and runtime files (uprobes go on files: a tracer's probes
then reach one server only). It runs the same request batch over HTTP on
both servers at once, one of them with the tracer attached to its API
server's pid, in windows: in each pair of windows each server is traced
once, so a difference between the servers cancels. Running both at once
matters: this kind of host's CPUs change speed by tens of percent from one
second to the next, so batches run one after another differ by far more
than the tracer's cost.

Under --load steady (the default) both servers carry the same load all the
time, concurrency requests in flight, as a server in production does, and a
window is a span of --window seconds on the clock, both servers' counters
read at its ends: no batch's ramp and tail, and each window begins where it
holds the launch sampling's steady share (tracerrun.duty_offset). The
noise left: each server's speed wanders independently of the other's (over
2.5 s windows by 11% each, correlation 0.05). A pair's spread grows as the
windows shorten, but more slowly than 1/sqrt(time): 0.072 for 10 s
windows (lease 5), 0.109 for 2.5 s ones (lease 6). Short windows still give
the narrower interval per minute of measuring: the variance of the mean
times the seconds measured is 0.107 s for 10 s windows, 0.067 s for lease
6's 2.5 s ones (which began at once) and about 0.085 s with their 0.75 s
offset. --load batch runs the same batch on both at once instead, which
makes the agreement exact: a batch begins and ends with the server idle, so
the tracer's steps and vLLM's counters cover the same steps. A traced
batch begins where a window as long as the mode's last untraced batch
holds the launch sampling's steady share, as a steady window does (the
batches of leases 2-4 began 0.5 s after the attach and so had launches
probed over their prefill-heavy start, 20-40% of their time). Over the leases so far
batches were the quieter design: one pair (about 6.8 s) spread by
0.055-0.080 in graph mode (leases 2-4; lease 11, with the offset above,
0.071 in 7.2 s), steady 2.5 s windows (5.6-7 s a pair) by 0.090-0.132
(leases 6, 9, 10), i.e. a variance of the mean times the seconds measured
of 0.02-0.044 s against 0.057-0.122 s: a ±1% interval in about 22 minutes
of measuring instead of about an hour. The leases differ in day and host
as well as in design, so this is the leases' record, not a controlled
comparison; it is why batches are the design to measure a default with.

--servers 1 starts one server per mode instead and traces it in one window
of each pair, not in the other, the order alternating from pair to pair.
The server then has the GPU to itself, as in production; but a pair's
ratio then carries the server's change from one window to the next, where
side by side it carries two servers' independent wander, halved by the
pairing. Lease 7 measured it: one pair spread by 0.165 against two
servers' 0.109 (2.5 s windows), twice the variance per second of
measuring, and the lone server ran no faster. Two servers stay the default.

It prints one table:

- overhead: generated tokens/s and steps/s, traced over untraced, the
  geometric mean of the pairs with a 95% confidence interval (several
  runs given to --report pool by inverse variance), and the spread of one
  pair's log (the design's own noise; the `untraced` config runs no tracer
  at all, an A/A test of the design);
- agreement: the tracer's steps, step tokens and prompt tokens against
  vLLM's `iteration_tokens_total` and `prompt_tokens_total` (vLLM counts the
  token each request's prefill step samples among that step's tokens; the
  tracer counts scheduled tokens, one fewer per request). Under steady load
  the tracer's steps whose output was ready within the window, which its
  `_trace.start_monotonic_ns` puts on this script's clock.

PLAN is `mode:config,config;mode:...`. Modes: graph (CUDA graphs, the V2
model runner, vLLM's defaults), eager (--enforce-eager), v1 and v1-eager
(VLLM_USE_V2_MODEL_RUNNER=0). Configs: see CONFIGS; `cfg@NAME` runs cfg with
the tracer binary given as `--tracer NAME=PATH`.
"""
import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import vllmserve  # noqa: E402
import vllmstats  # noqa: E402
from tracerrun import Tracer  # noqa: E402
from windows import batch_window, steady_window  # noqa: E402

# Tracer flags per config; None runs no tracer (A/A). The no-* configs leave
# one class of probe out, so that comparing them with `default` locates the
# cost by measurement.
CONFIGS = {
    "default": [],
    "launches-all": ["--launches=all"],
    # The default before GPU waits were sampled: every synchronization timed.
    "syncs-all": ["--syncs=all"],
    "launches-off": ["--launches=false"],
    "no-marker": ["--leave-out=marker"],
    "no-sync": ["--leave-out=sync"],
    "no-graph": ["--leave-out=graph"],
    "no-fork": ["--leave-out=fork"],
    "no-rescan": ["--leave-out=rescan"],
    "no-probes": ["--leave-out=marker,sync,graph,launch,fork,rescan"],
    "untraced": None,
}
# Server settings per mode. kv-pressure and spec-ngram check the scheduler
# columns against vLLM's counters: a KV cache of about 29,000 tokens (22 KiB
# a token) for a load that wants about 44,000 preempts requests all along;
# n-gram speculation needs no draft model (vLLM runs it on the V1 runner).
MODES = {"graph": dict(), "eager": dict(eager=True), "v1": dict(v1=True), "v1-eager": dict(eager=True, v1=True),
         "kv-pressure": dict(kv_cache_bytes=640 << 20),
         "spec-ngram": dict(extra_args=("--speculative-config", json.dumps(
             dict(method="ngram", num_speculative_tokens=3, prompt_lookup_min=2, prompt_lookup_max=4))))}
#: Modes whose windows also sample vLLM's KV-usage gauge, for the tracer's
#: per-step KV usage to be compared with.
SAMPLE_KV = {"kv-pressure", "spec-ngram"}
DEFAULT_PLAN = ("graph:default,launches-off,no-marker,no-sync,no-graph,no-fork,no-rescan,no-probes,untraced;"
                "eager:default,launches-off;v1:default,launches-off")


def parse_plan(s, tracers):
    """'mode:cfg,cfg*3,cfg/4;mode:...' -> [(mode, [(cfg, times, every), ...])],
    checked (the tracer names against tracers, unless it is None). In every
    round cfg runs one pair, cfg*N runs N, and cfg/N one in every N rounds
    (from the first)."""
    plan = []
    for part in filter(None, (p.strip() for p in s.split(";"))):
        mode, _, cfgs = part.partition(":")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
        entries = []
        for c in [c.strip() for c in cfgs.split(",") if c.strip()] or ["default"]:
            times = every = 1
            for sep in "*/":
                c, found, n = c.partition(sep)
                if found:
                    if not (n.isdigit() and int(n) > 0):
                        raise ValueError(f"config {c!r}: {sep}{n} is not a positive integer")
                    times, every = (int(n), 1) if sep == "*" else (1, int(n))
                    break
            base, _, binname = c.partition("@")
            if base not in CONFIGS:
                raise ValueError(f"unknown config {base!r} (known: {', '.join(CONFIGS)})")
            if binname and tracers is not None and binname not in tracers:
                raise ValueError(f"config {c!r}: no --tracer {binname}=PATH")
            if c in (e[0] for e in entries):
                raise ValueError(f"config {c!r} twice in mode {mode} (give it a weight: {c}*N)")
            entries.append((c, times, every))
        plan.append((mode, entries))
    if not plan:
        raise ValueError("empty plan")
    return plan


def rounds(plan, r=0):
    """Round r of the plan: (mode, cfg) as often as its weight says, the
    repeats of a config spread over the round. Rounds run in turn, so a
    config cut short by a deadline still has as many pairs as the others
    (in proportion), and a drift of the machine reaches every config."""
    entries = [(m, c, n) for m, cfgs in plan for c, n, every in cfgs if r % every == 0]
    out = []
    for k in range(max((n for _, _, n in entries), default=0)):
        out += [(m, c) for m, c, n in entries if k < n]
    return out


def log(msg):
    print(f"[vllm-validate {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def install_marker(data, python, source):
    """The marker as a user installs it, into its own folder put first on
    the servers' PYTHONPATH: pip builds the wheel (its native library) and
    its vllm.general_plugins entry point is found there."""
    site = os.path.join(data, "marker-site")
    pip = [python, "-m", "pip", "install", "-q", "--no-deps", "--target", site, source]
    # Offline GPU hosts build with the setuptools they have; elsewhere pip
    # may fetch the build requirements.
    for isolation in (["--no-build-isolation"], []):
        shutil.rmtree(site, ignore_errors=True)
        if subprocess.run(pip + isolation, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            return site
    subprocess.run(pip, check=True)  # once more, to show pip's error
    return site


class SteadyLoads:
    """The steady load of one mode's servers at a time: a mode's pairs run
    under its own load, the other modes' servers idle (they share the
    servers' CPUs and the GPU)."""

    def __init__(self, servers, reqs, concurrency, ramp=5.0):
        self.servers, self.reqs, self.concurrency, self.ramp = servers, reqs, concurrency, ramp
        self.mode, self.loads = None, []

    def use(self, mode):
        """The loads of mode's servers, started (and the others stopped)
        if mode's are not the ones running."""
        if mode != self.mode:
            self.stop()
            self.loads = [vllmserve.SteadyLoad(s, self.reqs, self.concurrency) for s in self.servers[mode]]
            self.mode = mode
            log(f"{mode}: steady load of {self.concurrency} requests in flight on each server")
            time.sleep(self.ramp)  # the first requests all began at once
        return self.loads

    def stop(self):
        loads, self.loads, self.mode = self.loads, [], None
        for ld in loads:
            ld.stop()


def pin_cpus(pin):
    """The CPU sets of server a and server b (every mode's), or None; this
    process and its children (the load, the tracer) keep the rest. Pinned,
    a server's threads stay on the same cores from one window to the next:
    unpinned, the two servers of one window differed by up to 10% as their
    threads landed on faster or slower vCPUs, noise that swapping the
    traced server between the windows of a pair cannot cancel once the
    threads move. The tracer's own user-space work then runs beside the
    servers, not on their cores; its probes still run in the servers'
    threads, where their cost is measured."""
    if not pin:
        return None
    sets = vllmserve.split_cores(sorted(os.sched_getaffinity(0)), 2)
    if sets is None:
        log("too few CPU cores to pin the servers: not pinning")
        return None
    a, b, rest = sets
    os.sched_setaffinity(0, rest)
    log(f"CPUs: server a {a}, server b {b}, load and tracer {rest}")
    return a, b


def run_pair(servers, mode, cfg, pair, args, reqs, tracers, sink, steady, batch_secs):
    """One pair of windows of cfg: with two servers each is traced in one of
    them, so that a difference between the servers cancels; with one
    (--servers 1) it is traced in one and not in the other. The order
    alternates from pair to pair. steady: the SteadyLoads of --load steady
    (None: batch windows). batch_secs: {mode: seconds its last untraced
    batch took}, which a traced batch's start is timed by and which its
    untraced windows keep up to date."""
    base, _, binname = cfg.partition("@")
    flags = CONFIGS[base]
    binary = tracers[binname or "default"]
    loads = steady.use(mode) if steady else None
    for w in range(2):
        # The index of the server in the traced role (-1: none, the lone
        # server's untraced window); an A/A config has the roles, no tracer.
        traced = w ^ (pair % 2)
        if len(servers) == 1:
            traced = 0 if traced == 0 else -1
        tr = None
        if flags is not None and traced >= 0:
            d = os.path.join(args.data, "traces", f"{mode}_{cfg}_{pair}_{w}")
            os.makedirs(d, exist_ok=True)
            tr = Tracer(binary, servers[traced].pid, d, flags, os.path.join(d, "tracer.log"))
        if steady:
            recs = steady_window(servers, traced, args.window, loads, tr, sample_kv=mode in SAMPLE_KV)
        else:
            recs = batch_window(servers, traced, reqs, args.concurrency, tr, sample_kv=mode in SAMPLE_KV,
                                expect=batch_secs.get(mode))
            batch_secs[mode] = max(r["wall_s"] for r in recs if not r["traced"])
        for rec in recs:
            rec.update(mode=mode, config=cfg, pair=pair, window=w, load=args.load, servers=len(servers),
                       t=time.time())
            sink(rec)
    log(f"{mode} {cfg} pair {pair + 1}: {rec['wall_s']:.2f} s, {rec['steps']:.0f} steps")


def measure_plan(plan, servers, args, reqs, tracers, sink, path, batch_secs=None):
    """Rounds of the plan (see rounds) until args.pairs rounds are done or
    args.minutes have passed; the table so far after every few rounds.
    batch_secs: see run_pair (none known: {})."""
    batch_secs = {} if batch_secs is None else batch_secs
    end = time.monotonic() + args.minutes * 60 if args.minutes else None
    done = {}
    order = [(m, e[0]) for m, cfgs in plan for e in cfgs]
    steady = SteadyLoads(servers, reqs, args.concurrency) if args.load == "steady" else None
    try:
        for r in range(args.pairs):
            for mode, cfg in rounds(plan, r):
                if end and time.monotonic() > end:
                    log(f"--minutes {args.minutes:g} passed: stopping in round {r + 1}")
                    return
                pair = done.get((mode, cfg), 0)
                run_pair(servers[mode], mode, cfg, pair, args, reqs, tracers, sink, steady, batch_secs)
                done[(mode, cfg)] = pair + 1
            if (r + 1) % 5 == 0 and r + 1 < args.pairs:
                print(vllmstats.table(load(path), order), flush=True)
    finally:
        if steady:
            steady.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", default=DEFAULT_PLAN, help="modes and tracer configs (see the module doc)")
    ap.add_argument("--pairs", type=int, default=8,
                    help="rounds: each config runs this many pairs of windows, times its weight (cfg*N)")
    ap.add_argument("--minutes", type=float, default=0,
                    help="start no pair after this many minutes of measuring (0: no limit)")
    ap.add_argument("--load", choices=("steady", "batch"), default="steady",
                    help="steady: the same load on both servers all the time, windows of --window seconds "
                         "(default); batch: one batch of --requests per window (see the module doc)")
    ap.add_argument("--window", type=float, default=10.0,
                    help="seconds per window under --load steady (default 10: the launch sampling's cycle; "
                         "a shorter one begins later, see tracerrun.duty_offset)")
    ap.add_argument("--servers", type=int, choices=(1, 2), default=2,
                    help="servers per mode: 2 side by side, each traced in one window of a pair (default); "
                         "1, traced and untraced in turn, the GPU its own (see the module doc)")
    ap.add_argument("--requests", type=int, default=128,
                    help="requests per batch (--load batch) or in the cycle the steady load repeats")
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    ap.add_argument("--data", default="/tmp/profilemate-vllm-validate", help="working folder")
    ap.add_argument("--bin", default=os.path.join(REPO, "bin", "profilemate-bpf"), help="the tracer")
    ap.add_argument("--tracer", action="append", default=[], metavar="NAME=PATH",
                    help="another tracer binary, for configs written cfg@NAME")
    ap.add_argument("--marker", default=os.path.join(REPO, "marker"),
                    help="the marker to install: its source folder or a wheel (pip wheel ./marker)")
    ap.add_argument("--python", default=sys.executable, help="the Python that runs vLLM")
    ap.add_argument("--port", type=int, default=8100, help="first server port")
    ap.add_argument("--shared-libs", action="store_true",
                    help="let both servers use the same CUDA library files (a tracer's probes then reach both)")
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                    help="give server a, server b and this script (with the tracer) their own CPU cores "
                         "(default; see pin_cpus)")
    ap.add_argument("--report", nargs="*", metavar="BATCHES",
                    help="only print the table of finished runs' BATCHES (default DATA/batches.jsonl); "
                         "the pairs of several runs are pooled")
    args = ap.parse_args(argv)
    tracers = {"default": args.bin}
    for t in args.tracer:
        name, _, path = t.partition("=")
        tracers[name] = path
    try:
        plan = parse_plan(args.plan, None if args.report else tracers)
    except ValueError as e:
        ap.error(str(e))
    order = [(m, e[0]) for m, cfgs in plan for e in cfgs]
    path = os.path.join(args.data, "batches.jsonl")
    if args.report is not None:
        try:
            batches = load_runs(args.report or [path])
        except (OSError, ValueError) as e:
            print(f"vllm_validate: {e}", file=sys.stderr)
            return 1
        print(vllmstats.table(batches, order))
        return 0
    if args.pairs < 2:
        ap.error("--pairs must be at least 2 for an interval")
    if not args.window > 0:
        ap.error("--window must be a positive number of seconds")
    if args.requests < 1 or args.concurrency < 1:
        ap.error("--requests and --concurrency must be positive")
    for name, b in tracers.items():
        if not os.access(b, os.X_OK):
            ap.error(f"tracer {name}: {b} is not an executable (make build)")
    if os.geteuid() != 0:
        ap.error("run as root: the tracer loads eBPF programs")
    os.makedirs(args.data, exist_ok=True)
    model = vllmserve.make_model(os.path.join(args.data, "model"))
    reqs = vllmserve.requests_of(args.requests, seed=1)
    servers = {}  # mode -> its two servers
    cpus = pin_cpus(args.pin)
    libs = [] if args.shared_libs else vllmserve.cuda_libs(args.python)
    try:
        share = min(0.1, round(0.85 / (2 * len(plan)), 2))
        for i, (mode, _) in enumerate(plan):
            for j in range(args.servers):
                name = f"{mode}-{'ab'[j]}"
                # Each server its own marker and CUDA library files: see
                # private_cuda_libs.
                priv = os.path.join(args.data, name)
                env = {"PYTHONPATH": install_marker(priv, args.python, args.marker) + os.pathsep
                       + os.environ.get("PYTHONPATH", "")}
                if not args.shared_libs:
                    env["LD_PRELOAD"] = vllmserve.private_cuda_libs(libs, os.path.join(priv, "lib"))
                if importlib.util.find_spec("flashinfer") is None:
                    env["VLLM_USE_FLASHINFER_SAMPLER"] = "0"  # vLLM's sampler needs it otherwise
                port = args.port + 2 * i + j
                s = vllmserve.Server(name, model, port, os.path.join(args.data, f"server_{name}.log"),
                                     python=args.python, gpu_share=share, max_seqs=args.concurrency,
                                     extra_env=env, cpus=cpus[j] if cpus else None, **MODES[mode])
                servers.setdefault(mode, []).append(s)
                log(f"{name}: vllm serve pid {s.pid} on port {port}")
        for pair_of_servers in servers.values():
            for s in pair_of_servers:
                t0 = time.monotonic()
                s.wait_ready()
                log(f"{s.name}: ready ({time.monotonic() - t0:.0f} s more)")
        with open(path, "w") as out:
            def sink(rec):
                out.write(json.dumps(rec) + "\n")
                out.flush()
            batch_secs = {}  # how long each mode's batch takes, for the traced windows' start
            for mode in servers:
                for _ in range(2):  # warm-up: first shapes, first graphs
                    recs = batch_window(servers[mode], 0, reqs, args.concurrency)
                batch_secs[mode] = max(r["wall_s"] for r in recs)
            measure_plan(plan, servers, args, reqs, tracers, sink, path, batch_secs)
    finally:
        for pair_of_servers in servers.values():
            for s in pair_of_servers:
                s.stop()
    text = vllmstats.table(load(path), order)
    with open(os.path.join(args.data, "table.txt"), "w") as f:
        f.write(text + "\n")
    print(text)
    return 0


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def load_runs(paths):
    """The records of several runs' batches files, each marked with its
    run (its place in paths and its path) so that their pairs stay apart
    when pooled."""
    out = []
    for i, p in enumerate(paths):
        for b in load(p):
            b["run"] = f"{i}:{p}"
            out.append(b)
    return out


if __name__ == "__main__":
    sys.exit(main())

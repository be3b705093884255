#!/usr/bin/env python3
"""A real transformer served the way vLLM's V1 engine serves it, for
validating profilemate-bpf on a GPU.

    PYTHONPATH=simserver python3 gpu/workload.py --duration 20 --truth truth.csv

* Model: a Llama-shaped transformers model (LlamaConfig, random weights,
  bf16, no download).
* Runner: gpu/vllm_runner.py, executed as module
  vllm.v1.worker.gpu_model_runner before vllm.plugins.load_general_plugins()
  runs, so the marker (entry point group vllm.general_plugins) patches it.
  SchedulerOutput and the plugin loader come from the stand-in vllm package
  of simserver/ (PYTHONPATH=<repo>/simserver; added here when missing).
* Loop: gpu/gpusched.py schedules step k (a pure function of --seed and k);
  the main thread runs execute_model + sample_tokens, an output thread runs
  get_output (async scheduling: at most 2 steps in flight).
* Decode batches replay one CUDA graph per batch size (captured in
  capture_model, which the marker suppresses) unless --eager.

Prints "WORKLOAD_READY pid=N" once warm (the tracer may attach then) and,
at the end, "WORKLOAD_RESULT {json}" with steps/sec.

--tp 2 (tensor parallelism, see gpu/tensorpar.py): this process becomes the engine
(title VLLM::EngineCore) and starts one worker per GPU (VLLM::Worker_TP<R>),
each running the same steps with NCCL all_reduces in the forward; their
output is forwarded prefixed "(VLLM::Worker_TP<R> pid=N) ". The engine's
WORKLOAD_READY pid is its own (trace it with --pid that); per-rank files are
<name>_rank<R>.<ext> of --truth / --profile-out / --profile-trace.
"""
import argparse
import contextlib
import csv
import faulthandler
import importlib.util
import json
import os
import queue
import signal
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RUNNER_MODULE = "vllm.v1.worker.gpu_model_runner"

TRUTH_FIELDS = ("pid", "step", "phase", "batch_size", "num_tokens", "num_prefill_reqs",
                "num_prefill_tokens", "begin_ns", "forward_end_ns", "sample_end_ns", "end_ns",
                "host_ms", "gpu_ms", "graph", "traced")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--eager", action="store_true", help="no CUDA graphs: launch every kernel")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of stepping")
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    p.add_argument("--truth", help="write the per-step ground truth CSV here")
    p.add_argument("--sync-every-step", action="store_true",
                   help="torch.cuda.synchronize() after every execute_model "
                        "(the sitecustomize profiler's way)")
    p.add_argument("--torch-profiler", action="store_true",
                   help="run under torch.profiler (CPU+CUDA) and count kernels per step")
    p.add_argument("--profile-out", help="per-step kernel counts CSV (with --torch-profiler)")
    p.add_argument("--profile-trace", help="keep the Chrome trace here (with --torch-profiler)")
    p.add_argument("--wait-traced", type=float, default=0.0,
                   help="after warm-up, wait up to this many seconds for a tracer to attach "
                        "(marker semaphore set) before step 1")
    p.add_argument("--sync-debug", action="store_true",
                   help="count host<->GPU synchronizing ops in the steps "
                        "(torch.cuda.set_sync_debug_mode('warn'); there should be none)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--intermediate", type=int, default=5632)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--tp", type=int, default=1,
                   help="tensor-parallel size: an engine process and one worker per GPU")
    p.add_argument("--tp-rank", type=int, default=-1, help=argparse.SUPPRESS)  # worker only
    p.add_argument("--tp-port", type=int, default=0, help=argparse.SUPPRESS)  # worker only
    return p.parse_args(argv)


def install_runner_module():
    """Execute gpu/vllm_runner.py as vllm.v1.worker.gpu_model_runner."""
    try:
        import vllm.v1.worker  # noqa: F401
    except ImportError:
        sys.path.insert(1, os.path.join(REPO, "simserver"))
    import vllm.v1.worker as worker
    spec = importlib.util.spec_from_file_location(
        RUNNER_MODULE, os.path.join(HERE, "vllm_runner.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[RUNNER_MODULE] = module
    spec.loader.exec_module(module)
    worker.gpu_model_runner = module
    return module


def load_plugins():
    """vLLM's plugin loading; then the sitecustomize way's install again,
    which patches modules already imported (ours bypassed the import hook)."""
    from vllm.plugins import load_general_plugins
    load_general_plugins()
    marker = sys.modules.get("profilemate_marker")
    if marker is not None:
        marker.install()


def marker_state():
    """(patched, semaphore or None) of the loaded marker."""
    patch = sys.modules.get("profilemate_marker.patch")
    if patch is None or patch.probes is None or patch.off:
        return False, None
    return True, patch.probes.step_begin_semaphore


def avoid_packed_sequence_check():
    """Keep transformers from syncing the host with the GPU every step.

    Without a cache and attention mask, transformers' mask preparation looks
    for packed sequences in position_ids and, outside graph capture, tests
    the result with `.all()`: a device->host copy and a stream sync in every
    eager forward, which vLLM never does (it would undo async scheduling).
    Our packed steps are causal over the whole step anyway: say "not packed".
    """
    try:
        from transformers import masking_utils
    except ImportError:
        return False
    if not hasattr(masking_utils, "find_packed_sequence_indices"):
        return False
    masking_utils.find_packed_sequence_indices = lambda position_ids: None
    return True


def build_model(args, torch):
    avoid_packed_sequence_check()
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.heads, max_position_embeddings=4096)
    cfg._attn_implementation = "sdpa"
    dtype = getattr(torch, args.dtype)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(args.device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    return model.to(device=args.device, dtype=dtype).eval()


def write_truth(path, pid, truths):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRUTH_FIELDS)
        for t in sorted(truths, key=lambda t: t.step):
            host_ms = (t.end_ns - t.begin_ns) / 1e6 if t.end_ns else -1
            w.writerow((pid, t.step, t.phase, t.batch_size, t.num_tokens, t.num_prefill_reqs,
                        t.num_prefill_tokens, t.begin_ns, t.forward_end_ns, t.sample_end_ns,
                        t.end_ns, f"{host_ms:.4f}", f"{t.gpu_ms:.4f}", t.graph, t.traced))


def write_profile_counts(path, counts, truths):
    by_step = {t.step: t for t in truths}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("step", "phase", "batch_size", "num_tokens", "kernels", "launch_calls",
                    "graph_launches"))
        for step in sorted(counts):
            t = by_step.get(step)
            if t is None:
                continue
            c = counts[step]
            w.writerow((step, t.phase, t.batch_size, t.num_tokens, c["kernels"],
                        c["launch_calls"], c["graph_launches"]))


def is_sync_warning(message):
    """Whether a warning from torch.cuda.set_sync_debug_mode("warn") names a
    synchronizing op ("called a synchronizing CUDA operation"), rather than
    being its notice that the mode is a prototype."""
    return "called a synchronizing" in message.lower()


def main(argv=None):
    args = parse_args(argv)
    tp = None
    if args.tp > 1:
        import tensorpar as tp_mod  # gpu/tensorpar.py
        if args.tp_rank < 0:
            sys.exit(tp_mod.engine_main(args, sys.argv[1:] if argv is None else list(argv)))
        tp_mod.worker_prelude(args)  # title, NCCL env, per-rank file names, device
    runner_module = install_runner_module()
    load_plugins()  # before the runner is built, as in vLLM
    import gpusched
    import torch

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("workload: CUDA is not available (use --device cpu for a smoke test)")
    if args.tp > 1:
        tp = tp_mod.Group(args, torch)  # torch.distributed: NCCL (gloo on the CPU)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    _, semaphore = marker_state()
    traced = (lambda: semaphore.value) if semaphore is not None else (lambda: 0)
    t_start = time.monotonic()
    with torch.inference_mode():
        if tp is not None:
            torch.manual_seed(args.seed)  # the same full weights on every rank, then sliced
        model = build_model(args, torch)
        extra = {}
        if tp is not None:
            tp.shard(model)
            extra = {"agree": tp.all_true, "capture_error_mode": "thread_local"}
        runner = runner_module.GPUModelRunner(model, args.device, eager=args.eager,
                                              traced_probe=traced, **extra)
        runner.profile_run()
        t_capture = time.monotonic()
        runner.capture_model()
        capture_s = time.monotonic() - t_capture
    patched, _ = marker_state()
    ready = "WORKER_READY" if tp is not None else "WORKLOAD_READY"
    rank = f"rank={args.tp_rank} " if tp is not None else ""
    print(f"{ready} {rank}pid={os.getpid()} marker={'patched' if patched else 'absent'} "
          f"graphs={len(runner.graphs)} warmup_s={time.monotonic() - t_start:.1f}", flush=True)
    for err in runner.graph_errors[:3]:
        print(f"workload: graph capture failed for batch {err}", file=sys.stderr, flush=True)

    if args.wait_traced > 0 and semaphore is not None:
        deadline = time.monotonic() + args.wait_traced
        while not semaphore.value and time.monotonic() < deadline and not stop.is_set():
            time.sleep(0.005)
        print(f"workload: tracer {'attached' if semaphore.value else 'NOT attached'}",
              file=sys.stderr, flush=True)
        if semaphore.value:
            # The marker's probes may be attached before the CUDA libraries'.
            time.sleep(1.0)
    if tp is not None:
        tp.barrier()  # every rank starts step 1 together

    truths = []
    inflight = threading.BoundedSemaphore(2)
    outputs = queue.Queue()

    def output_thread():  # vLLM's worker output thread
        while True:
            item = outputs.get()
            if item is None:
                return
            item.get_output()
            truths.append(item.truth)
            inflight.release()

    profiler = contextlib.nullcontext()
    if args.torch_profiler:
        from torch.profiler import ProfilerActivity, profile
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        profiler = profile(activities=acts)
    mark = (lambda k: torch.profiler.record_function(f"pm_step_{k}")) if args.torch_profiler \
        else (lambda k: contextlib.nullcontext())

    flagged_syncs = []
    if args.sync_debug and cuda:
        import warnings

        def show(message, category, filename, lineno, file=None, line=None):
            # The output thread's event wait is the one sync that belongs.
            # torch's notice that the mode is a prototype is no sync.
            if (is_sync_warning(str(message))
                    and threading.current_thread().name != "output"):
                if not flagged_syncs:
                    print(f"workload: synchronizing op in a step: {message} ({filename}:{lineno})",
                          file=sys.stderr, flush=True)
                flagged_syncs.append(str(message))
        warnings.simplefilter("always")
        warnings.showwarning = show
        torch.cuda.set_sync_debug_mode("warn")

    thread = threading.Thread(target=output_thread, name="output", daemon=True)
    thread.start()
    k = 0
    tokens = 0
    with profiler as prof, torch.inference_mode():
        t0 = time.monotonic()
        end = t0 + args.duration
        while True:
            if args.steps and k >= args.steps:
                break
            if tp is None:
                if stop.is_set() or time.monotonic() >= end:
                    break
            elif k % tp.STOP_CHECK_EVERY == 0 and tp.any_true(
                    stop.is_set() or time.monotonic() >= end):
                break  # every rank stops after the same step (a CPU collective, not per step)
            k += 1
            so = gpusched.scheduler_output(args.seed, k)
            tokens += so.total_num_scheduled_tokens
            inflight.acquire()
            with mark(k):
                runner.execute_model(so)
                if args.sync_every_step and cuda:
                    torch.cuda.synchronize()
                out = runner.sample_tokens(None)
            outputs.put(out)
        outputs.put(None)
        if tp is not None:
            # A rank stuck past here (a collective, the teardown) prints
            # where, then exits, instead of holding the validation up.
            faulthandler.dump_traceback_later(90, exit=True)
        thread.join()
        elapsed = time.monotonic() - t0
        if args.sync_debug and cuda:
            torch.cuda.set_sync_debug_mode(0)
    pid = os.getpid()
    if args.truth:
        write_truth(args.truth, pid, truths)
    if args.torch_profiler:
        import profcount
        trace_path = args.profile_trace or tempfile.mktemp(suffix=".json", prefix="pm_trace_")
        prof.export_chrome_trace(trace_path)
        counts, unattributed = profcount.count_steps(profcount.load(trace_path))
        if not args.profile_trace:
            os.unlink(trace_path)
        if args.profile_out:
            write_profile_counts(args.profile_out, counts, truths)
        print(f"workload: profiler attributed kernels to {len(counts)} steps; "
              f"{unattributed} kernels unattributed", file=sys.stderr, flush=True)
    result = {
        "pid": pid, "mode": "eager" if runner.eager else "graph", "steps": k,
        "elapsed_s": round(elapsed, 3), "steps_per_sec": round(k / elapsed, 3) if elapsed else 0,
        "tokens_per_sec": round(tokens / elapsed, 1) if elapsed else 0,
        "graphs": len(runner.graphs), "graph_capture_failures": len(runner.graph_errors),
        "capture_s": round(capture_s, 2), "marker": "patched" if patched else "absent",
        "sync_every_step": args.sync_every_step, "torch_profiler": args.torch_profiler,
    }
    if args.sync_debug:
        result["flagged_syncs"] = len(flagged_syncs)
    if tp is not None:
        result.update(rank=args.tp_rank, tp=args.tp, truth=args.truth)
        print("WORKER_RESULT " + json.dumps(result), flush=True)
        tp.close()
        # Tearing down NCCL and the graphs that captured its collectives
        # can hang at exit; everything is written, so leave without it.
        sys.stderr.flush()
        os._exit(0)
    print("WORKLOAD_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Tensor parallelism for gpu/workload.py (--tp N), laid out as vLLM's.

    engine   VLLM::EngineCore    this process: starts the workers, forwards
                                 their output, prints WORKLOAD_READY once all
                                 are warm and WORKLOAD_RESULT at the end
    worker R VLLM::Worker_TP<R>  a child of the engine: GPU R, the same
                                 marker-patched runner as one GPU

The Llama model is split as vLLM (Megatron) splits it: attention heads
across ranks (q/k/v column-parallel, o_proj row-parallel + all_reduce) and
the MLP (gate/up column-parallel, down row-parallel + all_reduce); the
embedding and lm_head stay whole on every rank. Every rank builds the same
full random model (same seed) and keeps its slices.

Every rank runs the same steps: the batch of step k is a pure function of
(seed, k) (gpusched.py), so no per-step broadcast is needed; a CPU (gloo)
collective every STOP_CHECK_EVERY steps decides together when to stop, and
one after each graph size decides together which sizes keep a graph.
"""
import ctypes
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

#: Never NVLink multicast (NVLS) on the lent machines.
NCCL_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
            "NVSHMEM_DISABLE_NVLS": "1"}
STOP_CHECK_EVERY = 16
ENGINE_TITLE = "VLLM::EngineCore"


def worker_title(rank):
    return f"VLLM::Worker_TP{rank}"


_stdout_lock = threading.Lock()


def emit(line):
    """Writes one whole line to stdout. The engine's threads (one forwarder per
    worker and the main thread) share stdout, and print() writes the text and
    its newline separately: validate_tp.sh once missed WORKLOAD_READY glued to
    the end of a worker's line."""
    with _stdout_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


# --- process titles ---------------------------------------------------------
def _overwrite_argv(title):
    """Write `title` over this process's argv area, as setproctitle does, so
    /proc/PID/cmdline reads `title` (then NULs). The area's bounds are
    arg_start/arg_end of /proc/self/stat (fields 48, 49); Python keeps its
    own copy of argv, so nothing reads the old bytes again."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[48 - 3]), int(fields[49 - 3])
    data = title.encode()[:max(0, end - start - 1)]
    ctypes.memmove(start, data + b"\0" * (end - start - len(data)), end - start)


def _set_comm(title):
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, ctypes.c_char_p(title.encode()[:15]), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def cmdline():
    with open("/proc/self/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace").strip()


def set_title(title):
    """Process title as vLLM sets it (setproctitle), so that the tracer,
    which reads /proc/PID/cmdline, sees `title`. Without the setproctitle
    package the argv area is overwritten in place. Returns how."""
    how = "setproctitle"
    try:
        import setproctitle
        setproctitle.setproctitle(title)
    except ImportError:
        how = "argv overwrite"
        try:
            _overwrite_argv(title)
        except (OSError, ValueError, IndexError) as e:
            how = f"failed ({e!r})"
        _set_comm(title)
    if not cmdline().startswith(title):
        print(f"workload: could not set the process title {title!r} ({how}); "
              f"/proc/self/cmdline is {cmdline()[:80]!r}", file=sys.stderr, flush=True)
    return how


# --- engine -----------------------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_path(path, rank):
    """a/truth.csv -> a/truth_rank1.csv"""
    if not path:
        return path
    root, ext = os.path.splitext(path)
    return f"{root}_rank{rank}{ext}"


def engine_main(args, argv):
    """Start args.tp workers, forward their output; returns the exit code."""
    how = set_title(ENGINE_TITLE)
    os.environ.update(NCCL_ENV)
    port = _free_port()
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workload.py")
    procs, ready, results = [], {}, {}
    lock = threading.Condition()

    def forward(rank, proc):
        prefix = f"({worker_title(rank)} pid={proc.pid}) "
        for line in proc.stdout:
            line = line.rstrip("\n")
            emit(prefix + line)  # before the main thread may announce readiness
            if line.startswith("WORKER_READY "):
                with lock:
                    ready[rank] = line
                    lock.notify_all()
            elif line.startswith("WORKER_RESULT "):
                with lock:
                    results[rank] = json.loads(line.split(" ", 1)[1])
        with lock:
            lock.notify_all()

    for rank in range(args.tp):
        cmd = [sys.executable, script] + argv + ["--tp-rank", str(rank), "--tp-port", str(port)]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             bufsize=1)
        procs.append(p)
        threading.Thread(target=forward, args=(rank, p), daemon=True).start()

    def stop(signum, _frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def kill_all(why):
        print(f"workload: engine: {why}; stopping the workers", file=sys.stderr, flush=True)
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait()

    t0 = time.monotonic()
    while True:
        with lock:
            if len(ready) >= args.tp:
                break
            lock.wait(0.5)
        if any(p.poll() is not None for p in procs):
            kill_all("a worker exited before it was ready")
            return 1
    pids = [p.pid for p in procs]
    graphs = ",".join(ready[r].split("graphs=")[1].split()[0] for r in range(args.tp))
    marker = ",".join(ready[r].split("marker=")[1].split()[0] for r in range(args.tp))
    emit(f"WORKLOAD_READY pid={os.getpid()} tp={args.tp} workers={','.join(map(str, pids))} "
         f"marker={marker} graphs={graphs} title={how} warmup_s={time.monotonic() - t0:.1f}")

    # A worker that dies leaves the others blocked in a collective: give them
    # a little while, then stop them.
    died_at = None
    while any(p.poll() is None for p in procs):
        bad = [p for p in procs if p.poll() not in (None, 0)]
        if bad and died_at is None:
            died_at = time.monotonic()
        if died_at is not None and time.monotonic() - died_at > 15:
            kill_all(f"worker pid {bad[0].pid} exited with {bad[0].returncode}")
            break
        time.sleep(0.2)
    time.sleep(0.2)  # let the forwarders print the last lines
    rcs = [p.wait() for p in procs]
    per_rank = [results.get(r) for r in range(args.tp)]
    first = per_rank[0] or {}
    result = {"pid": os.getpid(), "tp": args.tp, "worker_pids": pids, "worker_rcs": rcs,
              "mode": first.get("mode"), "steps": first.get("steps"),
              "steps_per_sec": first.get("steps_per_sec"),
              "tokens_per_sec": first.get("tokens_per_sec"), "ranks": per_rank}
    emit("WORKLOAD_RESULT " + json.dumps(result))
    return 0 if all(rc == 0 for rc in rcs) and all(per_rank) else 1


# --- worker -------------------------------------------------------------------
def worker_prelude(args):
    """Before torch is imported: title, NCCL env, this rank's files and GPU."""
    set_title(worker_title(args.tp_rank))
    os.environ.update(NCCL_ENV)
    args.truth = rank_path(args.truth, args.tp_rank)
    args.profile_out = rank_path(args.profile_out, args.tp_rank)
    args.profile_trace = rank_path(args.profile_trace, args.tp_rank)
    if args.device == "cuda":
        args.device = f"cuda:{args.tp_rank}"


class Group:
    """torch.distributed for one worker: NCCL (gloo on the CPU) for the
    model's all_reduces, a gloo group for the host-side agreements."""

    STOP_CHECK_EVERY = STOP_CHECK_EVERY

    def __init__(self, args, torch):
        import torch.distributed as dist
        self.torch, self.dist = torch, dist
        self.rank, self.size = args.tp_rank, args.tp
        self.device = torch.device(args.device)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.set_device(self.device)
        dist.init_process_group("nccl" if cuda else "gloo",
                                init_method=f"tcp://127.0.0.1:{args.tp_port}",
                                rank=self.rank, world_size=self.size)
        self.cpu = dist.new_group(backend="gloo") if cuda else dist.group.WORLD
        # Create the NCCL communicator now (it must exist before a capture).
        x = torch.ones(1, device=self.device)
        dist.all_reduce(x)
        if cuda:
            torch.cuda.synchronize()
        assert int(x.item()) == self.size, f"all_reduce gave {x.item()}"

    def _reduce(self, flag, op):
        t = self.torch.tensor([int(bool(flag))], dtype=self.torch.int32)
        self.dist.all_reduce(t, op=op, group=self.cpu)
        return bool(t.item())

    def all_true(self, flag):
        return self._reduce(flag, self.dist.ReduceOp.MIN)

    def any_true(self, flag):
        return self._reduce(flag, self.dist.ReduceOp.MAX)

    def barrier(self):
        self.dist.barrier(group=self.cpu)

    def close(self):
        """Wait until every rank has written its results. The group is not
        destroyed: the worker exits right after (workload.py), and NCCL's
        teardown with graphs that captured its collectives can hang."""
        try:
            self.barrier()
        except Exception as e:  # the results are written already
            print(f"workload: final barrier: {e!r}", file=sys.stderr, flush=True)

    # --- the model ----------------------------------------------------------
    def shard(self, model):
        """Keep this rank's slices of a full LlamaForCausalLM, in place."""
        cfg = model.config
        tp, r = self.size, self.rank
        heads, kv = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", None) \
            or cfg.num_attention_heads
        for n, what in ((heads, "heads"), (kv, "key/value heads"),
                        (cfg.intermediate_size, "intermediate size")):
            if n % tp:
                sys.exit(f"workload: {what} ({n}) not divisible by --tp {tp}")
        for layer in model.model.layers:
            att, mlp = layer.self_attn, layer.mlp
            head_dim = getattr(att, "head_dim", cfg.hidden_size // heads)
            _column(att.q_proj, r, tp)
            _column(att.k_proj, r, tp)
            _column(att.v_proj, r, tp)
            att.o_proj = RowParallel(att.o_proj, r, tp, self.dist)
            # Older transformers reshape with these; newer ones infer (-1).
            for name, value in (("num_heads", heads // tp), ("num_key_value_heads", kv // tp),
                                ("hidden_size", heads // tp * head_dim)):
                if hasattr(att, name):
                    setattr(att, name, value)
            _column(mlp.gate_proj, r, tp)
            _column(mlp.up_proj, r, tp)
            mlp.down_proj = RowParallel(mlp.down_proj, r, tp, self.dist)
            if hasattr(mlp, "intermediate_size"):
                mlp.intermediate_size = cfg.intermediate_size // tp
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()
        return model


def _column(linear, rank, tp):
    """Column-parallel: this rank's rows of the weight (output features)."""
    import torch
    w = linear.weight.detach()
    n = w.shape[0] // tp
    linear.weight = torch.nn.Parameter(w[rank * n:(rank + 1) * n].clone(), requires_grad=False)
    if linear.bias is not None:
        b = linear.bias.detach()
        linear.bias = torch.nn.Parameter(b[rank * n:(rank + 1) * n].clone(), requires_grad=False)
    linear.out_features = n


@functools.lru_cache(maxsize=None)
def _row_parallel_class():
    import torch

    class RowParallel(torch.nn.Module):
        """Row-parallel linear: this rank's columns of the weight (input
        features), then all_reduce (sum) of the partial outputs; the bias,
        if any, added once after the sum."""

        def __init__(self, linear, rank, tp, dist):
            super().__init__()
            w = linear.weight.detach()
            n = w.shape[1] // tp
            self.weight = torch.nn.Parameter(w[:, rank * n:(rank + 1) * n].clone(),
                                             requires_grad=False)
            self.bias = linear.bias
            self.in_features, self.out_features = n, w.shape[0]
            self.dist = dist

        def forward(self, x):
            out = torch.nn.functional.linear(x, self.weight)
            self.dist.all_reduce(out)
            return out if self.bias is None else out + self.bias

    return RowParallel


def RowParallel(linear, rank, tp, dist):  # noqa: N802 (a class, made when torch is there)
    return _row_parallel_class()(linear, rank, tp, dist)

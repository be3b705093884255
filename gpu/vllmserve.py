"""A real `vllm serve` for the validation: the model it serves, the server's
process, its /metrics and the load driven over HTTP.

Nothing here needs the network: the model is a Llama-shaped config served
with random weights (`--load-format dummy`) and a word-level tokenizer made
on the spot, so no hub is asked for anything.
"""
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

# A TinyLlama-shaped model: 1.1B parameters, bf16.
LLAMA_1B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                num_attention_heads=32, num_key_value_heads=4, vocab_size=32000)
SERVED_NAME = "llama"


def make_model(d, shape=LLAMA_1B, max_len=4096):
    """Writes config.json and a tokenizer into d (random weights come from
    vLLM's dummy loader). The tokenizer maps word i to id i, so any id list
    is a valid prompt and every generated id decodes."""
    os.makedirs(d, exist_ok=True)
    cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", torch_dtype="bfloat16",
               hidden_act="silu", max_position_embeddings=max_len, rms_norm_eps=1e-5,
               rope_theta=10000.0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
               **shape)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    from tokenizers import Tokenizer, models, pre_tokenizers
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"w{i}": i for i in range(3, shape["vocab_size"])})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(dict(tokenizer_class="PreTrainedTokenizerFast", bos_token="<s>", eos_token="</s>",
                       unk_token="<unk>", model_max_length=max_len,
                       clean_up_tokenization_spaces=False), f, indent=1)
    return d


def requests_of(n, seed, prompt=(32, 1024), output=(64, 256), vocab=32000):
    """n requests as (prompt ids, max_tokens): the same list for the same
    arguments, so every batch of a comparison does the same work."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        plen = rnd.randint(*prompt)
        out.append(([rnd.randrange(3, vocab) for _ in range(plen)], rnd.randint(*output)))
    return out


class Server:
    """One `vllm serve` in its own process session, so that a signal to the
    driver's group does not reach it and it can be stopped as a whole."""

    def __init__(self, name, model, port, log, python=sys.executable, eager=False, v1=False,
                 gpu_share=0.2, kv_cache_bytes=8 << 30, max_seqs=64, extra_env=None, extra_args=(), cpus=None):
        self.name, self.port, self.log = name, port, log
        args = [python, "-m", "vllm.entrypoints.cli.main", "serve", model,
                "--host", "127.0.0.1", "--port", str(port), "--served-model-name", SERVED_NAME,
                "--load-format", "dummy", "--no-enable-prefix-caching",
                # A fixed KV cache skips vLLM's memory profiling, which
                # fails when another server on the GPU allocates meanwhile.
                "--gpu-memory-utilization", str(gpu_share), "--kv-cache-memory-bytes", str(kv_cache_bytes),
                "--max-num-seqs", str(max_seqs),
                "--max-model-len", "2048", "--uvicorn-log-level", "warning", *extra_args]
        if eager:
            args.append("--enforce-eager")
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **(extra_env or {}))
        if v1:
            env["VLLM_USE_V2_MODEL_RUNNER"] = "0"
        self.args = args
        self.proc = subprocess.Popen(args, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     # Its processes inherit the set.
                                     preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        self.pid = self.proc.pid  # the API server

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout=600):
        """Waits until the server answers; raises if it died or took too long."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: vllm serve exited with {self.proc.returncode} (see {self.log})")
            try:
                with urllib.request.urlopen(self.url("/v1/models"), timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise RuntimeError(f"{self.name}: not ready after {timeout} s (see {self.log})")

    def metrics(self):
        with urllib.request.urlopen(self.url("/metrics"), timeout=10) as r:
            return parse_metrics(r.read().decode())

    def complete(self, prompt, max_tokens):
        body = json.dumps(dict(model=SERVED_NAME, prompt=prompt, max_tokens=max_tokens,
                               ignore_eos=True, temperature=0.0)).encode()
        req = urllib.request.Request(self.url("/v1/completions"), data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.loads(r.read())["usage"]["completion_tokens"]

    def run_batch(self, reqs, concurrency):
        """Sends reqs with at most concurrency in flight; returns the wall time
        from the first send to the last answer and the tokens generated."""
        t0 = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            got = list(pool.map(lambda r: self.complete(*r), reqs))
        return time.monotonic() - t0, sum(got)

    def cpu_seconds(self):
        """User and system CPU seconds of the server's processes so far (the
        API server and its descendants alive now)."""
        return tree_cpu(self.pid)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()


class SteadyLoad:
    """Keeps concurrency requests in flight on a server until stopped: each
    of its threads sends the next request of reqs (cycled, in the same order
    on every server) as soon as its previous one is answered: the server
    is never idle, as in production, and a window of it needs no batch's
    ramp and tail (see the module doc of vllm_validate)."""

    def __init__(self, server, reqs, concurrency):
        self.server = server
        self._next = itertools.cycle(reqs)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.errors = []
        self.answered = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(concurrency)]
        for t in self._threads:
            t.start()

    def _run(self):
        while not self._stop.is_set():
            with self._lock:
                prompt, max_tokens = next(self._next)
            try:
                self.server.complete(prompt, max_tokens)
            except Exception as e:  # noqa: BLE001 - reported by check()
                with self._lock:
                    self.errors.append(f"{type(e).__name__}: {e}")
                self._stop.set()
                return
            with self._lock:
                self.answered += 1

    def check(self):
        """Raises if a request failed: the server's counters then stand
        for less load than the other server's."""
        if self.errors:
            raise RuntimeError(f"{self.server.name}: a request failed under steady load: {self.errors[0]} "
                               f"(see {self.server.log})")

    def stop(self, timeout=300):
        """Lets the requests in flight finish, then returns."""
        self._stop.set()
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        self.check()


def split_cores(cpus, n, sysfs="/sys/devices/system/cpu"):
    """n equal sets of whole cores from cpus (SMT siblings stay together, so
    that no two sets share a core) and the rest, at least a quarter of the
    cores and two, for everything else; None when too few cores."""
    cores = {}
    for c in cpus:
        try:
            with open(f"{sysfs}/cpu{c}/topology/core_id") as f:
                core = f.read().strip()
            with open(f"{sysfs}/cpu{c}/topology/physical_package_id") as f:
                core = (f.read().strip(), core)
        except OSError:
            core = ("cpu", c)  # no topology: each CPU its own core
        cores.setdefault(core, []).append(c)
    groups = sorted(cores.values())
    rest = max(2, -(-len(groups) // 4))
    each = (len(groups) - rest) // n
    if each < 2:
        return None
    sets = [sorted(c for g in groups[i * each:(i + 1) * each] for c in g) for i in range(n)]
    return sets + [sorted(c for g in groups[n * each:] for c in g)]


FIND_CUDA_LIBS = """
import torch
torch.zeros(1, device="cuda")
paths = [line.split()[-1] for line in open("/proc/self/maps") if ".so" in line]
for name in ("libcuda.so", "libcudart.so"):
    print(next(p for p in paths if p.rsplit("/", 1)[-1].startswith(name)))
"""


def cuda_libs(python=sys.executable):
    """The CUDA driver and runtime files torch loads."""
    return subprocess.run([python, "-c", FIND_CUDA_LIBS], capture_output=True, text=True, check=True).stdout.split()


def private_cuda_libs(libs, dest):
    """Copies of libs in dest, and the LD_PRELOAD that makes a server use
    them. A copy is another inode, and uprobes go on inodes: a tracer
    attached to one server then leaves a server using other copies
    untouched, so the two can run side by side as traced and untraced."""
    os.makedirs(dest, exist_ok=True)
    copies = []
    for path in libs:
        dst = os.path.join(dest, os.path.basename(path))
        shutil.copyfile(path, dst)
        copies.append(dst)
    return " ".join(copies)


def parse_metrics(text):
    """Prometheus text exposition -> {name: value}, summed over label sets."""
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name, _, rest = line.partition("{") if "{" in line.split(" ", 1)[0] else line.partition(" ")
        if "}" in rest:
            rest = rest.rsplit("}", 1)[1]
        try:
            v = float(rest.split()[0])
        except (ValueError, IndexError):
            continue
        out[name] = out.get(name, 0.0) + v
    return out


# The counters the validation reads, as vLLM names them.
STEPS, STEP_TOKENS = "vllm:iteration_tokens_total_count", "vllm:iteration_tokens_total_sum"
PROMPT, GENERATED = "vllm:prompt_tokens_total", "vllm:generation_tokens_total"
# The scheduler's: requests preempted, draft tokens proposed and accepted.
PREEMPTIONS = "vllm:num_preemptions_total"
DRAFTS, ACCEPTED = "vllm:spec_decode_num_draft_tokens_total", "vllm:spec_decode_num_accepted_tokens_total"
# A gauge: the KV cache's use (0..1) after the latest step.
KV_USAGE = "vllm:kv_cache_usage_perc"
COUNTERS = (STEPS, STEP_TOKENS, PROMPT, GENERATED, PREEMPTIONS, DRAFTS, ACCEPTED)


def delta(before, after):
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in COUNTERS}


def tree_cpu(root, proc="/proc"):
    """(user, system) CPU seconds of root and its descendants."""
    hz = os.sysconf("SC_CLK_TCK")
    children, stat = {}, {}
    for e in os.listdir(proc):
        if not e.isdigit():
            continue
        try:
            with open(f"{proc}/{e}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stat[int(e)] = fields
        children.setdefault(int(fields[1]), []).append(int(e))
    user = system = 0.0
    todo = [root]
    while todo:
        pid = todo.pop()
        f = stat.get(pid)
        if f:
            user += int(f[11]) / hz
            system += int(f[12]) / hz
        todo.extend(children.get(pid, []))
    return user, system

"""The model runner of the GPU workload, loaded as vLLM's V1 module.

workload.py executes this file as module `vllm.v1.worker.gpu_model_runner`
(importlib, before vllm.plugins.load_general_plugins() runs), so the
profilemate marker finds `GPUModelRunner` and `AsyncGPUModelRunnerOutput`
on that module and patches them exactly as it patches vLLM's own.

What it does per step, as vLLM's V1 runner with async scheduling:
execute_model flattens the scheduled tokens of all requests into one packed
sequence, queues the forward pass (a CUDA graph replay for decode batches
unless eager) and returns None; sample_tokens queues a greedy sampling and a
copy of the sampled ids into pinned host memory and returns an
AsyncGPUModelRunnerOutput whose get_output() waits on the copy's CUDA event.
Warm-up and graph capture go through _dummy_run / capture_model, which the
marker suppresses; they never call execute_model.

Simplifications (documented in gpu/README.md): no KV cache (attention runs
causally over the packed tokens of the step, positions 0..T-1), prefill and mixed steps are
always eager (no piecewise graphs), greedy sampling.
"""
import time
from dataclasses import dataclass

import torch

from vllm.v1.outputs import (EMPTY_MODEL_RUNNER_OUTPUT, AsyncModelRunnerOutput,
                             ModelRunnerOutput)

import gpusched as gsched  # gpu/gpusched.py (gpu/ is on sys.path)


@dataclass
class StepTruth:
    """Ground truth of one real step, filled in by the runner and output."""

    step: int
    phase: str
    batch_size: int
    num_tokens: int
    num_prefill_reqs: int
    num_prefill_tokens: int
    begin_ns: int
    graph: int
    traced: int
    forward_end_ns: int = 0
    sample_end_ns: int = 0
    end_ns: int = 0
    gpu_ms: float = -1.0


class HostEvent:
    """CPU stand-in for torch.cuda.Event (smoke tests without a GPU)."""

    def __init__(self, **_):
        self.t = 0.0

    def record(self, stream=None):
        self.t = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return (end.t - self.t) * 1e3


class AsyncGPUModelRunnerOutput(AsyncModelRunnerOutput):
    """A step's output whose sampled ids are still being copied to the host."""

    def __init__(self, model_runner_output, sampled_host, async_copy_ready_event,
                 start_event, truth):
        self._model_runner_output = model_runner_output
        self._sampled_host = sampled_host
        self.async_copy_ready_event = async_copy_ready_event
        self._start_event = start_event
        self.truth = truth

    def get_output(self):
        self.async_copy_ready_event.synchronize()
        ids = self._sampled_host.tolist()
        out = self._model_runner_output
        out.sampled_token_ids = [[t] for t in ids]
        truth = self.truth
        truth.gpu_ms = self._start_event.elapsed_time(self.async_copy_ready_event)
        truth.end_ns = time.monotonic_ns()
        return out


class GPUModelRunner:
    """vLLM V1 GPUModelRunner's step interface over a transformers Llama."""

    def __init__(self, model, device, eager=True, max_decode_batch=gsched.MAX_DECODE_BATCH,
                 traced_probe=lambda: 0, agree=lambda ok: ok, capture_error_mode=None):
        self.model = model
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.eager = eager or not self.cuda
        self.max_decode_batch = max_decode_batch
        self.traced_probe = traced_probe
        # Tensor parallelism: agree(ok) is True when every rank's ok is (a
        # CPU collective), so all ranks keep graphs for the same batch sizes
        # and stop capturing together; capture_error_mode "thread_local"
        # keeps NCCL's watchdog thread from failing a capture.
        self.agree = agree
        self.capture_error_mode = capture_error_mode
        self.vocab = model.config.vocab_size
        self.step = 0
        self.graphs = {}
        self.graph_errors = []
        self._pending = None
        self._event = (lambda: torch.cuda.Event(enable_timing=True)) if self.cuda else HostEvent
        if self.cuda:
            n = max_decode_batch
            self._static_ids = torch.zeros((1, n), dtype=torch.long, device=self.device)

    # --- the model -------------------------------------------------------
    def _logits(self, ids, sample_idx):
        # Positions are 0..T-1 (transformers' default), not the requests'
        # own: with random weights only the shapes matter, and workload.py
        # switches off transformers' packed-sequence check (a host sync).
        hidden = self.model.model(input_ids=ids, use_cache=False)
        hidden = hidden.last_hidden_state if hasattr(hidden, "last_hidden_state") else hidden[0]
        if sample_idx is None:
            return self.model.lm_head(hidden[0])
        return self.model.lm_head(hidden[0].index_select(0, sample_idx))

    def _to_device(self, values):
        t = torch.tensor(values, dtype=torch.long)
        if self.cuda:
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    # --- warm-up and capture (suppressed by the marker) ------------------
    def _dummy_run(self, num_tokens, capture=False):
        """Run (and with capture=True, capture) a decode batch of num_tokens."""
        ids = self._static_ids[:, :num_tokens] if self.cuda else torch.ones(
            (1, num_tokens), dtype=torch.long)
        if not capture:
            self._logits(ids, None)
            return None
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._logits(ids, None)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        pool = getattr(self, "_pool", None)
        mode = {"capture_error_mode": self.capture_error_mode} if self.capture_error_mode else {}
        with torch.cuda.graph(graph, pool=pool, **mode):
            logits = self._logits(ids, None)
        self._pool = graph.pool()
        self.graphs[num_tokens] = (graph, logits)
        return graph

    def profile_run(self):
        """Warm-up: one forward of every token count the scheduler can ask
        for, so that no step pays for a shape's first run (see gpusched)."""
        self._dummy_run(8)
        for n in gsched.multi_token_counts():
            self._logits(self._to_device([[1] * n]), None)
        if self.cuda:
            torch.cuda.synchronize()

    def capture_model(self):
        """One full graph per decode batch size, largest first (as vLLM)."""
        if self.eager:
            return 0
        for n in range(self.max_decode_batch, 0, -1):
            ok = True
            try:
                self._dummy_run(n, capture=True)
            except Exception as e:  # leave that size eager, say so
                ok = False
                self.graph_errors.append(f"{n}: {e!r}")
                try:
                    torch.cuda.synchronize()
                except Exception as e2:
                    self.graph_errors.append(f"{n}: after the failure: {e2!r}")
            if not self.agree(ok):
                if ok:  # captured here, not on another rank: eager everywhere
                    self.graphs.pop(n, None)
                    self.graph_errors.append(f"{n}: another rank could not capture it")
                if not self.graphs and len(self.graph_errors) >= 3:
                    break  # capture does not work here at all: stay eager
        torch.cuda.synchronize()
        return len(self.graphs)

    # --- the step --------------------------------------------------------
    def execute_model(self, scheduler_output, intermediate_tensors=None):
        begin_ns = time.monotonic_ns()
        if scheduler_output.total_num_scheduled_tokens == 0:
            return EMPTY_MODEL_RUNNER_OUTPUT
        self.step += 1
        phase, n_reqs, n_tokens, p_reqs, p_tokens = gsched.shape(scheduler_output)
        ids, sample_idx, req_ids = [], [], []
        for req in scheduler_output.scheduled_new_reqs:
            n = scheduler_output.num_scheduled_tokens[req.req_id]
            start = req.num_computed_tokens
            ids.extend(t % self.vocab for t in req.prompt_token_ids[start:start + n])
            sample_idx.append(len(ids) - 1)
            req_ids.append(req.req_id)
        cached = scheduler_output.scheduled_cached_reqs
        for req_id, computed in zip(cached.req_ids, cached.num_computed_tokens):
            n = scheduler_output.num_scheduled_tokens[req_id]
            ids.extend((computed * 7 + k) % self.vocab for k in range(n))
            sample_idx.append(len(ids) - 1)
            req_ids.append(req_id)
        graph = self.graphs.get(n_tokens) if phase == "decode" and not self.eager else None
        truth = StepTruth(self.step, phase, n_reqs, n_tokens, p_reqs, p_tokens, begin_ns,
                          int(graph is not None), int(bool(self.traced_probe())))
        start = self._event()
        start.record()
        if graph is not None:
            g, logits = graph
            self._static_ids[:, :n_tokens].copy_(self._to_device([ids]), non_blocking=True)
            g.replay()
        else:
            logits = self._logits(self._to_device([ids]), self._to_device(sample_idx))
        self._pending = (logits, req_ids, start, truth)
        truth.forward_end_ns = time.monotonic_ns()
        return None

    def sample_tokens(self, grammar_output):
        logits, req_ids, start, truth = self._pending
        self._pending = None
        sampled = logits.argmax(dim=-1)
        if self.cuda:
            host = torch.empty(sampled.shape, dtype=sampled.dtype, pin_memory=True)
            host.copy_(sampled, non_blocking=True)
        else:
            host = sampled.clone()
        ready = self._event()
        ready.record()
        output = ModelRunnerOutput(req_ids=req_ids,
                                   req_id_to_index={r: i for i, r in enumerate(req_ids)})
        truth.sample_end_ns = time.monotonic_ns()
        return AsyncGPUModelRunnerOutput(output, host, ready, start, truth)

"""The simulated model: what a Llama-shaped model's forward pass, logits and
sampling launch on the GPU, in eager mode and with CUDA graphs.

Launch counts per layer follow cuda-facts.md's measured mix: most kernels
through cudaLaunchKernel, one cudaLaunchKernelExC, and the GEMMs through
cuBLAS straight at the driver (4 of 13, about 30%).  GPU time per kernel
grows with the number of tokens (see csrc/simtorch.c and csrc/cublas.c), so
a step takes about 1 ms (small decode) to 6 ms (512-token prefill).
"""
from dataclasses import dataclass

from . import cuda

NUM_LAYERS = 12
#: Kernels of one eager layer, by the path they are launched through.
LAYER_RT, LAYER_EXC, LAYER_GEMM = 8, 1, 4
#: Attention kernels of a layer; launched eagerly between piecewise graphs.
ATTN_RT = 2
#: Sampler kernels (temperature, top-k/p, argmax...), always eager.
SAMPLER_RT = 4
#: Largest batch (in tokens) a step may have.
MAX_NUM_TOKENS = 512
#: Largest batch (in tokens) captured as graphs: vLLM's default,
#: min(2 * max_num_seqs * (1 + speculative tokens), 512), with the
#: scheduler's 16 sequences and its most draft tokens (8), so that every
#: uniform decode has its graph. A step of more tokens runs eagerly
#: whatever its shape, as vLLM's dispatcher does: under load most mixed
#: steps do (a real server's mixed steps launched 266 kernels and 0.3
#: graphs each, its decode steps 19 and 1; gpu/results/README.md, lease 5).
MAX_CAPTURE_SIZE = 288
#: Batch sizes (tokens) captured as graphs at warm-up, as vLLM's capture sizes.
CAPTURE_SIZES = (MAX_CAPTURE_SIZE, 256, 128, 64, 32, 16, 8, 4, 2, 1)

EAGER, FULL, PIECEWISE = "eager", "full", "piecewise"


@dataclass(frozen=True)
class Launches:
    """Launches a step makes: kernel launches (each counted once) and graphs."""

    kernels: int
    graphs: int


def expected_launches(mode: str) -> Launches:
    """What one real step launches in `mode`, forward plus logits, sampling."""
    tail = 1 + SAMPLER_RT  # lm_head GEMM + sampler
    if mode == EAGER:
        # embedding, the layers, the final norm
        return Launches(1 + NUM_LAYERS * (LAYER_RT + LAYER_EXC + LAYER_GEMM) + 1 + tail, 0)
    if mode == FULL:
        return Launches(tail, 1)
    # one graph per piece between attentions: NUM_LAYERS + 1 pieces
    return Launches(NUM_LAYERS * ATTN_RT + tail, NUM_LAYERS + 1)


def dispatch_mode(scheduler_output, enforce_eager: bool) -> str:
    """Pick eager, FULL or PIECEWISE graphs as vLLM's cudagraph dispatcher
    does in FULL_AND_PIECEWISE mode: a batch of more tokens than any
    captured graph runs eagerly; a uniform decode batch (every request
    scheduled 1 + the same number of speculative tokens) replays one full
    graph; anything else replays piecewise graphs."""
    if enforce_eager or scheduler_output.total_num_scheduled_tokens > MAX_CAPTURE_SIZE:
        return EAGER
    scheduled = scheduler_output.num_scheduled_tokens
    spec = scheduler_output.scheduled_spec_decode_tokens
    per_req = {n - len(spec.get(r, ())) for r, n in scheduled.items()}
    if per_req == {1} and not scheduler_output.scheduled_new_reqs:
        return FULL
    return PIECEWISE


class SimModel:
    """Issues the model's launches through libsimtorch."""

    def __init__(self):
        self.torch = cuda.libs().simtorch

    def forward(self, num_tokens: int, mode: str) -> None:
        """Embedding, the decoder layers and the final norm."""
        t = self.torch
        if mode == EAGER:
            cuda.launched(t.simtorch_layer(num_tokens, 1, 0, 0), "embedding")
            for _ in range(NUM_LAYERS):
                cuda.launched(t.simtorch_layer(num_tokens, LAYER_RT, LAYER_EXC, LAYER_GEMM),
                              "decoder layer")
            cuda.launched(t.simtorch_layer(num_tokens, 1, 0, 0), "final norm")
        elif mode == FULL:
            cuda.launched(t.simtorch_graph(num_tokens, LAYER_RT, LAYER_EXC, LAYER_GEMM,
                                           NUM_LAYERS), "full graph")
        else:
            rest = LAYER_RT - ATTN_RT
            for _ in range(NUM_LAYERS):
                cuda.launched(t.simtorch_graph(num_tokens, rest, LAYER_EXC, LAYER_GEMM, 1),
                              "piecewise graph")
                cuda.launched(t.simtorch_layer(num_tokens, ATTN_RT, 0, 0), "attention")
            cuda.launched(t.simtorch_graph(num_tokens, 1, 0, 0, 1), "last piece")

    def compute_logits(self, num_reqs: int) -> None:
        """The lm_head GEMM over the last token of each request."""
        cuda.launched(self.torch.simtorch_layer(num_reqs, 0, 0, 1), "lm_head")

    def sample(self, num_reqs: int) -> None:
        cuda.launched(self.torch.simtorch_layer(num_reqs, SAMPLER_RT, 0, 0), "sampler")

    def copy_to_host(self, dst: int, nbytes: int, event) -> None:
        """Sampled ids to the host: queued into pinned `dst` followed by
        `event`, or, with event None, blocking like torch's .tolist()."""
        handle = event.handle if event is not None else None
        cuda.launched(self.torch.simtorch_copy_tokens(dst, nbytes, handle), "token copy")

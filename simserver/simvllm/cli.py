"""Command-line options of the simulated server, checked up front."""
import argparse
import os
from dataclasses import dataclass
from typing import Optional

from .kvcache import BLOCK_SIZE
from .scheduler import MAX_SPEC_TOKENS, SPEC_PERIOD, SPEC_STEPS, SchedConfig, min_kv_blocks

MAX_WORKERS = 8
MAX_DATA_PARALLEL = 4


@dataclass
class Options:
    duration: float
    rate: float
    workers: int
    data_parallel: int
    eager: bool
    runner: str
    start_method: str
    start_delay: float
    frontend_without_cuda: bool
    truth_dir: Optional[str]
    sync: bool
    seed: int
    kv_blocks: int
    spec: str
    spec_tokens: int
    spec_acceptance: float


def _non_negative(name):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number of seconds, not {text!r}")
        if not value >= 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{name} must be finite and >= 0, not {text}")
        return value
    return parse


def _count(name, most):
    def parse(text):
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, not {text!r}")
        if not 1 <= n <= most:
            raise argparse.ArgumentTypeError(f"{name} must be 1 to {most}, not {n}")
        return n
    return parse


def _probability(name):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, not {text!r}")
        if not 0 <= value <= 1:
            raise argparse.ArgumentTypeError(f"{name} must be 0 to 1, not {text}")
        return value
    return parse


def _at_least(name, least):
    def parse(text):
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, not {text!r}")
        if n < least:
            raise argparse.ArgumentTypeError(f"{name} must be at least {least}, not {n}")
        return n
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="serve",
        description="A simulated vLLM server (API server -> EngineCore -> workers) "
                    "on fake CUDA libraries, for tests and demos without a GPU.")
    p.add_argument("--duration", type=_non_negative("--duration"), default=0.0,
                   help="seconds of serving steps after warm-up; 0 (default): until "
                        "SIGTERM/SIGINT")
    p.add_argument("--rate", type=_non_negative("--rate"), default=0.0,
                   help="new requests per second; 0 (default): back-to-back waves of "
                        "requests, so the engine never idles")
    p.add_argument("--workers", type=_count("--workers", MAX_WORKERS), default=1,
                   help="tensor-parallel workers; 1 (default) runs the model inside "
                        "EngineCore")
    p.add_argument("--data-parallel", type=_count("--data-parallel", MAX_DATA_PARALLEL),
                   default=1,
                   help="data-parallel engines, each with its --workers and its own request "
                        "mix (seed + its rank), titled as vLLM titles them: "
                        "VLLM::EngineCore_DP<d>, VLLM::Worker_DP<d>_TP<r>; 1 (default)")
    p.add_argument("--eager", action="store_true",
                   help="launch every kernel (vLLM's --enforce-eager): no CUDA graphs")
    p.add_argument("--runner", choices=("v1", "v2", "mixed"), default="v2",
                   help="model runner: V1, V2 (default, as vLLM 0.26 picks for Llama), or mixed (even ranks V1, odd V2)")
    p.add_argument("--start-method", choices=("fork", "spawn"), default="fork",
                   help="multiprocessing start method of EngineCore and workers")
    p.add_argument("--start-delay", type=_non_negative("--start-delay"), default=0.0,
                   help="seconds the API server waits before starting EngineCore")
    p.add_argument("--frontend-without-cuda", action="store_true",
                   help="the API server maps no CUDA library, as a front end that does "
                        "not import torch: only EngineCore and the workers do")
    p.add_argument("--truth-dir", metavar="DIR",
                   help="write truth_<pid>.csv per worker and server.json here "
                        "(created if missing)")
    p.add_argument("--sync", action="store_true",
                   help="no async scheduling: each step's output is fetched before "
                        "the next step starts")
    p.add_argument("--seed", type=int, default=0, help="seed of the request mix")
    p.add_argument("--kv-blocks", type=_at_least("--kv-blocks", 1),
                   default=SchedConfig.kv_blocks,
                   help=f"KV-cache blocks of {BLOCK_SIZE} tokens (default "
                        f"{SchedConfig.kv_blocks}: waves fill it and force preemptions); "
                        "fewer: more pressure, more preemptions")
    p.add_argument("--spec", choices=("periods", "always", "off"), default=SchedConfig.spec,
                   help="speculative decoding: in periods (default: the last "
                        f"{SPEC_STEPS} of every {SPEC_PERIOD} steps), on every decode step, "
                        "or off (not configured)")
    p.add_argument("--spec-tokens", type=_count("--spec-tokens", MAX_SPEC_TOKENS),
                   default=SchedConfig.spec_tokens,
                   help=f"draft tokens per decode request (default {SchedConfig.spec_tokens})")
    p.add_argument("--spec-acceptance", type=_probability("--spec-acceptance"),
                   default=SchedConfig.spec_acceptance,
                   help="probability that a draft token agrees with the target model; "
                        "drafts after the first disagreeing one are rejected (default "
                        f"{SchedConfig.spec_acceptance})")
    return p


def parse(argv) -> Options:
    p = parser()
    args = p.parse_args(argv)
    least = min_kv_blocks(args.spec_tokens)
    if args.kv_blocks < least:
        p.error(f"--kv-blocks must be at least {least} (the longest request alone), "
                f"not {args.kv_blocks}")
    if args.truth_dir:
        try:
            os.makedirs(args.truth_dir, exist_ok=True)
        except OSError as e:
            p.error(f"--truth-dir {args.truth_dir}: {e.strerror}")
        if not os.access(args.truth_dir, os.W_OK):
            p.error(f"--truth-dir {args.truth_dir}: not writable")
        args.truth_dir = os.path.abspath(args.truth_dir)
    return Options(**vars(args))

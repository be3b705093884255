"""Ground truth: what each worker process really did, one CSV row per real
step, written as soon as the step's output is on the host; and what each
EngineCore's scheduler did, one row per scheduled step and the run's totals.
"""
import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import cuda

#: The scheduler's values of a step (-1: unknown, e.g. spec without
#: speculative decoding), in the columns of both truth files.
SCHED_COLUMNS = ("kv_usage_permille", "running_reqs", "waiting_reqs", "preempted_reqs",
                 "token_budget", "max_num_seqs", "spec_proposed", "spec_accepted")
COLUMNS = ("pid", "step", "begin_ns", "output_ready_ns", "phase", "batch_size",
           "num_tokens", "num_prefill_reqs", "num_prefill_tokens", "launches",
           "graph_launches", "runner", "title", "outer_begin_ns", "outer_ready_ns",
           "engine_pid") + SCHED_COLUMNS
ENGINE_COLUMNS = ("pid", "step", "update_begin_ns", "update_end_ns", "num_tokens",
                  "batch_size") + SCHED_COLUMNS


@dataclass
class StepPlan:
    """A step as the scheduler planned it (its own bookkeeping, not
    re-derived from the SchedulerOutput the way the marker does): its shape,
    and the scheduler's state at the end of schedule() (the marker's
    sched_step arguments; num_tokens and batch_size are its scheduled_tokens
    and scheduled_reqs)."""

    phase: str
    batch_size: int
    num_tokens: int
    num_prefill_reqs: int
    num_prefill_tokens: int
    kv_usage_permille: int = -1
    running_reqs: int = -1
    waiting_reqs: int = -1
    preempted_reqs: int = -1
    token_budget: int = -1
    max_num_seqs: int = -1
    spec_proposed: int = -1
    spec_accepted: int = -1
    #: Requests whose last step this is (simulation only, not written).
    finishing: tuple = ()

    def sched_values(self) -> tuple:
        return tuple(getattr(self, c) for c in SCHED_COLUMNS)


class StepStamp:
    """Times and launch counts of one real step, taken by the model runner.

    begin() at the entry of execute_model's body, launched() once the step's
    last launch was made (end of sample_tokens), output_ready() where the
    output reaches the host (get_output, or sample_tokens when synchronous).
    Launches are counted at the driver, where every launch passes once.
    outer_begin_ns and outer_ready_ns are taken by the worker before it
    calls execute_model and after get_output (or sample_tokens) returned:
    around the marker's wrappers, so its probes fire inside
    [outer_begin_ns, begin_ns] and [output_ready_ns, outer_ready_ns].
    """

    def __init__(self, step: int, begin_ns: int):
        self.step = step
        self.begin_ns = begin_ns
        self._start = cuda.libs().launch_counts()
        self.launches = self.graph_launches = 0
        self.output_ready_ns = 0
        self.outer_begin_ns = self.outer_ready_ns = 0

    def launched(self) -> None:
        kernels, graphs = cuda.libs().launch_counts()
        self.launches = kernels - self._start[0]
        self.graph_launches = graphs - self._start[1]

    def output_ready(self) -> None:
        self.output_ready_ns = time.monotonic_ns()


class TruthWriter:
    """Appends rows to <truth_dir>/truth_<pid>.csv, flushed per row."""

    def __init__(self, truth_dir: str, runner: str, title: str, engine_pid: int):
        self.pid = os.getpid()
        self.runner = runner
        self.title = title
        self.engine_pid = engine_pid
        path = Path(truth_dir) / f"truth_{self.pid}.csv"
        self._file = open(path, "w", newline="", buffering=1)
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(COLUMNS)

    def write(self, stamp: StepStamp, plan: StepPlan) -> None:
        self._csv.writerow((
            self.pid, stamp.step, stamp.begin_ns, stamp.output_ready_ns, plan.phase,
            plan.batch_size, plan.num_tokens, plan.num_prefill_reqs,
            plan.num_prefill_tokens, stamp.launches, stamp.graph_launches,
            self.runner, self.title, stamp.outer_begin_ns, stamp.outer_ready_ns,
            self.engine_pid) + plan.sched_values())

    def close(self) -> None:
        self._file.close()


class EngineTruthWriter:
    """<truth_dir>/sched_<pid>.csv of an EngineCore, one row per scheduled
    step, flushed per row: the step's values and the times just before and
    just after the engine called update_from_output (where the marker fires
    sched_step); at close, sched_totals_<pid>.json with totals(rows)."""

    def __init__(self, truth_dir: str):
        self.pid = os.getpid()
        self.dir = Path(truth_dir)
        self._file = open(self.dir / f"sched_{self.pid}.csv", "w", newline="", buffering=1)
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(ENGINE_COLUMNS)
        self._rows = []

    def write(self, step: int, plan: StepPlan, begin_ns: int, end_ns: int) -> None:
        row = (self.pid, step, begin_ns, end_ns, plan.num_tokens,
               plan.batch_size) + plan.sched_values()
        self._csv.writerow(row)
        self._rows.append(dict(zip(ENGINE_COLUMNS, row)))

    def close(self) -> None:
        self._file.close()
        path = self.dir / f"sched_totals_{self.pid}.json"
        path.write_text(json.dumps(totals(self._rows), indent=2) + "\n")


def totals(rows) -> dict:
    """The scheduler's totals over `rows` (dicts with ENGINE_COLUMNS, one
    per scheduled step: an engine's, or a trace window's): what the
    tracer's summary.json puts in `_scheduler`.  KV usage as a fraction;
    spec counts and acceptance_rate None without speculative decoding."""
    kv = [int(r["kv_usage_permille"]) / 1000 for r in rows]
    spec = [(int(r["spec_proposed"]), int(r["spec_accepted"])) for r in rows
            if int(r["spec_proposed"]) >= 0]
    proposed = sum(p for p, _ in spec) if spec else None
    num_accepted = sum(a for _, a in spec) if spec else None
    return {
        "sched_steps": len(rows),
        "preemptions": sum(int(r["preempted_reqs"]) for r in rows),
        "peak_kv_cache_usage": max(kv, default=None),
        "mean_kv_cache_usage": round(sum(kv) / len(kv), 6) if kv else None,
        "spec_proposed": proposed,
        "spec_accepted": num_accepted,
        "acceptance_rate": round(num_accepted / proposed, 6) if proposed else None,
    }

"""Ground truth: what each worker process really did, one CSV row per real
step, written as soon as the step's output is on the host."""
import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import cuda

COLUMNS = ("pid", "step", "begin_ns", "output_ready_ns", "phase", "batch_size",
           "num_tokens", "num_prefill_reqs", "num_prefill_tokens", "launches",
           "graph_launches", "runner", "title", "outer_begin_ns", "outer_ready_ns")


@dataclass
class StepPlan:
    """The shape of a step as the scheduler planned it (its own bookkeeping,
    not re-derived from the SchedulerOutput the way the marker does)."""

    phase: str
    batch_size: int
    num_tokens: int
    num_prefill_reqs: int
    num_prefill_tokens: int


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

    def __init__(self, truth_dir: str, runner: str, title: str):
        self.pid = os.getpid()
        self.runner = runner
        self.title = title
        path = Path(truth_dir) / f"truth_{self.pid}.csv"
        self._file = open(path, "w", newline="", buffering=1)
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(COLUMNS)

    def write(self, stamp: StepStamp, plan: StepPlan) -> None:
        self._csv.writerow((
            self.pid, stamp.step, stamp.begin_ns, stamp.output_ready_ns, plan.phase,
            plan.batch_size, plan.num_tokens, plan.num_prefill_reqs,
            plan.num_prefill_tokens, stamp.launches, stamp.graph_launches,
            self.runner, self.title, stamp.outer_begin_ns, stamp.outer_ready_ns))

    def close(self) -> None:
        self._file.close()

"""A GPU worker: the model runner driven by the engine, one step at a time.

The main thread runs execute_model and sample_tokens.  With async scheduling
an output thread waits for each step's output (get_output) while the main
thread already launches the next step, as vLLM's workers do; it then writes
the step's truth row and tells the engine the step is done.
"""
import importlib
import os
import queue
import threading
import time
import traceback

from vllm.plugins import load_general_plugins

from . import procs
from .runner import SimConfig
from .truth import TruthWriter

RUNNER_MODULES = {
    "v1": "vllm.v1.worker.gpu_model_runner",
    "v2": "vllm.v1.worker.gpu.model_runner",
}


def runner_kind(runner: str, rank: int) -> str:
    """v1 or v2 for `rank`: --runner mixed gives even ranks V1, odd V2."""
    if runner == "mixed":
        return "v1" if rank % 2 == 0 else "v2"
    return runner


class Worker:
    """Builds and warms up a runner, then runs the steps given to step().

    `reply` (a multiprocessing Connection) receives ("ready", info) once,
    then (step number, ModelRunnerOutput) of every step whose output is on
    the host; the output from rank 0 only (vLLM's output rank), None from
    the others.  engine_pid: the EngineCore's pid, for the truth rows
    (default: this process, as in the uni executor).
    """

    def __init__(self, opts, rank: int, title: str, reply, engine_pid: int = 0):
        self.kind = runner_kind(opts.runner, rank)
        self.rank = rank
        self.reply = reply
        self.async_scheduling = not opts.sync
        # The module is imported only now, after the plugins ran, as vLLM
        # does: the marker may patch it at import.
        module = importlib.import_module(RUNNER_MODULES[self.kind])
        self.runner = module.GPUModelRunner(
            SimConfig(enforce_eager=opts.eager, async_scheduling=self.async_scheduling),
            f"cuda:{rank}")
        self.truth = (TruthWriter(opts.truth_dir, self.kind, title, engine_pid or os.getpid())
                      if opts.truth_dir else None)
        self.runner.profile_run()
        self.runner.capture_model()
        self._outputs = queue.SimpleQueue()
        self._thread = None
        if self.async_scheduling:
            self._thread = threading.Thread(target=self._output_loop,
                                            name="WorkerAsyncOutput", daemon=True)
            self._thread.start()
        reply.send(("ready", {"pid": os.getpid(), "title": title, "rank": rank,
                              "runner": self.kind}))

    def step(self, scheduler_output, plan) -> None:
        """Run one step; its completion is reported on `reply`.

        The stamp's outer points are taken here, around the calls the
        marker wraps: its step_begin fires between outer_begin and begin,
        its output_ready between output_ready and outer_ready, however
        long a busy machine keeps this thread from a core in between."""
        outer_begin_ns = time.monotonic_ns()
        self.runner.execute_model(scheduler_output)
        stamp = self.runner.current_stamp
        if stamp is not None:
            stamp.outer_begin_ns = outer_begin_ns
        output = self.runner.sample_tokens(None)
        if self.async_scheduling:
            self._outputs.put((output, plan))
        else:
            self.runner.last_stamp.outer_ready_ns = time.monotonic_ns()
            self._finish(self.runner.last_stamp, plan, output)

    def _output_loop(self) -> None:
        try:
            while (item := self._outputs.get()) is not None:
                output, plan = item
                model_runner_output = output.get_output()
                output.sim_stamp.outer_ready_ns = time.monotonic_ns()
                self._finish(output.sim_stamp, plan, model_runner_output)
        except Exception:
            traceback.print_exc()
            # The engine sees the closed connection and stops the server.
            self.reply.close()

    def _finish(self, stamp, plan, model_runner_output) -> None:
        if self.truth:
            self.truth.write(stamp, plan)
        self.reply.send((stamp.step, model_runner_output if self.rank == 0 else None))

    def close(self) -> None:
        """Wait for outstanding outputs, then close the truth file."""
        if self._thread:
            self._outputs.put(None)
            self._thread.join()
        if self.truth:
            self.truth.close()


def worker_main(opts, rank: int, title: str, steps, reply, parent_pid: int) -> None:
    """Entry of a worker process started by EngineCore, titled `title`."""
    procs.die_with_parent(parent_pid)
    procs.set_title(title)
    stop = procs.StopFlag()
    load_general_plugins()
    worker = Worker(opts, rank, title, reply, parent_pid)
    try:
        while not stop.is_set():
            if not steps.poll(0.2):
                continue
            try:
                item = steps.recv()
            except EOFError:
                break
            if item is None:
                break
            worker.step(*item)
    finally:
        worker.close()

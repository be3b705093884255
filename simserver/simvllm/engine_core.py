"""The EngineCore process: schedules steps and hands them to the workers.

With one worker the model runs inside EngineCore (vLLM's uni executor);
with more, EngineCore starts one worker process per tensor-parallel rank and
sends every step to all of them (vLLM's multiproc executor).  Under async
scheduling the next step is handed out before the previous one's output is
back, so two steps are in flight.
"""
import collections
import json
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
from pathlib import Path

from vllm.plugins import load_general_plugins

from . import cuda, procs
from .scheduler import SchedConfig, Scheduler
from .truth import EngineTruthWriter
from .worker import Worker, worker_main

TITLE = "VLLM::EngineCore"
#: Seconds a loop waits before looking at the stop flag again.
POLL_S = 0.2
#: Seconds a worker gets to exit once told to stop.
WORKER_EXIT_S = 10


class WorkerDied(Exception):
    """A worker's connection closed while the engine still needed it."""


def titles(opts, dp_rank: int):
    """The engine's title and a function giving each worker's, as vLLM
    names them: _DP<d> only with data parallelism."""
    dp = f"_DP{dp_rank}" if opts.data_parallel > 1 else ""
    return TITLE + dp, lambda rank: f"VLLM::Worker{dp}_TP{rank}"


class LocalWorker:
    """The uni executor: the runner in this process, on this main thread."""

    def __init__(self, opts, title: str):
        self.replies, reply = multiprocessing.Pipe(duplex=False)
        self.worker = Worker(opts, 0, title, reply)
        self.info = self.replies.recv()[1]

    def submit(self, item) -> None:
        self.worker.step(*item)

    def stop(self) -> None:
        self.worker.close()


class RemoteWorker:
    """A worker process and the two pipes to it."""

    def __init__(self, ctx, opts, rank: int, title: str):
        steps_r, self.steps = ctx.Pipe(duplex=False)
        self.replies, replies_w = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=worker_main, name=f"VllmWorker-{rank}",
                                   args=(opts, rank, title, steps_r, replies_w, os.getpid()))
        self.process.start()
        steps_r.close()
        replies_w.close()
        self.info = None

    def submit(self, item) -> None:
        try:
            self.steps.send(item)
        except OSError as e:
            raise WorkerDied(self.process.name) from e

    def stop(self) -> None:
        try:
            self.steps.send(None)
        except OSError:
            pass  # already gone
        self.process.join(WORKER_EXIT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def recv(worker, stop) -> object:
    """The next reply of `worker`; None when stopped first."""
    while not stop.is_set():
        if worker.replies.poll(POLL_S):
            try:
                return worker.replies.recv()
            except EOFError as e:
                raise WorkerDied(worker.info["title"] if worker.info else "worker") from e
    return None


def write_server_json(opts, api_pid: int, title: str, dp_rank: int, workers) -> None:
    """<truth-dir>/server.json (server_dp<d>.json with data parallelism): the
    pids and titles of the engine's processes; written once every worker is
    warmed up, so its presence means 'serving'."""
    runners = [w.info for w in workers]
    doc = {
        "api_server": {"pid": api_pid, "title": Path(f"/proc/{api_pid}/cmdline")
                       .read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode()},
        "engine_core": {"pid": os.getpid(), "title": title, "dp_rank": dp_rank},
        "workers": runners if len(workers) > 1 else [],
        "runners": runners,
        "start_method": opts.start_method,
        "async_scheduling": not opts.sync,
        "eager": opts.eager,
    }
    name = f"server_dp{dp_rank}.json" if opts.data_parallel > 1 else "server.json"
    path = Path(opts.truth_dir) / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.rename(path)


def sched_config(opts) -> SchedConfig:
    """The scheduler's knobs from the command line."""
    return SchedConfig(kv_blocks=opts.kv_blocks, spec=opts.spec, spec_tokens=opts.spec_tokens,
                       spec_acceptance=opts.spec_acceptance)


def serve_steps(opts, seed: int, workers, stop, truth=None) -> None:
    """Schedule and run steps until --duration is over or a stop signal.

    The scheduler is vLLM's class (the stand-in at its module path, so the
    marker patches it), imported only now, after the plugins ran, as
    EngineCore does; each step's output goes back to its update_from_output.
    """
    from vllm.v1.core.sched.scheduler import Scheduler as VllmScheduler

    scheduler = VllmScheduler(Scheduler(seed, opts.rate, sched_config(opts)))
    depth = 1 if opts.sync else 2
    inflight = collections.deque()
    deadline = time.monotonic() + opts.duration if opts.duration else None
    while not stop.is_set():
        now = time.monotonic()
        if deadline and now >= deadline:
            break
        while len(inflight) < depth:
            scheduler_output = scheduler.schedule()
            if not scheduler_output.total_num_scheduled_tokens:
                break
            item = (scheduler_output, scheduler.last_plan)
            for w in workers:
                w.submit(item)
            inflight.append(item)
        if inflight:
            finish_step(scheduler, workers, inflight.popleft(), stop, truth)
            continue
        wake = min(t for t in (scheduler.sim.next_arrival(), deadline, now + POLL_S) if t)
        stop.wait(max(0.0, wake - now))
    # Outputs of steps already handed out are still collected (and recorded).
    while inflight and not stop.is_set():
        finish_step(scheduler, workers, inflight.popleft(), stop, truth)


def finish_step(scheduler, workers, item, stop, truth) -> None:
    """Wait for the step's output from every worker, then hand rank 0's to
    update_from_output and record the step in the engine's truth."""
    replies = [recv(w, stop) for w in workers]
    if None in replies:
        return  # stopped
    (step, model_runner_output), scheduler_output, plan = replies[0], *item
    begin_ns = time.monotonic_ns()
    scheduler.update_from_output(scheduler_output, model_runner_output)
    end_ns = time.monotonic_ns()
    if truth:
        truth.write(step, plan, begin_ns, end_ns)


def engine_core_main(opts, api_pid: int, dp_rank: int = 0) -> None:
    """Entry of the EngineCore process of data-parallel rank dp_rank."""
    procs.die_with_parent(api_pid)
    title, worker_title = titles(opts, dp_rank)
    procs.set_title(title)
    stop = procs.StopFlag()
    load_general_plugins()
    cuda.libs()
    workers = []
    truth = None
    code = 0
    try:
        if opts.workers == 1:
            workers.append(LocalWorker(opts, title))
        else:
            ctx = multiprocessing.get_context(opts.start_method)
            workers.extend(RemoteWorker(ctx, opts, rank, worker_title(rank))
                           for rank in range(opts.workers))
            for w in workers:
                reply = recv(w, stop)
                if reply is None:
                    return
                w.info = reply[1]
        if opts.truth_dir:
            write_server_json(opts, api_pid, title, dp_rank, workers)
            truth = EngineTruthWriter(opts.truth_dir)
        # Each data-parallel engine serves its own requests.
        serve_steps(opts, opts.seed + dp_rank, workers, stop, truth)
    except WorkerDied as e:
        print(f"EngineCore: worker {e} died", file=sys.stderr)
        code = 1
    finally:
        for w in workers:
            w.stop()
        if truth:
            truth.close()
    sys.exit(code)

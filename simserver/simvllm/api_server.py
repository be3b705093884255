"""The API server process: the root of the server's process tree.

It loads the plugins and the CUDA libraries (as `import torch` maps them in
a real API server, which launches nothing; not with --frontend-without-cuda,
as a front end that does not import torch), starts EngineCore (one per
data-parallel rank) after --start-delay, and on SIGTERM/SIGINT stops
EngineCore, which stops the workers.
"""
import multiprocessing
import os

from vllm.plugins import load_general_plugins

from . import cuda, procs
from .engine_core import engine_core_main

#: Seconds EngineCore gets to stop its workers and exit after SIGTERM.
ENGINE_EXIT_S = 20


def run(opts) -> int:
    """Serve until done or stopped; the exit code of the server."""
    stop = procs.StopFlag()
    load_general_plugins()
    if not opts.frontend_without_cuda:
        cuda.libs()
    if stop.wait(opts.start_delay):
        return 0
    ctx = multiprocessing.get_context(opts.start_method)
    engines = [ctx.Process(target=engine_core_main, args=(opts, os.getpid(), dp),
                           name=f"EngineCore_DP{dp}") for dp in range(opts.data_parallel)]
    for e in engines:
        e.start()
    failed = False
    while not stop.is_set():
        alive = [e for e in engines if e.is_alive()]
        failed = any(not e.is_alive() and e.exitcode != 0 for e in engines)
        if not alive or failed:
            break
        alive[0].join(0.2)
    # Stopped, or an engine failed: stop the others.
    for e in engines:
        if e.is_alive():
            e.terminate()
    for e in engines:
        e.join(ENGINE_EXIT_S)
        if e.is_alive():
            e.kill()
            e.join()
    return 1 if failed else 0

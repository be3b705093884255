"""The API server process: the root of the server's process tree.

It loads the plugins and the CUDA libraries (as `import torch` maps them in
a real API server, which launches nothing), starts EngineCore after
--start-delay, and on SIGTERM/SIGINT stops EngineCore, which stops the
workers.
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
    cuda.libs()
    if stop.wait(opts.start_delay):
        return 0
    ctx = multiprocessing.get_context(opts.start_method)
    engine = ctx.Process(target=engine_core_main, args=(opts, os.getpid()),
                         name="EngineCore_DP0")
    engine.start()
    while engine.is_alive() and not stop.is_set():
        engine.join(0.2)
    if engine.is_alive():
        engine.terminate()
        engine.join(ENGINE_EXIT_S)
        if engine.is_alive():
            engine.kill()
            engine.join()
        return 0
    return 0 if engine.exitcode == 0 else 1

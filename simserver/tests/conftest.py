"""Shared fixtures: the build paths and a helper to run `serve`.

Run through `make -C simserver test`, which builds first; BUILD comes from
env SIMSERVER_BUILD (default <repo>/build).
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SIMSERVER = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("SIMSERVER_BUILD", SIMSERVER.parent / "build")).resolve()
SERVE = SIMSERVER / "serve"

os.environ["SIMSERVER_SIM_DIR"] = str(BUILD / "sim")
sys.path.insert(0, str(SIMSERVER))


def start_serve(*args, env=None, **kwargs) -> subprocess.Popen:
    """Start `serve` with `args`; the Popen's pid is the API server's."""
    full_env = dict(os.environ, SIMSERVER_BUILD=str(BUILD), **(env or {}))
    return subprocess.Popen([str(SERVE), *map(str, args)], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until `path` exists (the server writes server.json when serving)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear in {timeout}s")
        time.sleep(0.05)


@pytest.fixture
def serve():
    """start_serve, with every server left running killed at the end."""
    procs = []

    def start(*args, **kwargs):
        proc = start_serve(*args, **kwargs)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()

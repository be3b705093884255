"""Process plumbing shared by the server's processes: titles, dying with
the parent, and stopping on SIGTERM/SIGINT."""
import ctypes
import os
import signal
import threading

import setproctitle

PR_SET_PDEATHSIG = 1


def set_title(title: str) -> None:
    """Set the process title as vLLM does (/proc/PID/cmdline and comm)."""
    setproctitle.setproctitle(title)


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when its parent dies, so no worker
    outlives a killed server; exit now if the parent is already gone."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent_pid:
        os._exit(1)


class StopFlag:
    """Set by SIGTERM or SIGINT; loops poll it between steps.

    A forked child inherits its parent's handlers and flag, so each process
    makes its own.
    """

    def __init__(self):
        self._event = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True once the flag is set."""
        return self._event.wait(timeout)

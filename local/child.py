"""Runs one module of the local runtime as a child that does not outlive its supervisor.

`python -m local.child local.api --fd 5` runs `local.api` as `python -m local.api --fd 5` would,
after asking Linux to send it SIGTERM when the supervisor dies (PR_SET_PDEATHSIG), so a
supervisor killed with SIGKILL leaves no API, worker or simulator behind holding ports and
database connections. The supervisor asks for this (PQ_SUPERVISOR_PID) only when it spawns from
its main thread: the signal follows the spawning thread, not the process.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def main() -> None:
    supervisor = int(os.environ.pop("PQ_SUPERVISOR_PID", "0") or 0)
    if supervisor and sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != supervisor:  # it died before the request took effect
            raise SystemExit(1)
    module, *args = sys.argv[1:]
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

"""One local run per data directory: `make run` holds an exclusive lock on `<data dir>/run.lock`, and so do
`make bench`, `make chaos` and `make capacity` on theirs (one_run_at_a_time).

The lock is an flock(2) on an open file, so the kernel drops it when the holder dies however it
dies (no stale lock after a SIGKILL); the file only says who held it last. `make reset`,
`make token` and a second `make run` read it to refuse what would break a running system.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

LOCK_NAME = "run.lock"


class AlreadyRunning(Exception):
    """Another process holds the data directory's lock."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"Payment Queue is already running on {data_dir} ({who})")
        self.pid = pid


class RunLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> RunLock:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Not inherited by the children (PEP 446): the lock is the supervisor's alone.
        file = open(self.path, "a+")  # noqa: SIM115 (held for the run's lifetime)
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise AlreadyRunning(self.data_dir, holder(self.data_dir)) from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self._file = file
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


@contextmanager
def one_run_at_a_time(data_dir: Path, command: str) -> Iterator[None]:
    """The data directory for one run of `command` (make bench, make chaos): a second run on the same
    directory would share the first's server and stop it under it, so it is refused, naming the holder."""
    lock = RunLock(data_dir)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        hint = f"kill -TERM {exc.pid}" if exc.pid else "Ctrl-C in its terminal"
        raise SystemExit(f"{command}: {exc}; wait for it to finish or stop it ({hint})") from None
    try:
        yield
    finally:
        lock.release()


def holder(data_dir: Path) -> int | None:
    """The pid recorded by the last holder (meaningful only while the lock is held)."""
    try:
        return int((data_dir / LOCK_NAME).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def running(data_dir: Path) -> int | None:
    """The running supervisor's pid (0 if unknown), or None when no run holds the lock."""
    path = data_dir / LOCK_NAME
    if not path.exists():
        return None
    with open(path) as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return holder(data_dir) or 0
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)
    return None

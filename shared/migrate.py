"""Versioned, idempotent migrations: each file in shared/migrations applies once, in name order."""

from __future__ import annotations

import hashlib
from importlib.resources import files

from shared.db import Database
from shared.domain import TransientError

# Serialises concurrent migrators (two deploys, or a deploy racing `make run`). A transaction-level
# advisory lock: RDS Proxy pins sessions on pg_advisory_lock but, by AWS's note in "Avoiding pinning
# an RDS Proxy" (PostgreSQL section), not on pg_advisory_xact_lock; it is released at commit. A
# LOCK TABLE schema_migrations would need the table to exist before two first deploys race to
# create it.
_LOCK_KEY = 0x5051_4D49  # "PQMI"
# Migrations may rewrite tables; the role's 5 s request timeout (0005_role_settings.sql) does not
# apply to them. Below the migrate function's 300 s timeout, so a stuck migration fails with a
# PostgreSQL error in its log instead of a Lambda timeout.
MIGRATION_STATEMENT_TIMEOUT_MS = 240_000


def _migration_files() -> list[tuple[str, str]]:
    folder = files("shared.migrations")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in names]


def migrate(db: Database) -> list[str]:
    """Apply every migration not yet applied; return the names applied by this call."""
    applied: list[str] = []
    with db.transaction(statement_timeout_ms=MIGRATION_STATEMENT_TIMEOUT_MS) as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        cur.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        cur.execute("SELECT version, checksum FROM schema_migrations")
        done = {r["version"]: r["checksum"] for r in cur.fetchall()}
        for name, sql in _migration_files():
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if name in done:
                if done[name] != checksum:
                    raise RuntimeError(f"migration {name} changed after it was applied; add a new file instead")
                continue
            cur.execute(sql)
            cur.execute("INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)", (name, checksum))
            applied.append(name)
    if applied:
        end_pooled_sessions(db)
    return applied


def end_pooled_sessions(db: Database) -> None:
    """End this role's idle sessions in this database, the migrator's own last.

    Role settings (0005_role_settings.sql) reach only sessions the server starts after them, and a
    pool keeps its sessions: RDS Proxy or PgBouncer would go on handing functions the server
    connections opened before the migration -- on a first deploy, the migrator's own -- without
    the statement timeout. Ended, they are replaced by the pool with fresh ones. Sessions running
    a statement are left alone.
    """
    db.execute(
        """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE usename = current_user AND datname = current_database()
              AND state = 'idle' AND pid <> pg_backend_pid()"""
    )
    try:
        db.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    except TransientError:
        pass  # the server ended this session, as asked
    finally:
        db.close()

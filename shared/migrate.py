"""Versioned, idempotent migrations: each file in shared/migrations applies once, in name order."""

from __future__ import annotations

import hashlib
from importlib.resources import files

from shared.db import Database

# Serialises concurrent migrators (two deploys, or a deploy racing `make run`).
_LOCK_KEY = 0x5051_4D49  # "PQMI"


def _migration_files() -> list[tuple[str, str]]:
    folder = files("shared.migrations")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in names]


def migrate(db: Database) -> list[str]:
    """Apply every migration not yet applied; return the names applied by this call."""
    applied: list[str] = []
    with db.transaction() as cur:
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
    return applied

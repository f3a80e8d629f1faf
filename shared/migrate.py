"""The one migration runner (make run, the tests, the AWS migrate trigger): schema, then SQL functions.

- Versioned migrations (shared/migrations/NNNN_*.sql) hold the schema. Each applies once, in name
  order, and is never edited after release: a changed checksum is refused.
- Repeatable files (shared/sql/*.sql) hold the functions, each defined once with CREATE OR REPLACE
  (DROP FUNCTION IF EXISTS first where a signature or OUT columns change). A file is applied again
  whenever its checksum changes, in the order of REPEATABLE below, after every versioned migration.
- The grants (shared/sql/grants.sql) go last, and again whenever anything else was applied: a function
  dropped and created again has lost its grants, one replaced has lost SECURITY DEFINER.
- Versions apply by name, and a name not yet applied applies whatever its number: a migration numbered
  below one already applied (written in parallel with it, merged after it) applies in the next run.

Both kinds are recorded in schema_migrations (repeatables under "sql/<name>"), all in one
transaction: a failed run changes nothing. What is applied must stay callable by the previous
release's code, which keeps running while a deploy rolls out and after a rollback.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files
from typing import Any

from shared.db import Database
from shared.domain import TransientError

# Serialises concurrent migrators (two deploys, or a deploy racing `make run`). A transaction-level
# advisory lock: RDS Proxy pins sessions on pg_advisory_lock but, by AWS's note in "Avoiding pinning
# an RDS Proxy" (PostgreSQL section), not on pg_advisory_xact_lock; it is released at commit. A
# LOCK TABLE schema_migrations would need the table to exist before two first deploys race to
# create it.
_LOCK_KEY = 0x5051_4D49  # "PQMI"
# Migrations may rewrite tables; the role's 5 s request timeout (0005_role_settings.sql) does not
# apply to them. The most they get: the migrate function passes what is left of its own timeout, less a
# margin (functions/migrate/handler.py), so a stuck migration fails with a PostgreSQL error in its log
# instead of a Lambda timeout.
MIGRATION_STATEMENT_TIMEOUT_MS = 240_000
# The function that sets it (inside a function: no session state the proxy could pin on).
SETTINGS_FILE = "migration_settings.sql"

# Who may do what (0014_function_roles.sql's roles): applied after everything else, see the docstring.
GRANTS_FILE = "grants.sql"

# Applied in this order: types first, then the functions that use them. plpgsql resolves the functions
# it calls when it runs, so among functions the order only matters for LANGUAGE sql bodies.
REPEATABLE = (
    SETTINGS_FILE,  # the migrator's own statement timeout
    "outcomes.sql",  # the outcome types of the money-moving functions
    "events.sql",  # ending a job and its outbox event
    "intake.sql",  # accepting a request (functions/enqueue)
    "books.sql",  # the gateway books: payments, refunds until the money is back, what is owed
    "checkouts.sql",  # gateway checkouts, their webhooks and reconciliation
    "stock_shards.sql",  # where an order's units come from: a product's row or its stock shards
    "fulfilment.sql",  # the order fulfilment both payment paths share
    "wallet_payment.sql",  # the wallet path (functions/process_payment)
    "line.sql",  # leaving the line: a cancelled job, the jobs of a sold-out product
    "rate_limits.sql",  # the gateway token buckets
    "circuits.sql",  # the gateways' circuit breakers, which route checkouts around an outage
    "gateway_payment.sql",  # the gateway path (functions/process_payment)
    "failures.sql",  # failed deliveries, for operators
    "local_queue.sql",  # PGMQ writes of the local stand-ins for SQS and EventBridge
    "merchant.sql",  # the shop backend's orders, wallet adjustments and payments on a shopper's behalf
    GRANTS_FILE,  # last: the grants on all of the above
)

# Migrations whose function definitions moved to shared/sql/ (the schema they create is unchanged):
# a database that applied the earlier text is accepted, and its record takes the new checksum.
SUPERSEDED = {
    "0002_payment_functions.sql": frozenset({"a80836a0a58ce4ce46a5482d97ea82000b5ae83132e2f9a46e22148c94d33e6a"}),
    "0003_gateway_payments.sql": frozenset({"54b71eaffd705406528fe5d3647f67d6ec778c222553f947967a4d2b250e93d2"}),
}


def _read(package: str, name: str) -> str:
    return files(package).joinpath(name).read_text(encoding="utf-8")


def versioned_files() -> list[tuple[str, str]]:
    names = sorted(p.name for p in files("shared.migrations").iterdir() if p.name.endswith(".sql"))
    return [(name, _read("shared.migrations", name)) for name in names]


def repeatable_files() -> list[tuple[str, str]]:
    present = {p.name for p in files("shared.sql").iterdir() if p.name.endswith(".sql")}
    if present != set(REPEATABLE):
        raise RuntimeError(f"shared/sql and REPEATABLE disagree: {sorted(present ^ set(REPEATABLE))}")
    return [(f"sql/{name}", _read("shared.sql", name)) for name in REPEATABLE]


def _checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


def migrate(db: Database, *, statement_timeout_ms: int = MIGRATION_STATEMENT_TIMEOUT_MS) -> list[str]:
    """Apply every migration not yet applied and every repeatable file that changed; return their names.

    Each statement may run for statement_timeout_ms (the transaction's own setting, made inside a SQL
    function); the waits for another migrator's lock included."""
    applied: list[str] = []
    with db.transaction() as cur:
        _set_timeout(cur, statement_timeout_ms)
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        cur.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        cur.execute("SELECT version, checksum FROM schema_migrations")
        done = {r["version"]: r["checksum"] for r in cur.fetchall()}
        for name, sql in versioned_files():
            checksum = _checksum(sql)
            if name not in done:
                cur.execute(sql)
                cur.execute("INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)", (name, checksum))
                applied.append(name)
            elif done[name] in SUPERSEDED.get(name, ()):
                cur.execute("UPDATE schema_migrations SET checksum = %s WHERE version = %s", (checksum, name))
            elif done[name] != checksum:
                raise RuntimeError(f"migration {name} changed after it was applied; add a new file instead")
        for name, sql in repeatable_files():
            checksum = _checksum(sql)
            if done.get(name) == checksum and not (name == f"sql/{GRANTS_FILE}" and applied):
                continue
            cur.execute(sql)
            cur.execute(
                """INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)
                   ON CONFLICT (version) DO UPDATE SET checksum = excluded.checksum, applied_at = now()""",
                (name, checksum),
            )
            applied.append(name)
    if any(not name.startswith("sql/") for name in applied):  # a function replaced needs no new session
        end_pooled_sessions(db)
    return applied


def _set_timeout(cur: Any, timeout_ms: int) -> None:
    """The transaction's statement timeout, through pq_set_migration_timeout; on a database that does not
    have the function yet (a first deploy) its file goes first, and is recorded with the others below."""
    cur.execute("SELECT to_regprocedure('pq_set_migration_timeout(integer)') IS NOT NULL AS present")
    if not cur.fetchone()["present"]:
        cur.execute(_read("shared.sql", SETTINGS_FILE))
    cur.execute("SELECT pq_set_migration_timeout(%s)", (int(timeout_ms),))


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

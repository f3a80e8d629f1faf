"""Through PgBouncer in transaction mode, as through RDS Proxy: no startup options, role settings hold."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import psycopg2
import pytest

from local.pgbouncer import PgBouncer
from shared.db import Database
from shared.domain import TransientError
from shared.migrate import MIGRATION_STATEMENT_TIMEOUT_MS, migrate
from tests.aws.pinning import PGBOUNCER_OWN
from tests.conftest import _admin_exec


def _database(url: str) -> Database:
    return Database(lambda: url, connect_timeout_s=5, application_name="pq-test")


@pytest.fixture
def empty_database(pg_admin_url: str) -> str:
    """A new, empty database: what the migrate function meets on the first deploy."""
    name = f"t_empty_{time.monotonic_ns() % 10**9}"
    _admin_exec(pg_admin_url, f"CREATE DATABASE {name}")
    return name


def _top_level_sets(admin_url: str, database: str) -> list[str]:
    """SET / RESET statements pg_stat_statements saw at top level in `database`, but PgBouncer's own."""
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            cur.execute(
                """SELECT query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                    WHERE d.datname = %s AND s.toplevel AND query ~* '^[[:space:]]*(SET|RESET)[[:space:]]'""",
                (database,),
            )
            return [q for (q,) in cur.fetchall() if not PGBOUNCER_OWN.match(q)]
    finally:
        conn.close()


def test_pgbouncer_refuses_startup_options_as_rds_proxy_does(pgbouncer: PgBouncer, database_url: str) -> None:
    name = urlsplit(database_url).path.lstrip("/")
    with pytest.raises(psycopg2.OperationalError, match="unsupported startup parameter: options"):
        psycopg2.connect(pgbouncer.url(name), options="-c statement_timeout=5000")


def test_pgbouncer_refuses_a_wrong_password(pgbouncer: PgBouncer, database_url: str) -> None:
    name = urlsplit(database_url).path.lstrip("/")
    with pytest.raises(psycopg2.OperationalError, match="authentication failed"):
        psycopg2.connect(pgbouncer.url(name, password="not-the-secret"))


def test_first_deploy_migrates_through_pgbouncer_and_the_role_timeout_cuts_long_statements(
    pgbouncer: PgBouncer, pg_admin_url: str, empty_database: str
) -> None:
    # Given an empty database reached only through PgBouncer in transaction mode
    db = _database(pgbouncer.url(empty_database))
    try:
        # When the migrations run (as the migrate function does on the first deploy)
        applied = migrate(db)
        # Then they all apply, inside a transaction whose timeout is the migrations' own, set inside a
        # SQL function: the migrator sends no SET of its own, which would pin its RDS Proxy session
        assert "0005_role_settings.sql" in applied and "sql/migration_settings.sql" in applied
        with db.transaction() as cur:
            cur.execute("SELECT pq_set_migration_timeout(%s)", (MIGRATION_STATEMENT_TIMEOUT_MS,))
            cur.execute("SELECT current_setting('statement_timeout') AS s, current_setting('transaction_timeout') AS t")
            assert cur.fetchone() == {"s": "4min", "t": "4min"}
        assert db.fetch_one("SHOW statement_timeout") == {"statement_timeout": "5s"}  # after it, the role's
        assert _top_level_sets(pg_admin_url, empty_database) == []
    finally:
        db.close()

    # And a new session gets the role's 5 s from the server, with no startup option or SET
    db = _database(pgbouncer.url(empty_database))
    try:
        assert db.fetch_one("SHOW statement_timeout") == {"statement_timeout": "5s"}
        started = time.monotonic()
        with pytest.raises(TransientError, match="canceling statement due to statement timeout"):
            db.fetch_one("SELECT pg_sleep(30)")
        assert time.monotonic() - started > 4.5  # the role's 5 s cut it, not a shorter limit
        # And the session is still usable afterwards
        assert db.fetch_one("SELECT 1 AS one") == {"one": 1}
    finally:
        db.close()
        _admin_exec(pg_admin_url, f"DROP DATABASE IF EXISTS {empty_database} WITH (FORCE)")


def test_a_migrate_rerun_applies_nothing_and_keeps_the_role_timeout(
    pgbouncer: PgBouncer, pg_admin_url: str, empty_database: str
) -> None:
    db = _database(pgbouncer.url(empty_database))
    try:
        migrate(db)
        assert migrate(db) == []
        assert db.fetch_one("SHOW statement_timeout") == {"statement_timeout": "5s"}
    finally:
        db.close()
        _admin_exec(pg_admin_url, f"DROP DATABASE IF EXISTS {empty_database} WITH (FORCE)")


def test_pgbouncer_listens_on_the_port_asked_for(
    pg_admin_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Given a free port chosen by the operator (python -m local.pgbouncer --port N)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    # When PgBouncer starts on it, Then a DATABASE_URL of that port reaches the database
    with PgBouncer(pg_admin_url, tmp_path_factory.mktemp("pgbouncer-port"), port=port) as bouncer:
        assert bouncer.port == port
        name = urlsplit(database_url).path.lstrip("/")
        conn = psycopg2.connect(bouncer.url(name))
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        conn.close()

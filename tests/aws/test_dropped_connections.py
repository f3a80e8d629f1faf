"""Connections the pool dropped while idle, through PgBouncer with idle client and server timeouts, as
RDS Proxy drops a client idle past its IdleClientTimeout (a Lambda container frozen between invocations
keeps its connection and meets it closed when it thaws).

- Noticed before the statement goes out (the pool's goodbye is already in the socket): the statement
  goes out on a fresh connection, whatever it is; nothing was sent on the dead one.
- Noticed only after it went out (the goodbye not arrived yet): an idempotent statement is sent once more
  on a fresh connection (the payment function, a status read); any other fails as before, and the
  queue or the client retries the whole request.

Here in-process, one statement at a time; the Lambda containers of the AWS-shaped run meet both cases
too (tests/aws/test_aws_shaped_run.py, test_functions_whose_connections_the_pool_dropped_while_idle_...).
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import shared.db
from local.pgbouncer import PgBouncer, find_pgbouncer
from local.seed import SeedPlan, seed
from shared.bootstrap import App, build_app
from shared.db import ConnectionLost, Database
from shared.services.wallet import process_wallet_job
from shared.settings import Settings
from tests.conftest import require_tool
from tests.integration.helpers import pay

IDLE_TIMEOUT_S = 1


@pytest.fixture
def idle_bouncer(pg_admin_url: str, tmp_path: Path) -> Iterator[PgBouncer]:
    """A PgBouncer of its own that closes clients and server connections idle for a second."""
    require_tool(find_pgbouncer() is not None, "PgBouncer is not installed: apt-get install pgbouncer")
    bouncer = PgBouncer(
        pg_admin_url, tmp_path / "bouncer", client_idle_timeout_s=IDLE_TIMEOUT_S, server_idle_timeout_s=IDLE_TIMEOUT_S
    ).start()
    yield bouncer
    bouncer.stop()


@pytest.fixture
def app(idle_bouncer: PgBouncer, database_url: str) -> Iterator[App]:
    name = urlsplit(database_url).path.lstrip("/")
    built = build_app(Settings(database_url=idle_bouncer.url(name), queue_backend="pgmq", event_bus_backend="pgmq"))
    seed(built.db, SeedPlan(users=2))
    yield built
    built.db.close()


def _wait_until_dropped(db: Database, deadline_s: float = 60.0) -> None:
    """Until PgBouncer has closed the idle client connection (its goodbye is readable): a wait on the
    event itself, however busy the machine is."""
    conn = db._local.conn
    deadline = time.monotonic() + deadline_s
    while not select.select([conn.fileno()], [], [], 0.2)[0]:
        assert time.monotonic() < deadline, "PgBouncer never closed the idle connection"


def _wallet_debits(app: App) -> int:
    row = app.db.fetch_one("SELECT count(*) AS n FROM wallet_transactions WHERE kind = 'debit'")
    assert row is not None
    return int(row["n"])


def test_a_connection_the_pool_dropped_while_idle_is_replaced_before_the_statement_is_sent(app: App) -> None:
    # Given a queued payment and a connection PgBouncer closed while it sat idle (and its server
    # connection behind it, past server_idle_timeout)
    job_id = pay(app, "demo-user-1", "k1").body["job_id"]
    _wait_until_dropped(app.db)
    sent_before = app.db.round_trips

    # When the processor pays the job on it
    outcome = process_wallet_job(app, job_id)

    # Then it is paid, by one statement on a fresh connection: no error, no retry
    assert outcome.outcome == "succeeded"
    assert app.db.round_trips == sent_before + 1
    assert _wallet_debits(app) == 1


def test_the_payment_sent_on_a_dropped_connection_is_sent_once_more_and_charges_once(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a queued payment and a dropped connection whose goodbye is not seen before sending (as when
    # it has not arrived yet)
    job_id = pay(app, "demo-user-1", "k1").body["job_id"]
    _wait_until_dropped(app.db)
    monkeypatch.setattr(shared.db, "_dropped_while_idle", lambda conn: False)
    sent_before = app.db.round_trips

    # When the processor pays the job
    outcome = process_wallet_job(app, job_id)

    # Then the payment function (idempotent: it pays a job only while queued) went out twice, the second
    # time on a fresh connection, and the shopper is charged once
    assert outcome.outcome == "succeeded"
    assert app.db.round_trips == sent_before + 2
    assert _wallet_debits(app) == 1


def test_a_statement_not_marked_idempotent_is_never_sent_twice(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a dropped connection whose goodbye is not seen before sending
    app.db.fetch_one("SELECT 1")
    _wait_until_dropped(app.db)
    monkeypatch.setattr(shared.db, "_dropped_while_idle", lambda conn: False)
    sent_before = app.db.round_trips

    # When a statement that may not run twice goes out on it, then it fails as a transient error
    with pytest.raises(ConnectionLost):
        app.db.execute("SELECT pq_mark_jobs_sent(%s::uuid[])", ([],))

    # And it was sent once; the next statement gets a fresh connection
    assert app.db.round_trips == sent_before + 1
    assert app.db.fetch_one("SELECT 1 AS one") == {"one": 1}

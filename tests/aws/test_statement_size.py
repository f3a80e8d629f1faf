"""The sweeper's largest statements stay under the 16 KB that pins an RDS Proxy session.

psycopg2 puts parameters into the statement text, so 500 job ids marked in one statement were
19,570 bytes. Measured here as the server received them, through PgBouncer, from its CSV log.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2

from local.pgbouncer import PgBouncer
from local.seed import SeedPlan, seed
from shared.bootstrap import bootstrap
from shared.db import Database
from shared.ports import QueueMessage
from shared.services.outbox import sweep
from shared.settings import Settings
from tests.aws.pinning import STATEMENT_PIN_BYTES, logged_until_now
from tests.conftest import _admin_exec

JOBS = 500  # the sweeper's batch


class AcceptingQueue:
    def send(self, messages: Sequence[QueueMessage]) -> list[str]:
        return [m.job_id for m in messages]

    def in_transaction(self, message: QueueMessage) -> None:
        return None


class AcceptingBus:
    def publish(self, events: Sequence[dict[str, Any]]) -> list[str]:
        return [str(e["id"]) for e in events]


def _log(admin_url: str) -> tuple[Path, int]:
    conn = psycopg2.connect(admin_url)
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('data_directory'), pg_current_logfile('csvlog')")
        directory, relative = cur.fetchone()  # type: ignore[misc]
    conn.close()
    path = Path(directory) / relative
    return path, path.stat().st_size


def test_a_sweep_of_500_unsent_jobs_and_events_sends_no_statement_over_16_kb(
    pgbouncer: PgBouncer, pg_admin_url: str, database_url: str
) -> None:
    name = urlsplit(database_url).path.lstrip("/")
    direct = Database(lambda: database_url, connect_timeout_s=10, application_name="pq-harness")
    seed(direct, SeedPlan(users=JOBS))
    # Given 500 jobs never marked sent and 500 events never marked published
    direct.execute(
        """WITH j AS (
               INSERT INTO payment_jobs (user_id, idempotency_key, request_hash, order_id, method, queue_seq)
               SELECT o.user_id, 'k-' || o.id, 'h', o.id, 'wallet', o.id FROM orders o RETURNING id, user_id)
           INSERT INTO outbox_events (job_id, event_type, payload)
           SELECT id, 'PaymentSucceeded', jsonb_build_object('job_id', id, 'user_id', user_id) FROM j"""
    )
    direct.close()
    _admin_exec(pg_admin_url, f"ALTER DATABASE {name} SET log_statement = 'all'")
    log_file, offset = _log(pg_admin_url)
    app = bootstrap(Settings(database_url=pgbouncer.url(name), sweep_after_s=0, db_application_name="pq-sweeper"))
    app.queue = AcceptingQueue()  # type: ignore[assignment]
    app.bus = AcceptingBus()
    try:
        # When the sweeper sends and publishes them all, through PgBouncer
        assert sweep(app) == {"jobs_resent": JOBS, "events_republished": JOBS}
    finally:
        app.db.close()

    # Then every statement it sent is under 16 KB
    logged = logged_until_now(log_file, offset, name, lambda sql: _admin_exec(database_url, sql))
    sent = [s for s in logged if s.application_name == "pq-sweeper"]
    assert len(sent) >= 4  # two reads, and the marks in chunks
    largest = max(s.size for s in sent)
    assert largest <= STATEMENT_PIN_BYTES, largest

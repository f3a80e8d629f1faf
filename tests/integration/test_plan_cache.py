"""The plans a session caches while the tables are small stay right after they grew.

PL/pgSQL keeps a plan for each statement of a function for the life of the session, and after five
executions it may settle on a generic plan for good (PostgreSQL docs: PL/pgSQL "Plan Caching";
PREPARE, Notes). A connection that starts on a fresh database -- a new environment's first sale, or
the benchmark -- would plan its key lookups as sequential scans of a near-empty payment_jobs and
keep scanning it as it fills: each request then costs time in proportion to every job ever taken.
The money-moving functions plan with sequential scans off, so their lookups go by the indexes.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg2
import psycopg2.extensions
import pytest

from local.seed import SeedPlan, seed
from shared.db import Database

SMALL, LARGE = 12, 2_000


@pytest.fixture
def session(database_url: str) -> Iterator[psycopg2.extensions.cursor]:
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        yield cur
    conn.close()


def _seq_scans(cur: psycopg2.extensions.cursor, sql: str, params: tuple[object, ...]) -> tuple[object, int]:
    """Runs one call in a transaction of its own and counts the sequential scans of payment_jobs it made."""
    cur.execute("BEGIN")
    cur.execute(sql, params)
    row = cur.fetchone()
    cur.execute("SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_xact_user_tables WHERE relname = 'payment_jobs'")
    scans = cur.fetchone()
    cur.execute("COMMIT")
    assert row is not None and scans is not None
    return row[0], int(scans[0])


def test_a_session_that_planned_on_an_empty_queue_looks_jobs_up_by_index_once_it_is_full(
    db: Database, session: psycopg2.extensions.cursor
) -> None:
    # Given a session that took and paid its first requests while payment_jobs held a dozen rows,
    # with statistics that say so (an environment's first requests, then autovacuum; or the benchmark)
    seed(db, SeedPlan(users=SMALL + LARGE + 1, products=5, user_prefix="p"))
    db.execute("ANALYZE")
    orders = [(r["id"], r["user_id"]) for r in db.fetch_all("SELECT id, user_id FROM orders ORDER BY id")]
    enqueue = "SELECT outcome, job_id FROM pq_enqueue_job(%s, %s, 'h', %s, 'wallet', NULL)"
    for order_id, user_id in orders[:SMALL]:
        session.execute(enqueue, (user_id, f"k{order_id}", order_id))
        created = session.fetchone()
        assert created is not None and created[0] == "created"
        session.execute("SELECT outcome FROM pq_process_payment(%s)", (created[1],))
        assert session.fetchone() == ("succeeded",)

    # When the queue grows by two thousand jobs (another connection) and the session carries on
    db.execute(
        """SELECT e.outcome FROM orders o
                CROSS JOIN LATERAL pq_enqueue_job(o.user_id, 'k' || o.id, 'h', o.id, 'wallet', NULL) e
            WHERE o.id = ANY(%s)""",
        ([order_id for order_id, _ in orders[SMALL:-1]],),
    )
    order_id, user_id = orders[-1]
    one_more = enqueue.replace("outcome, job_id", "outcome")
    outcome, enqueue_scans = _seq_scans(session, one_more, (user_id, "last", order_id))
    job = db.fetch_one("SELECT id FROM payment_jobs WHERE order_id = %s", (order_id,))
    assert job is not None
    paid, payment_scans = _seq_scans(session, "SELECT outcome FROM pq_process_payment(%s)", (job["id"],))

    # Then neither the request nor its payment scanned the whole queue
    assert (outcome, paid) == ("created", "succeeded")
    assert (enqueue_scans, payment_scans) == (0, 0)

"""Leaving the line: a shopper who cancels, and the shoppers of a product that has sold out."""

from __future__ import annotations

import dataclasses
import threading

import psycopg2
import psycopg2.extras
import pytest

from functions.status.handler import handler as status_handler
from functions.sweeper.handler import handler as sweeper_handler
from local.invariants import check, snapshot_stock
from local.lambda_shim import LocalContext
from local.seed import SeedPlan, seed
from shared.bootstrap import App
from shared.db import Database
from shared.errors import DomainError
from shared.http import http_status
from shared.services.line import cancel_job, end_sold_out_jobs
from shared.services.wallet import process_wallet_job
from tests.integration.helpers import (
    HOLDERS,
    HOT,
    deliver,
    drain_line,
    pay,
    receive,
    row_counts,
    second_order,
    wait_for_a_lock_wait,
)
from tests.integration.test_api_handlers import call


def test_a_cancelled_job_is_never_paid_and_its_message_is_consumed_without_work(app: App, demo: dict[str, int]) -> None:
    # Given a queued job and the stock and money before it
    stock = snapshot_stock(app.db)
    job_id = pay(app, "demo-user-1", "k1").body["job_id"]
    before = row_counts(app.db)

    # When its shopper leaves the line, and its message's turn comes afterwards
    left = cancel_job(app, "demo-user-1", job_id)
    failed = deliver(app, receive(app))

    # Then it ended cancelled, nothing was paid, the message was acknowledged, the end was notified
    assert (left["status"], left["reason"]) == ("failed", "cancelled") and "position" not in left
    assert failed == set()
    after = row_counts(app.db)
    assert {k: after[k] for k in ("payments", "wallet_txs", "balances", "stock", "paid_orders")} == {
        k: before[k] for k in ("payments", "wallet_txs", "balances", "stock", "paid_orders")
    }
    assert after["queued"] == 0
    events = app.db.fetch_all("SELECT message FROM pgmq.q_payment_events")
    assert [(e["message"]["detail-type"], e["message"]["detail"]["data"]["reason"]) for e in events] == [
        ("PaymentFailed", "cancelled")
    ]
    violations = check(app.db, initial_stock=stock)
    assert violations == dict.fromkeys(violations, 0)


def test_leaving_twice_answers_the_same(app: App, demo: dict[str, int]) -> None:
    job_id = pay(app, "demo-user-1", "k1").body["job_id"]

    first = cancel_job(app, "demo-user-1", job_id)
    again = cancel_job(app, "demo-user-1", job_id)

    assert again == first
    assert app.db.fetch_one("SELECT count(*) n FROM outbox_events") == {"n": 1}


def test_someone_elses_job_looks_missing_and_stays_in_line(app: App, demo: dict[str, int]) -> None:
    job_id = pay(app, "demo-user-1", "k1").body["job_id"]

    for job in (job_id, "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(DomainError) as err:
            cancel_job(app, "demo-user-2", job)
        assert (http_status(err.value), err.value.code) == (404, "job_not_found")

    assert app.db.fetch_one("SELECT status FROM payment_jobs WHERE id = %s", (job_id,)) == {"status": "queued"}


def test_a_finished_job_answers_409_with_how_it_ended(app: App, demo: dict[str, int]) -> None:
    job_id = pay(app, "demo-user-1", "k1").body["job_id"]
    process_wallet_job(app, job_id)

    with pytest.raises(DomainError) as err:
        cancel_job(app, "demo-user-1", job_id)

    assert (http_status(err.value), err.value.code, err.value.details["job_status"]) == (
        409,
        "job_finished",
        "succeeded",
    )


def test_a_job_a_processor_has_taken_answers_409_processing(app: App, demo: dict[str, int]) -> None:
    # Given a job a processor has taken (the gateway path marks it processing before its first call)
    job_id = pay(app, "demo-user-1", "k1").body["job_id"]
    app.db.execute("UPDATE payment_jobs SET status = 'processing' WHERE id = %s", (job_id,))

    with pytest.raises(DomainError) as err:
        cancel_job(app, "demo-user-1", job_id)

    assert (http_status(err.value), err.value.code, err.value.details["job_status"]) == (
        409,
        "job_processing",
        "processing",
    )
    assert app.db.fetch_one("SELECT count(*) n FROM outbox_events") == {"n": 0}


def test_leaving_moves_everyone_behind_up_in_the_shared_figure(app: App, demo: dict[str, int]) -> None:
    first = pay(app, "demo-user-1", "k1").body["job_id"]
    behind = pay(app, "demo-user-2", "k2").body
    before = behind["position"]

    cancel_job(app, "demo-user-1", first)
    status, now, _ = call(status_handler, "GET", f"/v1/payments/{behind['job_id']}", user="demo-user-2")
    figure = call(status_handler, "GET", "/v1/queue/now-serving", user=None)[1]

    # The line's front has passed the leaver: the figure moves the one behind up; the job's own answer counts
    # only the jobs that ended in their turn (never too low: migration 0024) and never rises
    assert status == 200 and behind["queue_number"] - figure["serving"] == before - 1
    assert now["position"] == before


def test_a_shopper_leaving_with_a_later_job_breaks_no_order(app: App, demo: dict[str, int]) -> None:
    # Given a shopper with two jobs in line
    pay(app, "demo-user-1", "k1")
    later = pay(app, "demo-user-1", "k2", second_order(app.db, "demo-user-1")).body["job_id"]

    # When they cancel the later one, and the line then pays the first
    cancel_job(app, "demo-user-1", later)
    while messages := receive(app):
        deliver(app, messages)

    # Then the first was paid, the later never, and no invariant counts a violation
    jobs = app.db.fetch_all("SELECT status, reason FROM payment_jobs WHERE user_id = 'demo-user-1' ORDER BY queue_seq")
    assert [(j["status"], j["reason"]) for j in jobs] == [("succeeded", None), ("failed", "cancelled")]
    violations = check(app.db)
    assert violations == dict.fromkeys(violations, 0)


def test_delete_route_answers_200_then_the_same_then_409_for_a_paid_job(app: App, demo: dict[str, int]) -> None:
    cancelled = pay(app, "demo-user-1", "k1").body["job_id"]
    paid = pay(app, "demo-user-2", "k2").body["job_id"]
    process_wallet_job(app, paid)

    first = call(status_handler, "DELETE", f"/v1/payments/{cancelled}")
    again = call(status_handler, "DELETE", f"/v1/payments/{cancelled}")
    finished = call(status_handler, "DELETE", f"/v1/payments/{paid}", user="demo-user-2")
    not_theirs = call(status_handler, "DELETE", f"/v1/payments/{paid}")

    assert first[0] == again[0] == 200 and first[1] == again[1] and first[1]["reason"] == "cancelled"
    assert (finished[0], finished[1]["error"]["code"]) == (409, "job_finished")
    assert (not_theirs[0], not_theirs[1]["error"]["code"]) == (404, "job_not_found")


# --- sold out, known at once ------------------------------------------------------------------


def _statuses(db: Database) -> dict[str, tuple[str, str | None]]:
    return {r["user_id"]: (r["status"], r["reason"]) for r in db.fetch_all("SELECT * FROM payment_jobs")}


def test_the_payment_that_takes_the_last_unit_ends_every_queued_job_holding_it(app: App, sale: int) -> None:
    # Given the whole sale in line, the first in line holding the last unit's product
    stock = snapshot_stock(app.db)
    jobs = {
        user: pay(app, user, f"k-{user}").body
        for user in ("demo-user-2", "demo-user-1", "demo-user-4", "demo-user-5", "demo-user-6", "demo-user-3")
    }

    # When one batch pays the first (and only it)
    assert deliver(app, receive(app, qty=1)) == set()

    # Then everyone else holding the sold-out product has left the line at once, told as any failure;
    # the others wait on, each closer to the front than before
    statuses = _statuses(app.db)
    assert statuses["demo-user-2"] == ("succeeded", None)
    assert {user: statuses[user] for user in HOLDERS[1:]} == dict.fromkeys(HOLDERS[1:], ("failed", "out_of_stock"))
    assert statuses["demo-user-1"] == statuses["demo-user-3"] == ("queued", None)
    for user in ("demo-user-1", "demo-user-3"):
        _, now, _ = call(status_handler, "GET", f"/v1/payments/{jobs[user]['job_id']}", user=user)
        assert now["position"] < jobs[user]["position"]
    events = app.db.fetch_all("SELECT message FROM pgmq.q_payment_events")
    failed = [e["message"]["detail"]["data"] for e in events if e["message"]["detail-type"] == "PaymentFailed"]
    assert sorted(e["user_id"] for e in failed) == sorted(HOLDERS[1:])
    assert {e["reason"] for e in failed} == {"out_of_stock"}

    # And when the line drains, their messages are consumed without work and every invariant holds
    drain_line(app)
    assert app.db.fetch_one("SELECT count(*) n FROM payment_transactions") == {"n": 3}
    violations = check(app.db, initial_stock=stock)
    assert violations == dict.fromkeys(violations, 0)


def test_an_order_holding_a_sold_out_product_is_refused_at_once_and_records_nothing(app: App, sale: int) -> None:
    process_wallet_job(app, pay(app, "demo-user-2", "k2").body["job_id"])  # the last unit
    before = row_counts(app.db)
    seq = app.db.fetch_one("SELECT last_value FROM payment_job_seq")

    with pytest.raises(DomainError) as err:
        pay(app, "demo-user-4", "k4")

    assert (http_status(err.value), err.value.code, err.value.details) == (409, "sold_out", {"product_ids": [sale]})
    assert row_counts(app.db) == before
    assert app.db.fetch_one("SELECT last_value FROM payment_job_seq") == seq  # no queue number spent
    pay(app, "demo-user-1", "k1")  # an order without it is taken as ever


def test_a_sharded_product_sold_out_from_its_last_shard_ends_its_line_and_refuses_more(app: App, db: Database) -> None:
    # Given the hot product's one unit in one of three shards, and two of its buyers in line
    seed(db, dataclasses.replace(HOT, hot_shards=3))
    jobs = [pay(app, user, f"k-{user}").body["job_id"] for user in ("demo-user-2", "demo-user-4")]

    # When the first takes the last unit
    assert deliver(app, receive(app, qty=1)) == set()

    # Then the second has left the line and the next buyer is refused at once
    assert _statuses(db)["demo-user-4"] == ("failed", "out_of_stock")
    with pytest.raises(DomainError) as err:
        pay(app, "demo-user-6", "k6")
    assert err.value.code == "sold_out"
    assert _statuses(db)["demo-user-2"] == ("succeeded", None) and len(jobs) == 2


def test_a_job_behind_its_users_earlier_job_leaves_only_after_it(app: App, sale: int) -> None:
    # Given a shopper whose earlier job holds no hot product and whose later one does, behind the last unit
    app.db.execute(
        """UPDATE orders SET (items, total_paise) =
                  (SELECT items, total_paise FROM orders WHERE user_id = 'demo-user-1')
            WHERE user_id = 'demo-user-3'"""
    )
    pay(app, "demo-user-2", "k2")
    pay(app, "demo-user-3", "k3-first")
    later_order = app.db.fetch_one(
        """INSERT INTO orders (user_id, items, total_paise)
           SELECT 'demo-user-3', items, total_paise FROM orders WHERE user_id = 'demo-user-4' RETURNING id"""
    )
    assert later_order is not None
    later = pay(app, "demo-user-3", "k3-later", int(later_order["id"])).body["job_id"]

    # When the last unit goes
    assert deliver(app, receive(app, qty=1)) == set()

    # Then the later job waits for the earlier one; once that is paid, it ends in its turn, in order
    assert app.db.fetch_one("SELECT status FROM payment_jobs WHERE id = %s", (later,)) == {"status": "queued"}
    while messages := receive(app):
        deliver(app, messages)
    jobs = app.db.fetch_all("SELECT status, reason FROM payment_jobs WHERE user_id = 'demo-user-3' ORDER BY queue_seq")
    assert [(j["status"], j["reason"]) for j in jobs] == [("succeeded", None), ("failed", "out_of_stock")]
    assert check(app.db)["order_violations"] == 0


def test_a_job_a_processor_holds_right_now_is_left_to_it(app: App, sale: int, database_url: str) -> None:
    # Given the product sold out, and a processor holding one of its queued jobs (its row locked)
    held = pay(app, "demo-user-4", "k4").body["job_id"]
    pay(app, "demo-user-5", "k5")
    app.db.execute("UPDATE products SET stock = 0 WHERE id = %s", (sale,))
    processor = psycopg2.connect(database_url)
    try:
        with processor.cursor() as cur:
            cur.execute("SELECT 1 FROM payment_jobs WHERE id = %s FOR UPDATE", (held,))

            # When the line of the sold-out product is ended
            ended = end_sold_out_jobs(app, [sale])
        # Then every job but the held one has left; the held one is the processor's to end
        assert ended == 1
        assert _statuses(app.db)["demo-user-4"] == ("queued", None)
    finally:
        processor.close()


@pytest.mark.parametrize("shards", [0, 2])
def test_a_restock_under_way_keeps_the_line_of_its_product_which_a_later_call_ends_if_still_sold_out(
    app: App, sale: int, database_url: str, shards: int
) -> None:
    # Given a shopper waiting for the hot product, sold out (its units in its row, or in shards), and the shop's
    # restock under way, not committed (stock = stock + n, and for a sharded product pq_shard_stock again)
    waiting = pay(app, "demo-user-4", "k4").body["job_id"]
    app.db.fetch_one("SELECT pq_shard_stock(%s, %s)", (sale, shards))
    app.db.execute("UPDATE products SET stock = 0 WHERE id = %s", (sale,))
    app.db.execute("UPDATE product_stock_shards SET stock = 0 WHERE product_id = %s", (sale,))
    restock = psycopg2.connect(database_url)
    try:
        with restock.cursor() as cur:
            cur.execute("UPDATE products SET stock = stock + 5 WHERE id = %s", (sale,))
            cur.execute("SELECT pq_shard_stock(%s, %s)", (sale, shards))

        # When the line of the product is ended meanwhile: its row is busy, so it is left, not waited for
        assert end_sold_out_jobs(app, [sale]) == 0
        assert _statuses(app.db)["demo-user-4"] == ("queued", None)

        # Then once the restock commits, nobody is told it is sold out
        restock.commit()
    finally:
        restock.close()
    assert end_sold_out_jobs(app, [sale]) == 0
    assert app.db.fetch_one("SELECT status FROM payment_jobs WHERE id = %s", (waiting,)) == {"status": "queued"}
    assert app.db.fetch_one("SELECT pq_stock_on_hand(id, stock) AS n FROM products WHERE id = %s", (sale,)) == {"n": 5}


def test_a_restock_waits_for_a_running_end_of_its_products_line(app: App, sale: int, database_url: str) -> None:
    # Given a shopper waiting for the hot product, sold out, and its line being ended, held up at the job's end
    # (another session holds the finished-jobs counter, as any job's end may for a moment)
    pay(app, "demo-user-4", "k4")
    app.db.execute("UPDATE products SET stock = 0 WHERE id = %s", (sale,))
    counter, bulk, restock = (psycopg2.connect(database_url) for _ in range(3))
    bulk.autocommit = restock.autocommit = True
    ended: list[int] = []

    def run(conn: psycopg2.extensions.connection, sql: str) -> None:
        with conn.cursor() as cur:
            cur.execute(sql, (sale,))
            if cur.description:
                row = cur.fetchone()
                ended.append(row[0] if row else -1)

    try:
        counter.cursor().execute("LOCK TABLE line_finished IN EXCLUSIVE MODE")
        ending = threading.Thread(
            target=run, args=(bulk, "SELECT count(*) FROM pq_end_sold_out_jobs(ARRAY[%s]::bigint[], 1000)")
        )
        ending.start()
        wait_for_a_lock_wait(app, "pq_end_sold_out_jobs")

        # When the shop restocks the product meanwhile: the restock waits for the end, which holds the row
        restocking = threading.Thread(target=run, args=(restock, "UPDATE products SET stock = stock + 5 WHERE id = %s"))
        restocking.start()
        wait_for_a_lock_wait(app, "UPDATE products SET stock = stock + 5")
        counter.rollback()
        ending.join(10)
        restocking.join(10)
    finally:
        for conn in (counter, bulk, restock):
            conn.close()

    # Then the job ended while the product was sold out, and the units came back after
    assert ended == [1]
    assert _statuses(app.db)["demo-user-4"] == ("failed", "out_of_stock")
    assert app.db.fetch_one("SELECT stock FROM products WHERE id = %s", (sale,)) == {"stock": 5}


def test_the_sweeper_ends_the_line_of_a_product_sold_out_elsewhere(app: App, sale: int) -> None:
    # Given buyers in line for a product whose last unit went by another path (a gateway payment)
    for user in HOLDERS:
        pay(app, user, f"k-{user}")
    app.db.execute("UPDATE products SET stock = 0 WHERE id = %s", (sale,))

    # When the sweeper runs
    result = sweeper_handler({}, LocalContext("sweeper"))

    # Then all of them have left the line, notified
    assert result["sold_out_jobs_ended"] == len(HOLDERS)
    assert set(_statuses(app.db).values()) == {("failed", "out_of_stock")}
    assert app.db.fetch_one("SELECT count(*) n FROM outbox_events WHERE published_at IS NULL") == {"n": 0}


# --- the bulk end's cost follows the jobs it ends -----------------------------------------------

# A line of 2,000 shoppers over 40 products, each held by 50 of them (local/seed.py: shopper g buys product g % 40).
LINE, PRODUCTS = 2_000, 40

# What a bulk end read: the rows of payment_jobs and orders fetched by scans, by this transaction so far.
ROWS_READ = """SELECT coalesce(sum(seq_tup_read + idx_tup_fetch), 0) AS n FROM pg_stat_xact_user_tables
                WHERE relname IN ('payment_jobs', 'orders')"""


def _bulk_end(cur: psycopg2.extras.RealDictCursor, products: list[int]) -> tuple[int, int]:
    """One bulk end, in the caller's transaction: (jobs it ended, rows it read). The counters are this
    backend's own, read before and after within one transaction (none is flushed meanwhile): the same
    count however busy the machine is."""
    cur.execute(ROWS_READ)
    before = cur.fetchone()
    cur.execute("SELECT count(*) AS n FROM pq_end_sold_out_jobs(%s::bigint[], %s)", (products, LINE))
    ended = cur.fetchone()
    cur.execute(ROWS_READ)
    after = cur.fetchone()
    assert before is not None and ended is not None and after is not None
    return int(ended["n"]), int(after["n"]) - int(before["n"])


def test_ending_a_sold_out_products_line_reads_in_proportion_to_the_jobs_it_ends_not_the_line(db: Database) -> None:
    # Given a long line in which each product is held by a fortieth of the shoppers (on a table never
    # analyzed, as in a new environment's first sale: the plan must not depend on statistics)
    seed(db, SeedPlan(users=LINE, products=PRODUCTS, user_prefix="line-"))
    db.execute(
        """SELECT e.outcome FROM orders o
                CROSS JOIN LATERAL pq_enqueue_job(o.user_id, 'k' || o.id, 'h', o.id, 'wallet', NULL) e"""
    )
    products = [int(r["id"]) for r in db.fetch_all("SELECT id FROM products ORDER BY id")]
    db.execute("UPDATE products SET stock = 0 WHERE id = ANY (%s)", (products[:3],))

    # When one product's line is ended, then two others' at once
    with db.transaction() as cur:
        one = _bulk_end(cur, products[:1])
    with db.transaction() as cur:
        two = _bulk_end(cur, products[1:3])

    # Then each ended exactly its products' buyers, and read rows in proportion to them: twice the jobs,
    # twice the rows, a few rows per job (and one per product, to learn someone waits for it), nothing of the
    # rest of the line
    assert (one[0], two[0]) == (LINE // PRODUCTS, 2 * LINE // PRODUCTS)
    assert two[1] == 2 * one[1]
    assert one[1] <= 6 * one[0] + 1 < LINE
    queued = db.fetch_one("SELECT count(*) AS n FROM payment_jobs WHERE status = 'queued'")
    assert queued == {"n": LINE - 3 * LINE // PRODUCTS}


def test_a_second_bulk_end_of_a_product_returns_at_once_while_one_is_running(
    app: App, sale: int, database_url: str
) -> None:
    # Given the product sold out with its buyers in line, and a bulk end of it running (not yet committed)
    for user in HOLDERS:
        pay(app, user, f"k-{user}")
    app.db.execute("UPDATE products SET stock = 0 WHERE id = %s", (sale,))
    running = psycopg2.connect(database_url)
    try:
        with running.cursor() as cur:
            cur.execute("SELECT count(*) FROM pq_end_sold_out_jobs(ARRAY[%s]::bigint[], 1000)", (sale,))
            assert cur.fetchone() == (len(HOLDERS),)

            # When another processor batch tries to end the same line meanwhile
            with app.db.transaction() as other:
                ended, read = _bulk_end(other, [sale])

            # Then it returns at once, having read none of the line and waited on none of its rows
            assert (ended, read) == (0, 0)
        running.commit()
    finally:
        running.close()

    # And the running one's ends stand, each once, notified as any failure (its events published by the
    # sweeper, as a processor's are after its commit)
    sweeper_handler({}, LocalContext("sweeper"))
    assert set(_statuses(app.db).values()) == {("failed", "out_of_stock")}
    assert app.db.fetch_one("SELECT count(*) AS n FROM outbox_events WHERE published_at IS NOT NULL") == {
        "n": len(HOLDERS)
    }
    violations = check(app.db)
    assert violations == dict.fromkeys(violations, 0)


def test_an_order_naming_its_product_as_a_string_of_digits_leaves_the_line_too(app: App, sale: int) -> None:
    # Given a buyer whose order names the hot product as the string "<id>" (the payment reads it so too)
    app.db.execute(
        """UPDATE orders SET items = (SELECT jsonb_agg(CASE WHEN (e->>'product_id')::bigint = %s
                                                          THEN e || jsonb_build_object('product_id', %s::text)
                                                          ELSE e END)
                                       FROM jsonb_array_elements(items) AS e)
            WHERE user_id = 'demo-user-4'""",
        (sale, sale),
    )
    pay(app, "demo-user-4", "k4")
    app.db.execute("UPDATE products SET stock = 0 WHERE id = %s", (sale,))

    ended = end_sold_out_jobs(app, [sale])

    assert ended == 1 and _statuses(app.db)["demo-user-4"] == ("failed", "out_of_stock")

"""Leaving the line: a shopper who cancels, and the shoppers of a product that has sold out."""

from __future__ import annotations

import pytest

from functions.status.handler import handler as status_handler
from local.invariants import check, snapshot_stock
from shared.bootstrap import App
from shared.db import Database
from shared.domain import ApiError
from shared.services.line import cancel_job
from shared.services.wallet import process_wallet_job
from tests.integration.helpers import deliver, pay, receive, row_counts
from tests.integration.test_api_handlers import call


def _second_order(db: Database, user_id: str) -> int:
    row = db.fetch_one(
        """INSERT INTO orders (user_id, items, total_paise)
           SELECT user_id, items, total_paise FROM orders WHERE user_id = %s ORDER BY id LIMIT 1 RETURNING id""",
        (user_id,),
    )
    assert row is not None
    return int(row["id"])


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
        with pytest.raises(ApiError) as err:
            cancel_job(app, "demo-user-2", job)
        assert (err.value.status, err.value.code) == (404, "job_not_found")

    assert app.db.fetch_one("SELECT status FROM payment_jobs WHERE id = %s", (job_id,)) == {"status": "queued"}


def test_a_finished_job_answers_409_with_how_it_ended(app: App, demo: dict[str, int]) -> None:
    job_id = pay(app, "demo-user-1", "k1").body["job_id"]
    process_wallet_job(app, job_id)

    with pytest.raises(ApiError) as err:
        cancel_job(app, "demo-user-1", job_id)

    assert (err.value.status, err.value.code, err.value.details["job_status"]) == (409, "job_finished", "succeeded")


def test_a_job_a_processor_has_taken_answers_409_processing(app: App, demo: dict[str, int]) -> None:
    # Given a job a processor has taken (the gateway path marks it processing before its first call)
    job_id = pay(app, "demo-user-1", "k1").body["job_id"]
    app.db.execute("UPDATE payment_jobs SET status = 'processing' WHERE id = %s", (job_id,))

    with pytest.raises(ApiError) as err:
        cancel_job(app, "demo-user-1", job_id)

    assert (err.value.status, err.value.code, err.value.details["job_status"]) == (409, "job_processing", "processing")
    assert app.db.fetch_one("SELECT count(*) n FROM outbox_events") == {"n": 0}


def test_leaving_moves_everyone_behind_up(app: App, demo: dict[str, int]) -> None:
    first = pay(app, "demo-user-1", "k1").body["job_id"]
    behind = pay(app, "demo-user-2", "k2").body
    before = behind["position"]

    cancel_job(app, "demo-user-1", first)
    status, now, _ = call(status_handler, "GET", f"/v1/payments/{behind['job_id']}", user="demo-user-2")

    assert status == 200 and now["position"] == before - 1


def test_a_shopper_leaving_with_a_later_job_breaks_no_order(app: App, demo: dict[str, int]) -> None:
    # Given a shopper with two jobs in line
    pay(app, "demo-user-1", "k1")
    later = pay(app, "demo-user-1", "k2", _second_order(app.db, "demo-user-1")).body["job_id"]

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

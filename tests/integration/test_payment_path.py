"""The payment path against a real PostgreSQL: accept, process, redeliver, fail cleanly."""

from __future__ import annotations

import pytest

from local.invariants import check, snapshot_stock
from shared.bootstrap import App
from shared.db import Database
from shared.domain import PaymentRequest, PoisonMessageError
from shared.errors import DomainError
from shared.http import http_status
from shared.migrate import migrate
from shared.services.intake import accept_payment
from shared.services.wallet import process_wallet_job
from tests.integration.helpers import pay, pending_order, row_counts


def test_migrations_are_idempotent(db: Database) -> None:
    # Given a migrated database, When migrating again, Then nothing is applied twice
    assert migrate(db) == []


def test_accepted_job_is_recorded_queued_and_sent(app: App, demo: dict[str, int]) -> None:
    accepted = pay(app, "demo-user-1", "key-1")

    assert accepted.body["status"] == "queued"
    assert accepted.body["position"] >= 1
    assert accepted.body["poll_after_ms"] >= app.settings.poll_min_ms
    assert accepted.body["status_url"] == f"/v1/payments/{accepted.body['job_id']}"
    job = app.db.fetch_one("SELECT * FROM payment_jobs WHERE id = %s", (accepted.body["job_id"],))
    assert job is not None and job["sent_at"] is not None and job["user_id"] == "demo-user-1"
    message = app.db.fetch_one("SELECT message, headers FROM pgmq.q_payments")
    assert message is not None
    assert message["message"]["job_id"] == accepted.body["job_id"]
    assert message["headers"]["x-pgmq-group"] == "demo-user-1"


def test_same_key_and_body_replays_the_same_job(app: App, demo: dict[str, int]) -> None:
    first = pay(app, "demo-user-1", "key-1")
    again = pay(app, "demo-user-1", "key-1")

    assert again.replayed and not first.replayed
    assert again.body["job_id"] == first.body["job_id"]
    assert row_counts(app.db)["jobs"] == 1
    assert row_counts(app.db)["queued"] == 1


def test_same_key_with_different_body_is_refused(app: App, demo: dict[str, int]) -> None:
    pay(app, "demo-user-1", "key-1")
    other_order = app.db.fetch_one(
        """INSERT INTO orders (user_id, items, total_paise)
           SELECT 'demo-user-1', items, total_paise FROM orders WHERE user_id = 'demo-user-1' RETURNING id"""
    )
    assert other_order is not None
    before = row_counts(app.db)

    with pytest.raises(DomainError) as err:
        pay(app, "demo-user-1", "key-1", other_order["id"])

    assert (http_status(err.value), err.value.code) == (409, "idempotency_key_reused")
    assert row_counts(app.db) == before


@pytest.mark.parametrize(
    ("user", "order_of", "status", "code"),
    [
        ("demo-user-1", "demo-user-2", 404, "order_not_found"),  # another user's order
        ("demo-user-1", None, 404, "order_not_found"),  # no such order
    ],
)
def test_orders_the_caller_does_not_own_are_not_found(
    app: App, demo: dict[str, int], user: str, order_of: str | None, status: int, code: str
) -> None:
    order_id = pending_order(app.db, order_of) if order_of else 999_999
    before = row_counts(app.db)

    with pytest.raises(DomainError) as err:
        pay(app, user, "key-x", order_id)

    assert (http_status(err.value), err.value.code) == (status, code)
    assert row_counts(app.db) == before


def test_paid_order_is_not_payable(app: App, demo: dict[str, int]) -> None:
    order = pending_order(app.db, "demo-user-1")
    job = pay(app, "demo-user-1", "key-1", order).body["job_id"]
    process_wallet_job(app, job)
    before = row_counts(app.db)

    with pytest.raises(DomainError) as err:
        pay(app, "demo-user-1", "key-2", order)

    assert (http_status(err.value), err.value.code) == (409, "order_not_payable")
    assert err.value.details == {"order_status": "paid"}
    assert row_counts(app.db) == before


def test_second_key_for_an_order_already_queued_is_refused(app: App, demo: dict[str, int]) -> None:
    first = pay(app, "demo-user-1", "key-1")

    with pytest.raises(DomainError) as err:
        pay(app, "demo-user-1", "key-2")

    assert (http_status(err.value), err.value.code) == (409, "payment_in_progress")
    assert err.value.details["job_id"] == first.body["job_id"]


def test_payment_moves_money_stock_order_and_cart_in_one_round_trip(app: App, demo: dict[str, int]) -> None:
    stock_before = snapshot_stock(app.db)
    order = app.db.fetch_one("SELECT * FROM orders WHERE user_id = 'demo-user-1'")
    assert order is not None
    job_id = pay(app, "demo-user-1", "key-1").body["job_id"]
    trips_before = app.db.round_trips

    outcome = process_wallet_job(app, job_id)

    assert app.db.round_trips - trips_before == 1
    assert outcome.outcome == "succeeded" and outcome.payment_id is not None
    assert outcome.event is not None and outcome.event["type"] == "PaymentSucceeded"
    assert outcome.event["data"]["amount_paise"] == order["total_paise"]
    wallet = app.db.fetch_one("SELECT balance_paise FROM wallets WHERE user_id = 'demo-user-1'")
    assert wallet == {"balance_paise": 500_000 - order["total_paise"]}
    item = order["items"][0]
    assert snapshot_stock(app.db)[item["product_id"]] == stock_before[item["product_id"]] - item["quantity"]
    paid = app.db.fetch_one("SELECT order_status, payment_method FROM orders WHERE id = %s", (order["id"],))
    assert paid == {"order_status": "paid", "payment_method": "wallet"}
    assert app.db.fetch_one("SELECT count(*) n FROM cart_items WHERE user_id = 'demo-user-1'") == {"n": 0}
    assert app.db.fetch_one("SELECT count(*) n FROM order_items WHERE order_id = %s", (order["id"],)) == {"n": 1}
    violations = check(app.db, initial_stock=stock_before)
    assert violations.pop("missing_notifications") == 1  # the event is written, not yet published
    assert violations == dict.fromkeys(violations, 0)


def test_redelivered_job_charges_once(app: App, demo: dict[str, int]) -> None:
    job_id = pay(app, "demo-user-1", "key-1").body["job_id"]
    first = process_wallet_job(app, job_id)
    before = row_counts(app.db)

    again = process_wallet_job(app, job_id)

    assert first.outcome == "succeeded"
    assert again.outcome == "already_succeeded" and again.event is None
    assert again.payment_id == first.payment_id
    assert row_counts(app.db) == before


def test_insufficient_balance_fails_the_job_and_changes_nothing_else(app: App, demo: dict[str, int]) -> None:
    app.db.execute("UPDATE wallets SET balance_paise = 100 WHERE user_id = 'demo-user-1'")
    job_id = pay(app, "demo-user-1", "key-1").body["job_id"]
    before = row_counts(app.db)

    outcome = process_wallet_job(app, job_id)

    assert (outcome.outcome, outcome.reason) == ("failed", "insufficient_balance")
    assert outcome.event is not None and outcome.event["type"] == "PaymentFailed"
    after = row_counts(app.db)
    assert after | {"events": before["events"]} == before
    assert after["events"] == before["events"] + 1
    job = app.db.fetch_one("SELECT status, reason, finished_at FROM payment_jobs WHERE id = %s", (job_id,))
    assert job is not None and job["status"] == "failed" and job["reason"] == "insufficient_balance"


def test_a_wallet_never_pays_an_order_in_another_currency(app: App, demo: dict[str, int]) -> None:
    # Given an INR wallet with enough paise and an order of the same number of (US) cents
    order = pending_order(app.db, "demo-user-1")
    app.db.execute("UPDATE orders SET currency = 'USD' WHERE id = %s", (order,))
    job_id = pay(app, "demo-user-1", "key-usd", order).body["job_id"]
    before = row_counts(app.db)

    # When the payment runs
    outcome = process_wallet_job(app, job_id)

    # Then it fails as a currency mismatch and no money or stock moves
    assert (outcome.outcome, outcome.reason) == ("failed", "currency_mismatch")
    after = row_counts(app.db)
    assert after | {"events": before["events"]} == before


def test_out_of_stock_fails_cleanly(app: App, demo: dict[str, int]) -> None:
    # Sold out after the job was accepted (an order already holding a sold-out product is refused at once).
    job_id = pay(app, "demo-user-1", "key-1").body["job_id"]
    app.db.execute("UPDATE products SET stock = 0")
    before = row_counts(app.db)

    outcome = process_wallet_job(app, job_id)

    assert (outcome.outcome, outcome.reason) == ("failed", "out_of_stock")
    assert row_counts(app.db) | {"events": before["events"]} == before


def test_malformed_order_items_fail_as_invalid_order(app: App, demo: dict[str, int]) -> None:
    app.db.execute(
        """UPDATE orders SET items = '[{"product_id": "x", "quantity": 1, "unit_price_paise": 1}]'
            WHERE user_id = 'demo-user-1'"""
    )
    job_id = pay(app, "demo-user-1", "key-1").body["job_id"]

    assert process_wallet_job(app, job_id).reason == "invalid_order"


def test_order_total_that_does_not_match_its_items_is_invalid(app: App, demo: dict[str, int]) -> None:
    app.db.execute("UPDATE orders SET total_paise = total_paise + 1 WHERE user_id = 'demo-user-1'")
    job_id = pay(app, "demo-user-1", "key-1").body["job_id"]
    balance = app.db.fetch_one("SELECT balance_paise FROM wallets WHERE user_id = 'demo-user-1'")

    assert process_wallet_job(app, job_id).reason == "invalid_order"
    assert app.db.fetch_one("SELECT balance_paise FROM wallets WHERE user_id = 'demo-user-1'") == balance


def test_gateway_job_sent_down_the_wallet_path_is_poison_and_debits_nothing(app: App, demo: dict[str, int]) -> None:
    # Given a Razorpay job whose queue message lost its method (so it looks like a wallet one)
    order = pending_order(app.db, "demo-user-1")
    job = app.db.fetch_one(
        """INSERT INTO payment_jobs (user_id, idempotency_key, request_hash, order_id, method, gateway_ref)
           VALUES ('demo-user-1', 'k', 'h', %s, 'razorpay', 'pay_abc') RETURNING id::text""",
        (order,),
    )
    assert job is not None
    before = row_counts(app.db)

    with pytest.raises(PoisonMessageError):
        process_wallet_job(app, job["id"])

    assert row_counts(app.db) == before


def test_message_for_a_job_that_does_not_exist_is_poison(app: App, demo: dict[str, int]) -> None:
    with pytest.raises(PoisonMessageError):
        process_wallet_job(app, "00000000-0000-4000-8000-000000000000")


def test_refused_validation_records_nothing(app: App, demo: dict[str, int]) -> None:
    before = row_counts(app.db)
    with pytest.raises(DomainError):
        accept_payment(app, "demo-user-1", "k", PaymentRequest(order_id=10**12, method="wallet"))
    assert row_counts(app.db) == before

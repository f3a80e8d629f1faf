"""Small steps the integration tests share."""

from __future__ import annotations

import time
from typing import Any

from functions.process_payment.handler import handler as process_handler
from local.lambda_shim import LocalContext, sqs_record
from local.seed import SeedPlan
from local.workers import read_fifo, settle
from shared.bootstrap import App
from shared.db import Database
from shared.domain import PaymentRequest
from shared.services.intake import Accepted, accept_payment

# A hot sale: six shoppers, product 1 with one unit; shoppers 2, 4, 5 and 6 hold it (local/seed.py), 1 and 3
# do not (the conftest's sale fixture seeds it).
HOT = SeedPlan(users=6, products=5, hot_every=2, hot_stock=1)
HOLDERS = ("demo-user-2", "demo-user-4", "demo-user-5", "demo-user-6")


def pending_order(db: Database, user_id: str) -> int:
    row = db.fetch_one("SELECT id FROM orders WHERE user_id = %s AND order_status = 'pending' ORDER BY id", (user_id,))
    assert row is not None, f"{user_id} has no pending order"
    return int(row["id"])


def pay(app: App, user_id: str, key: str, order_id: int | None = None) -> Accepted:
    order = pending_order(app.db, user_id) if order_id is None else order_id
    return accept_payment(app, user_id, key, PaymentRequest(order_id=order, method="wallet"))


def row_counts(db: Database) -> dict[str, Any]:
    """A snapshot of every table's rows and money, to prove a refused request changed nothing."""
    row = db.fetch_one(
        """SELECT (SELECT count(*) FROM payment_jobs) jobs,
                  (SELECT count(*) FROM payment_transactions) payments,
                  (SELECT count(*) FROM wallet_transactions) wallet_txs,
                  (SELECT coalesce(sum(balance_paise), 0) FROM wallets) balances,
                  (SELECT coalesce(sum(stock), 0) FROM products) stock,
                  (SELECT count(*) FROM orders WHERE order_status = 'paid') paid_orders,
                  (SELECT count(*) FROM cart_items) cart_items,
                  (SELECT count(*) FROM outbox_events) events,
                  (SELECT count(*) FROM pgmq.q_payments) queued"""
    )
    assert row is not None
    return row


def receive(app: App, qty: int = 10, vt: int = 30) -> list[dict[str, Any]]:
    return read_fifo(app.db, "payments", visibility_timeout_s=vt, qty=qty)


def deliver(app: App, messages: list[dict[str, Any]]) -> set[str]:
    """One event source mapping step: invoke the handler, settle the batch; return failed ids."""
    response = process_handler({"Records": [sqs_record(m, "payments") for m in messages]}, LocalContext("test"))
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    settle(
        app.db,
        messages,
        failed,
        queue="payments",
        dlq="payments_dlq",
        max_receive_count=app.settings.max_receive_count,
        retry_delay_s=0,
    )
    return failed


def drain_line(app: App) -> None:
    """Deliver every queued message until the queue hands over nothing more; no delivery may fail."""
    while messages := receive(app):
        assert deliver(app, messages) == set()


def second_order(db: Database, user_id: str) -> int:
    """Another pending order of the shopper's, with the items of their first."""
    row = db.fetch_one(
        """INSERT INTO orders (user_id, items, total_paise)
           SELECT user_id, items, total_paise FROM orders WHERE user_id = %s ORDER BY id LIMIT 1 RETURNING id""",
        (user_id,),
    )
    assert row is not None
    return int(row["id"])


def wait_for_a_lock_wait(app: App, call: str, timeout_s: float = 10.0) -> None:
    """Until a session running `call` waits for a lock."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        waiting = app.db.fetch_one(
            """SELECT count(*) AS n FROM pg_stat_activity
                WHERE wait_event_type = 'Lock' AND query LIKE %s AND pid <> pg_backend_pid()""",
            (f"%{call}%",),
        )
        if waiting and waiting["n"]:
            return
        time.sleep(0.02)
    raise AssertionError(f"no session running {call} came to wait for a lock")

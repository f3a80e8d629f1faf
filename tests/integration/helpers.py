"""Small steps the integration tests share."""

from __future__ import annotations

from typing import Any

from shared.bootstrap import App
from shared.db import Database
from shared.domain import PaymentRequest
from shared.services import Accepted, accept_payment


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

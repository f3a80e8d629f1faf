"""The invariant checks catch what they are meant to catch (a check that cannot fail proves nothing)."""

from __future__ import annotations

from local.invariants import check, snapshot_stock
from shared.bootstrap import App
from shared.services.wallet import process_wallet_job
from tests.integration.helpers import pay


def _paid(app: App) -> None:
    process_wallet_job(app, pay(app, "demo-user-1", "k1").body["job_id"])


def test_clean_run_has_no_violations(app: App, demo: dict[str, int]) -> None:
    stock = snapshot_stock(app.db)
    _paid(app)
    app.db.execute("UPDATE outbox_events SET published_at = now()")
    violations = check(app.db, initial_stock=stock)
    assert violations == dict.fromkeys(violations, 0)


def test_a_second_debit_is_a_double_charge_and_a_ledger_mismatch(app: App, demo: dict[str, int]) -> None:
    _paid(app)
    app.db.execute("ALTER TABLE wallet_transactions DROP CONSTRAINT wallet_transactions_order_id_kind_key")
    app.db.execute(
        """INSERT INTO wallet_transactions (wallet_id, order_id, kind, amount_paise, balance_after_paise)
           SELECT wallet_id, order_id, kind, amount_paise, 0 FROM wallet_transactions WHERE kind = 'debit'"""
    )
    violations = check(app.db)
    assert violations["double_charges"] == 1
    assert violations["ledger_mismatch_paise"] > 0


def test_stock_that_vanished_without_a_sale_is_reported(app: App, demo: dict[str, int]) -> None:
    stock = snapshot_stock(app.db)
    app.db.execute("UPDATE products SET stock = stock - 3 WHERE id = (SELECT min(id) FROM products)")
    assert check(app.db, initial_stock=stock)["oversold_units"] == 3


def test_unpublished_event_and_a_job_outside_every_queue_are_reported(app: App, demo: dict[str, int]) -> None:
    _paid(app)  # its event is in the outbox, unpublished
    lost = pay(app, "demo-user-2", "k2").body["job_id"]
    app.db.execute("DELETE FROM pgmq.q_payments WHERE headers->>'job_id' = %s", (lost,))
    violations = check(app.db)
    assert violations["missing_notifications"] == 1
    assert violations["lost_jobs"] == 1


def test_jobs_of_one_user_finishing_out_of_order_are_reported(app: App, demo: dict[str, int]) -> None:
    first = pay(app, "demo-user-1", "k1").body["job_id"]
    app.db.execute("UPDATE orders SET order_status = 'cancelled' WHERE user_id = 'demo-user-1'")
    app.db.execute(
        """INSERT INTO orders (user_id, items, total_paise)
           SELECT user_id, items, total_paise FROM orders WHERE user_id = 'demo-user-1'"""
    )
    second = pay(app, "demo-user-1", "k2").body["job_id"]
    process_wallet_job(app, second)
    process_wallet_job(app, first)
    assert check(app.db)["order_violations"] == 1

"""The invariants every test, benchmark and fault scenario checks after the fact (all must be 0)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.db import Database

_CHECKS = {
    # 1. Exactly-once effect: an order paid, debited or succeeded more than once.
    "double_charges": """
        SELECT (SELECT count(*) FROM (SELECT order_id FROM payment_transactions GROUP BY order_id
                                       HAVING count(*) > 1) d)
             + (SELECT count(*) FROM (SELECT order_id FROM wallet_transactions WHERE kind = 'debit'
                                       GROUP BY order_id HAVING count(*) > 1) d)
             + (SELECT count(*) FROM (SELECT order_id FROM payment_jobs WHERE status = 'succeeded'
                                       GROUP BY order_id HAVING count(*) > 1) d)""",
    # 3. No oversell: negative stock, or units sold that differ from what paid orders bought.
    "oversold_units": """
        SELECT (SELECT coalesce(sum(-stock), 0) FROM products WHERE stock < 0)
             + (SELECT coalesce(sum(abs(coalesce(oi.q, 0) - coalesce(ord.q, 0))), 0)
                  FROM (SELECT product_id, sum(quantity) q FROM order_items GROUP BY 1) oi
                  FULL JOIN (SELECT (e->>'product_id')::bigint product_id, sum((e->>'quantity')::int) q
                               FROM orders o, jsonb_array_elements(o.items) e
                              WHERE o.order_status = 'paid' GROUP BY 1) ord USING (product_id))""",
    "negative_balances": "SELECT count(*) FROM wallets WHERE balance_paise < 0",
    # 2. No money created or lost: per wallet and in total.
    "ledger_mismatch_paise": """
        SELECT (SELECT coalesce(sum(abs(w.balance_paise - coalesce(l.net, 0))), 0)
                  FROM wallets w
                  LEFT JOIN (SELECT wallet_id,
                                    sum(CASE WHEN kind = 'credit' THEN amount_paise ELSE -amount_paise END) net
                               FROM wallet_transactions GROUP BY 1) l ON l.wallet_id = w.id)
             + abs((SELECT coalesce(sum(amount_paise), 0) FROM payment_transactions WHERE status = 'captured')
                   - (SELECT coalesce(sum(total_paise), 0) FROM orders WHERE order_status = 'paid'))
             + abs((SELECT coalesce(sum(amount_paise), 0) FROM payment_transactions WHERE method = 'wallet')
                   - (SELECT coalesce(sum(amount_paise), 0) FROM wallet_transactions WHERE kind = 'debit'))""",
    # 5. Per-user order: a user's job accepted later finished before one accepted earlier. A job that
    # waited for its gateway's verdict (parks > 0) gave its place in the line up on purpose, and a job
    # a gateway's webhook created was never in the shopper's line. A later job its shopper cancelled
    # (shared/sql/line.sql) was never applied at all: leaving the line is not jumping it.
    "order_violations": """
        SELECT count(*) FROM payment_jobs a JOIN payment_jobs b
            ON a.user_id = b.user_id AND a.queue_seq < b.queue_seq
         WHERE a.finished_at IS NOT NULL AND b.finished_at IS NOT NULL AND a.finished_at > b.finished_at
           AND a.parks = 0 AND a.request_hash <> 'gateway-notified' AND b.reason IS DISTINCT FROM 'cancelled'""",
    # 6. Every terminal job has its event, and every event was published.
    "missing_notifications": """
        SELECT (SELECT count(*) FROM payment_jobs j WHERE j.finished_at IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM outbox_events e WHERE e.job_id = j.id))
             + (SELECT count(*) FROM outbox_events WHERE published_at IS NULL)""",
}

# 7. Gateway books close: captured money in none of applied, refunded, refunding, owed, and authorisations
# no live job will capture that nobody released (shared/sql/books.sql).
_CHECKS["gateway_unaccounted_paise"] = "SELECT coalesce(sum(abs(unaccounted_paise)), 0) FROM pq_gateway_books()"

# 4. Nothing lost: a live job is in the queue, in flight, or in the DLQ (PGMQ's tables locally), or
# parked waiting for its gateway's verdict (a webhook or the sweeper's reconciliation sends it again).
_LOST_PGMQ = """
    SELECT count(*) FROM payment_jobs j
     WHERE j.status IN ('queued', 'processing') AND j.parked_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM pgmq.q_{queue} q WHERE q.headers->>'job_id' = j.id::text)
       AND NOT EXISTS (SELECT 1 FROM pgmq.q_{dlq} d WHERE d.headers->>'job_id' = j.id::text)"""


def _count(db: Database, sql: str, params: tuple[object, ...] = ()) -> int:
    row = db.fetch_one(f"SELECT ({sql}) AS n", params)
    return int(row["n"]) if row is not None else 0


def snapshot_stock(db: Database) -> dict[int, int]:
    """Units on hand per product: its row's stock plus its stock shards' (migration 0008)."""
    rows = db.fetch_all(
        """SELECT p.id, p.stock + coalesce((SELECT sum(s.stock) FROM product_stock_shards s
                                              WHERE s.product_id = p.id), 0) AS stock
             FROM products p"""
    )
    return {r["id"]: int(r["stock"]) for r in rows}


def books_vs_gateway_paise(db: Database, ledger: Sequence[Mapping[str, Any]]) -> int:
    """Our books against the gateway's own record (the simulator's ledger): per payment, the money the
    gateway still holds (captured - refunded - refunding) must be what our books say it holds (applied +
    owed). A payment on one side only counts in full; money the gateway took and gave back by itself
    (an authorisation released, a duplicate refunded at once) nets to 0 on both sides."""
    ours = {
        (r["method"], r["gateway_ref"]): int(r["captured_paise"] - r["refunded_paise"] - r["refunding_paise"])
        for r in db.fetch_all("SELECT * FROM pq_gateway_books()")
    }
    theirs: dict[tuple[str, str], int] = {}
    for entry in ledger:
        key = (str(entry["gateway"]), str(entry["payment_ref"]))
        # An authorisation the gateway released by itself was never captured: it holds nothing of ours.
        held = (
            0
            if entry.get("released")
            else int(entry["captured_paise"]) - int(entry["refunded_paise"]) - int(entry["refunding_paise"])
        )
        theirs[key] = theirs.get(key, 0) + held
    return sum(abs(theirs.get(key, 0) - ours.get(key, 0)) for key in set(ours) | set(theirs))


def check(
    db: Database,
    *,
    initial_stock: dict[int, int] | None = None,
    queue: str = "payments",
    dlq: str = "payments_dlq",
    gateway_ledger: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, int]:
    """Counts of violations; every value must be 0. With initial_stock, units sold must equal
    the stock decrease exactly; with gateway_ledger (the simulator's GET /_sim/ledger payments), our
    gateway books must agree with the gateway's record."""
    result = {name: _count(db, sql) for name, sql in _CHECKS.items()}
    if gateway_ledger is not None:
        result["gateway_books_vs_gateway_paise"] = books_vs_gateway_paise(db, gateway_ledger)
    result["lost_jobs"] = _count(db, _LOST_PGMQ.format(queue=queue, dlq=dlq))
    if initial_stock is not None:
        sold = {
            r["product_id"]: int(r["q"])
            for r in db.fetch_all("SELECT product_id, sum(quantity) q FROM order_items GROUP BY 1")
        }
        now = snapshot_stock(db)
        result["oversold_units"] += sum(
            abs(initial_stock.get(pid, 0) - now.get(pid, 0) - sold.get(pid, 0)) for pid in set(initial_stock) | set(now)
        )
    return result

"""Many buyers, few products, several worker processes at once: the invariants hold."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2

from local.invariants import check, snapshot_stock
from local.seed import SeedPlan, seed
from shared.bootstrap import App
from shared.domain import PaymentRequest
from shared.services.intake import accept_payment
from tests.integration.helpers import wait_for_a_lock_wait

ROOT = Path(__file__).resolve().parents[2]
USERS = 300
WORKERS = 4


def test_hot_product_with_less_stock_than_buyers_never_oversells(app: App) -> None:
    # Given 300 buyers over 3 products, every 2nd also buying the hot one (20 units for ~100
    # buyers), every 25th too poor to pay
    seed(app.db, SeedPlan(users=USERS, products=3, user_prefix="u", hot_every=2, hot_stock=20, poor_every=25))
    stock_before = snapshot_stock(app.db)
    orders = app.db.fetch_all("SELECT id, user_id FROM orders ORDER BY id")
    for order in orders:
        accept_payment(
            app, order["user_id"], f"key-{order['id']}", PaymentRequest(order_id=order["id"], method="wallet")
        )

    # When four worker processes drain the queue together
    env = os.environ | {
        "DATABASE_URL": app.settings.database_url or "",
        "PYTHONPATH": str(ROOT),
        "PQ_RETRY_DELAY_S": "0",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    workers = [
        subprocess.Popen([sys.executable, "-m", "local.workers", "processor"], env=env, cwd=ROOT)
        for _ in range(WORKERS)
    ]
    started = time.monotonic()
    try:
        deadline = started + 120
        while time.monotonic() < deadline:
            live = app.db.fetch_one("SELECT count(*) n FROM payment_jobs WHERE finished_at IS NULL")
            if live == {"n": 0}:
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - started
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=30)

    # Then every job is terminal, nothing is oversold or double charged, the ledger adds up
    outcomes = {
        (r["status"], r["reason"]): r["n"]
        for r in app.db.fetch_all("SELECT status, reason, count(*) n FROM payment_jobs GROUP BY 1, 2")
    }
    span = app.db.fetch_one("SELECT extract(epoch FROM max(finished_at) - min(finished_at)) s FROM payment_jobs")
    assert span is not None
    busy_s = float(span["s"])
    print(
        f"\n{USERS} jobs, {WORKERS} workers: {elapsed:.2f} s with start-up, {busy_s:.2f} s first to last "
        f"({USERS / max(busy_s, 1e-3):.0f} jobs/s); {outcomes}"
    )
    assert sum(outcomes.values()) == USERS
    assert ("queued", None) not in outcomes
    hot = min(stock_before)
    assert snapshot_stock(app.db)[hot] == 0
    assert outcomes[("failed", "out_of_stock")] > 0
    # Every poor shopper is refused; one whose order also holds the hot product may be told out_of_stock
    # instead, at once, when it sells out first (shared/sql/line.sql)
    poor = app.db.fetch_all(
        """SELECT j.status, j.reason, o.items @> jsonb_build_array(jsonb_build_object('product_id', %s::bigint))
                  AS holds_hot
             FROM payment_jobs j JOIN wallets w USING (user_id) JOIN orders o ON o.id = j.order_id
            WHERE w.balance_paise < o.total_paise""",
        (hot,),
    )
    assert len(poor) == USERS // 25
    assert all(p["status"] == "failed" for p in poor)
    assert {p["reason"] for p in poor if not p["holds_hot"]} == {"insufficient_balance"}
    assert {p["reason"] for p in poor if p["holds_hot"]} <= {"insufficient_balance", "out_of_stock"}
    violations = check(app.db, initial_stock=stock_before)
    # Events are published to the local bus by the workers; none is left behind.
    assert violations == dict.fromkeys(violations, 0)


def test_a_gateway_job_that_ends_while_another_delivery_waits_to_park_it_is_answered_as_ended(app: App) -> None:
    # Given a gateway job being failed by one delivery (its transaction still open, the job locked)
    seed(app.db, SeedPlan(users=1, user_prefix="g"))
    order = app.db.fetch_one("SELECT id FROM orders WHERE user_id = 'g1'")
    assert order is not None
    job = app.db.fetch_one(
        "SELECT job_id FROM pq_enqueue_job('g1', 'k', 'h', %s, 'razorpay', 'pay_race')", (order["id"],)
    )
    assert job is not None
    app.db.execute("UPDATE payment_jobs SET status = 'processing' WHERE id = %s", (job["job_id"],))
    failing = psycopg2.connect(app.settings.database_url)
    with failing.cursor() as cur:
        cur.execute("SELECT outcome FROM pq_gateway_fail(%s, 'gateway_payment_failed')", (job["job_id"],))
        assert cur.fetchone() == ("failed",)

        # When a redelivery asks to park it meanwhile, and the first delivery then commits
        with ThreadPoolExecutor(max_workers=1) as pool:
            parked = pool.submit(
                lambda: app.db.fetch_one("SELECT outcome, reason FROM pq_gateway_park(%s)", (job["job_id"],))
            )
            wait_for_a_lock_wait(app, "pq_gateway_park")
            failing.commit()
            answer = parked.result(timeout=10)
    failing.close()

    # Then the park is answered as the job ended, and the ended job is left as it is
    assert answer == {"outcome": "already_failed", "reason": "gateway_payment_failed"}
    row = app.db.fetch_one("SELECT status, parked_at, parks FROM payment_jobs WHERE id = %s", (job["job_id"],))
    assert row == {"status": "failed", "parked_at": None, "parks": 0}

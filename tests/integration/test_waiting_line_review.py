"""Review of the waiting line, attacked as a cheating shopper and as a fault injector: leaving the line
(DELETE /v1/payments/{job_id}), sold out known at once (the intake's 409 and the bulk end), the shared
now-serving figure, and enqueue in one round trip with the sweeper's resend rule.

Every test runs on a real PostgreSQL (the session's embedded server). Tests that pass document an attack
that holds; a test whose comment says "Found by the review" failed before its fix."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from aiohttp.test_utils import TestClient, TestServer

from functions.status.handler import handler as status_handler
from functions.sweeper.handler import handler as sweeper_handler
from local.api import LocalApi, build_app
from local.auth import LocalIssuer
from local.gateway_sim import Simulator
from local.invariants import check, snapshot_stock
from local.lambda_shim import LocalContext
from local.seed import seed
from local.workers import dead_letter
from shared.bootstrap import App
from shared.db import Database
from shared.errors import DomainError
from shared.http import http_status
from shared.services.intake import accept_payment
from shared.services.line import cancel_job, end_sold_out_jobs
from shared.services.operator import drop_dead_letter
from shared.services.outbox import sweep
from shared.services.reads import get_job
from shared.services.reconcile import reconcile
from shared.services.wallet import process_wallet_job
from shared.settings import Settings
from tests.integration.gateway_helpers import (
    WebhookInbox,
    drain,
    ledger_violations,
    open_for,
    pay_at_gateway,
    pay_gateway,
    payment_request,
    pgmq_gateway_settings,
    set_stock_of_order,
)
from tests.integration.gateway_helpers import (
    jobs as gateway_jobs,
)
from tests.integration.helpers import (
    HOLDERS,
    HOT,
    deliver,
    drain_line,
    pay,
    pending_order,
    receive,
    row_counts,
    second_order,
    wait_for_a_lock_wait,
)
from tests.integration.test_api_handlers import call
from tests.integration.test_dlq_redrive import dead_letter_everything
from tests.integration.test_enqueue_round_trip import N, _unconfirmed
from tests.integration.test_gateway_books import follow
from tests.integration.test_merchant_api import call as merchant_call

# --- fixtures and small steps -------------------------------------------------------------------


@pytest.fixture
def settings(request: pytest.FixtureRequest, database_url: str) -> Settings:
    """The conftest's PGMQ settings; with both gateways at the simulator for a test that asks for `sim`."""
    if "sim" in request.fixturenames:
        return pgmq_gateway_settings(database_url, request.getfixturevalue("sim"))
    return Settings(database_url=database_url, queue_backend="pgmq", event_bus_backend="pgmq", sweep_after_s=0)


@pytest.fixture
def holder(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    """A second session that holds a transaction open: a processor, a cancel or a bulk end mid-flight."""
    conn = psycopg2.connect(database_url)
    yield conn
    conn.close()


def _no_violations(db: Database, initial_stock: dict[int, int] | None = None) -> None:
    found = check(db, initial_stock=initial_stock)
    assert {k: v for k, v in found.items() if v} == {}


def _finished_counter_matches_the_books(db: Database) -> None:
    """The figure every position is measured against counts exactly the jobs that ended."""
    row = db.fetch_one(
        """SELECT pq_finished_count() AS serving,
                  (SELECT count(*) FROM payment_jobs WHERE finished_at IS NOT NULL) AS n,
                  pq_finished_count() - pq_processed_count() AS leavers,
                  (SELECT count(*) FROM payment_jobs WHERE left_line) AS left_line"""
    )
    assert row is not None and row["serving"] == row["n"]
    # and the leavers among them, which only the shared figure counts, once the line's front passes them
    assert row["leavers"] == row["left_line"]


def _job(db: Database, job_id: str) -> dict[str, Any]:
    row = db.fetch_one("SELECT status, reason, payment_id, sent_at FROM payment_jobs WHERE id = %s", (job_id,))
    assert row is not None
    return row


def _settle(app: App) -> None:
    """Every queued message delivered, then what held transactions left to the sweeper published."""
    drain_line(app)
    sweeper_handler({}, LocalContext("sweeper"))


def _whole(db: Database, initial_stock: dict[int, int] | None = None) -> None:
    """No invariant broken, and the line's counter counts exactly the jobs that ended."""
    _no_violations(db, initial_stock)
    _finished_counter_matches_the_books(db)


def _refusal(fn: Callable[..., Any], *args: Any) -> DomainError:
    with pytest.raises(DomainError) as err:
        fn(*args)
    return err.value


class _Blocked:
    """A call run in a thread (app.db gives each thread its own connection) that is expected to wait on a
    row lock another session holds; its result or its error once it is let go."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # handed to the test
            self.error = exc

    def join(self) -> None:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the blocked call never finished"


# --- 1. leaving the line: a cheating shopper ---------------------------------------------------------


def test_a_shopper_who_knows_another_shoppers_job_id_cannot_end_it(app: App, demo: dict[str, int]) -> None:
    # Given demo-user-1's job in line, its id leaked to demo-user-2 (a shared screenshot, a log line)
    victim = pay(app, "demo-user-1", "k1").body
    before = row_counts(app.db)

    # When demo-user-2 sends DELETE for it, by the route and by the service, and with the id's case changed
    answers = [
        call(status_handler, "DELETE", f"/v1/payments/{victim['job_id']}", user="demo-user-2"),
        call(status_handler, "DELETE", f"/v1/payments/{victim['job_id'].upper()}", user="demo-user-2"),
    ]
    refused = _refusal(cancel_job, app, "demo-user-2", victim["job_id"])

    # Then each answer is the missing job's 404, the job waits on untouched, and nothing was written
    assert [(a[0], a[1]["error"]["code"]) for a in answers] == [(404, "job_not_found")] * 2
    assert (http_status(refused), refused.code) == (404, "job_not_found")
    assert _job(app.db, victim["job_id"])["status"] == "queued"
    assert row_counts(app.db) == before
    # And the victim's job is paid in its turn
    drain_line(app)
    assert _job(app.db, victim["job_id"])["status"] == "succeeded"
    _no_violations(app.db)


def test_cancel_then_replaying_the_same_key_answers_the_cancelled_job_and_makes_no_new_one(
    app: App, demo: dict[str, int]
) -> None:
    # Given a job its shopper cancelled
    first = pay(app, "demo-user-1", "k1").body
    cancel_job(app, "demo-user-1", first["job_id"])
    jobs_before = row_counts(app.db)["jobs"]

    # When the same request is sent again under the same Idempotency-Key (a retrying client)
    again = pay(app, "demo-user-1", "k1")

    # Then it is the same job, answered as it ended: no second job, no second queue message
    assert again.replayed
    assert (again.body["job_id"], again.body["status"], again.body["reason"]) == (
        first["job_id"],
        "failed",
        "cancelled",
    )
    assert row_counts(app.db)["jobs"] == jobs_before
    assert app.db.fetch_one("SELECT count(*) AS n FROM pgmq.q_payments") == {"n": 1}  # the cancelled job's only
    drain_line(app)
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 0}
    _no_violations(app.db)


def test_cancel_then_paying_the_same_order_with_a_new_key_joins_the_back_and_pays_once(
    app: App, demo: dict[str, int]
) -> None:
    # Given a cancelled job, and another shopper waiting behind it
    stock = snapshot_stock(app.db)
    order = pending_order(app.db, "demo-user-1")
    first = pay(app, "demo-user-1", "k1", order).body
    behind = pay(app, "demo-user-2", "k2").body
    cancel_job(app, "demo-user-1", first["job_id"])

    # When the shopper changes their mind and pays the same order under a new key
    second = pay(app, "demo-user-1", "k1-again", order).body

    # Then a new job joins the back of the line (a larger queue number than the shopper waiting behind)
    assert second["job_id"] != first["job_id"] and second["status"] == "queued"
    assert second["queue_number"] > behind["queue_number"]
    # And once the line drains the order is paid exactly once, by the new job
    drain_line(app)
    assert _job(app.db, first["job_id"])["reason"] == "cancelled"
    assert _job(app.db, second["job_id"])["status"] == "succeeded"
    debits = app.db.fetch_one(
        "SELECT count(*) AS n FROM wallet_transactions WHERE order_id = %s AND kind = 'debit'", (order,)
    )
    assert debits == {"n": 1}
    _whole(app.db, stock)


def test_a_shopper_whose_first_of_two_jobs_is_cancelled_still_has_the_second_paid(
    app: App, demo: dict[str, int]
) -> None:
    # Given a shopper with two jobs in line, the first cancelled
    stock = snapshot_stock(app.db)
    first = pay(app, "demo-user-1", "k1").body["job_id"]
    second = pay(app, "demo-user-1", "k2", second_order(app.db, "demo-user-1")).body["job_id"]
    cancel_job(app, "demo-user-1", first)

    # When the line drains (the FIFO group hands the cancelled job's message over first)
    drain_line(app)

    # Then the second is paid, in order after the first's end, with no invariant broken
    assert (_job(app.db, first)["status"], _job(app.db, first)["reason"]) == ("failed", "cancelled")
    assert _job(app.db, second)["status"] == "succeeded"
    assert app.db.fetch_one("SELECT count(*) AS n FROM pgmq.q_payments") == {"n": 0}
    _no_violations(app.db, stock)


# --- 1. leaving the line: a cancel racing a processor -------------------------------------------------


def test_a_cancel_arriving_after_the_processor_received_the_message_but_before_it_paid_wins(
    app: App, demo: dict[str, int]
) -> None:
    # Given a processor that has received the job's message (it is in flight) but not yet paid it
    stock = snapshot_stock(app.db)
    job = pay(app, "demo-user-1", "k1").body["job_id"]
    in_flight = receive(app)
    before = row_counts(app.db)

    # When the shopper leaves the line, and then the processor runs the payment
    left = cancel_job(app, "demo-user-1", job)
    failed = deliver(app, in_flight)

    # Then the job stays cancelled, the processor acknowledged the message without charging, and only
    # the cancel's one event went out
    assert left["reason"] == "cancelled" and failed == set()
    after = row_counts(app.db)
    assert {k: after[k] for k in ("payments", "wallet_txs", "balances", "stock")} == {
        k: before[k] for k in ("payments", "wallet_txs", "balances", "stock")
    }
    assert after["events"] == before["events"] + 1 and after["queued"] == 0
    _whole(app.db, stock)


def test_a_cancel_while_the_wallet_payment_holds_the_job_waits_and_answers_it_finished(
    app: App, demo: dict[str, int], holder: psycopg2.extensions.connection
) -> None:
    # Given a processor in the middle of the job's payment transaction (its row locked, not committed)
    stock = snapshot_stock(app.db)
    job = pay(app, "demo-user-1", "k1").body["job_id"]
    with holder.cursor() as cur:
        cur.execute("SELECT outcome FROM pq_process_payment(%s)", (job,))
        assert cur.fetchone() == ("succeeded",)

        # When the shopper's cancel arrives meanwhile
        racing = _Blocked(lambda: cancel_job(app, "demo-user-1", job))
        wait_for_a_lock_wait(app, "pq_leave_line")
        holder.commit()
    racing.join()

    # Then the cancel waited for the payment and answers 409 job_finished (succeeded): too late to leave
    assert isinstance(racing.error, DomainError)
    assert (http_status(racing.error), racing.error.code, racing.error.details["job_status"]) == (
        409,
        "job_finished",
        "succeeded",
    )
    assert _job(app.db, job)["status"] == "succeeded"
    _settle(app)  # the held payment's event, published by the sweeper
    _whole(app.db, stock)


def test_a_payment_arriving_while_a_cancel_holds_the_job_waits_and_charges_nothing(
    app: App, demo: dict[str, int], holder: psycopg2.extensions.connection
) -> None:
    # Given a cancel in progress (the job's row locked, not committed)
    stock = snapshot_stock(app.db)
    job = pay(app, "demo-user-1", "k1").body["job_id"]
    wallets = row_counts(app.db)["balances"]
    with holder.cursor() as cur:
        cur.execute("SELECT outcome FROM pq_leave_line('demo-user-1', %s, true)", (job,))
        assert cur.fetchone() == ("cancelled",)

        # When the processor runs the job's payment meanwhile
        racing = _Blocked(lambda: process_wallet_job(app, job))
        wait_for_a_lock_wait(app, "pq_process_payment")
        holder.commit()
    racing.join()

    # Then the payment waited and found the job cancelled: nothing charged, nothing sold, no second event
    assert racing.error is None
    assert (racing.result.outcome, racing.result.reason, racing.result.event) == ("already_failed", "cancelled", None)
    assert row_counts(app.db)["balances"] == wallets
    _settle(app)
    assert app.db.fetch_one("SELECT count(*) AS n FROM outbox_events WHERE job_id = %s", (job,)) == {"n": 1}
    _whole(app.db, stock)


# --- 1. leaving the line: a gateway job whose money the gateway holds --------------------------------


@pytest.mark.parametrize(
    ("method", "auto_capture", "returned"),
    [("razorpay", False, "released"), ("razorpay", True, "refunded"), ("cashfree", False, "refunded")],
)
def test_a_gateway_job_asked_to_leave_returns_its_money_in_its_turn_and_never_pays_the_order(
    app: App, sim: Simulator, demo: dict[str, int], method: str, auto_capture: bool, returned: str
) -> None:
    # Given a shopper who paid at the gateway (authorised only, or captured) and whose job waits in line
    sim.config.razorpay_auto_capture = auto_capture
    job = pay_gateway(app, sim, "demo-user-1", method).body["job_id"]

    # When they leave the line (the route), and ask again (the service)
    status, body, _ = call(status_handler, "DELETE", f"/v1/payments/{job}", user="demo-user-1")
    again = cancel_job(app, "demo-user-1", job)

    # Then they are told it is asked (202): the job waits, nothing ends or is told before its turn
    assert (status, body["status"], body["cancel_requested"]) == (202, "queued", True)
    assert (again["status"], again["cancel_requested"]) == ("queued", True)
    assert app.db.fetch_one("SELECT count(*) AS n FROM outbox_events") == {"n": 0}

    # And in its turn the money goes back instead of paying the order: the job fails cancelled, the order is
    # still payable, nothing is captured that was not already, and the books close against the gateway's
    drain(app)
    follow(app, sim)
    assert (_job(app.db, job)["status"], _job(app.db, job)["reason"]) == ("failed", "cancelled")
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 0}
    assert app.db.fetch_one(
        "SELECT order_status FROM orders o JOIN payment_jobs j ON j.order_id = o.id WHERE j.id = %s", (job,)
    ) == {"order_status": "pending"}
    [money] = app.db.fetch_all("SELECT captured_paise, refunded_paise, released FROM pq_gateway_books()")
    if returned == "released":
        assert (money["captured_paise"], money["released"]) == (0, True)
    else:
        assert money["refunded_paise"] == money["captured_paise"] > 0
    assert get_job(app, "demo-user-1", job)["reason"] == "cancelled"
    assert ledger_violations(app, sim) == {}


def left_after_paying(app: App, sim: Simulator) -> dict[str, Any]:
    """A Razorpay checkout paid (authorised), the page's request for its job, and its shopper leaving the line
    (202): the checkout's view."""
    view = open_for(app, "demo-user-1", "razorpay")
    handed = pay_at_gateway(sim, view)
    job = accept_payment(app, "demo-user-1", "key-1", payment_request(view, handed)).body["job_id"]
    assert cancel_job(app, "demo-user-1", job)["cancel_requested"] is True
    return view


def look(app: App) -> None:
    """The sweeper's reconciliation and its wake-ups of parked jobs come due at once, and run."""
    app.db.execute("UPDATE gateway_checkouts SET next_check_at = now() WHERE next_check_at IS NOT NULL")
    app.db.execute("UPDATE payment_jobs SET parked_at = now() - interval '1 day' WHERE parked_at IS NOT NULL")
    reconcile(app)
    sweeper_handler({}, LocalContext("sweeper"))


@pytest.mark.parametrize("order_status", ["ACTIVE", "EXPIRED"])
def test_a_cashfree_shopper_who_left_before_paying_is_let_go_at_once_and_can_pay_again(
    app: App, sim: Simulator, demo: dict[str, int], order_status: str
) -> None:
    # Found by the review: the job parked on its unpaid order until the order expired (up to 45 minutes),
    # the order payable by nothing else meanwhile, and then failed gateway_checkout_expired.
    # Given a Cashfree job asked for before its shopper paid (parked: the order unpaid), and the shopper
    # leaving the line
    view = open_for(app, "demo-user-1", "cashfree")
    job = accept_payment(app, "demo-user-1", "key-1", payment_request(view)).body["job_id"]
    drain(app)
    assert cancel_job(app, "demo-user-1", job)["cancel_requested"] is True
    if order_status == "EXPIRED":  # long past its expiry and grace at Cashfree
        sim.cashfree.set_status(view["cashfree"]["order_id"], "EXPIRED")
        app.db.execute("UPDATE gateway_checkouts SET expires_at = now() - interval '2 hours'")

    # When its turn comes (the sweeper wakes it)
    look(app)
    drain(app)

    # Then it ends cancelled at once, as the shopper was told, and a new checkout is a new Cashfree order
    assert (_job(app.db, job)["status"], _job(app.db, job)["reason"]) == ("failed", "cancelled")
    again = open_for(app, "demo-user-1", "cashfree")
    assert again["cashfree"]["order_id"] != view["cashfree"]["order_id"]

    # And when the old order is paid after all (a tab left open) and then the new one, the old payment goes
    # back (the request holds for it) and the new one pays the order
    if order_status == "ACTIVE":
        pay_at_gateway(sim, view)
        look(app)
        drain(app)
    pay_at_gateway(sim, again)
    accept_payment(app, "demo-user-1", "key-2", payment_request(again))
    drain(app)
    follow(app, sim)
    assert app.db.fetch_one("SELECT order_status FROM orders WHERE id = %s", (view["order_id"],)) == {
        "order_status": "paid"
    }
    reasons = sorted((j["status"], j["reason"] or "") for j in gateway_jobs(app.db))
    assert reasons == sorted([("failed", "cancelled")] * (2 if order_status == "ACTIVE" else 1) + [("succeeded", "")])
    assert ledger_violations(app, sim) == {}


def test_a_payment_completing_on_an_old_cashfree_order_still_active_past_our_clock_is_found_and_refunded(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Found by the review: once the job that left had ended, the look took the order for ended unpaid by our
    # clock while Cashfree still held it ACTIVE, and stopped looking.
    # Given a Cashfree checkout whose shopper began a payment still PENDING (the order ACTIVE), sent the page's
    # request (the job parked), then left the line, the job ending cancelled in its turn
    view = open_for(app, "demo-user-1", "cashfree")
    order_id = view["cashfree"]["order_id"]
    sim.cashfree_checkout(order_id, "pending")
    job = accept_payment(app, "demo-user-1", "key-1", payment_request(view)).body["job_id"]
    drain(app)
    assert cancel_job(app, "demo-user-1", job)["cancel_requested"] is True
    look(app)
    drain(app)

    # When our clock passes the checkout's expiry and grace while Cashfree still holds the order ACTIVE, the
    # sweeper looks, and then the pending payment succeeds at Cashfree, its webhook lost
    app.db.execute("UPDATE gateway_checkouts SET expires_at = now() - interval '2 hours'")
    look(app)
    sim.cashfree.late_success(order_id)
    look(app)
    drain(app)
    follow(app, sim)

    # Then the money taken is found and goes back
    assert [r["gateway_ref"] for r in app.db.fetch_all("SELECT gateway_ref FROM gateway_refunds")] == [order_id]
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 0}
    assert ledger_violations(app, sim) == {}


def test_a_second_razorpay_payment_made_after_leaving_the_line_is_found_by_the_look(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Found by the review: the look offered only the order's first authorised payment, which the books showed
    # released, so the second was never offered.
    # Given a Razorpay payment P1 authorised, its job in line, and its shopper leaving the line
    view = left_after_paying(app, sim)
    inbox.deliver()

    # When they pay the same Razorpay order again (P2) while the job waits: the page's request is refused (the
    # job holds the order) and P2's webhook finds the job live; then the job releases P1 in its turn
    again = open_for(app, "demo-user-1", "razorpay")
    second = pay_at_gateway(sim, again)
    with pytest.raises(DomainError) as refused:
        accept_payment(app, "demo-user-1", "key-2", payment_request(again, second))
    assert refused.value.code == "payment_in_progress"
    assert inbox.deliver() == [200]
    drain(app)
    look(app)
    drain(app)

    # Then the reconciliation's look finds P2 past the released P1, and P2 pays the order
    assert app.db.fetch_one("SELECT order_status FROM orders WHERE id = %s", (view["order_id"],)) == {
        "order_status": "paid"
    }
    assert [r["gateway_ref"] for r in app.db.fetch_all("SELECT gateway_ref FROM payment_transactions")] == [
        second["razorpay_payment_id"]
    ]
    assert ledger_violations(app, sim) == {}


def test_the_202_of_a_dead_lettered_job_asked_to_leave_is_the_job_as_its_reads_show_it(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Found by the review: the 202 gave a place in line to a job whose message is in the DLQ.
    # Given a paid Razorpay job whose message went to the DLQ
    job = pay_gateway(app, sim, "demo-user-1", "razorpay").body["job_id"]
    dead_letter(app.db, receive(app), queue="payments", dlq="payments_dlq")
    app.db.execute("SELECT pq_record_delivery_failure(%s, 'm', 10, 'GatewayRetryable', '5xx', true)", (job,))

    # When its shopper leaves the line
    left = cancel_job(app, "demo-user-1", job)

    # Then the answer is the job as a read shows it: in the DLQ, asked to leave, no place in line
    assert left == get_job(app, "demo-user-1", job)
    assert (left["dead_lettered"], left["cancel_requested"], "position" in left) == (True, True, False)


def test_the_shop_sees_that_a_shopper_left_the_line_with_a_gateway_job(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a shopper who paid by Razorpay and left the line, and another whose job waits as it was
    view = left_after_paying(app, sim)
    other = pay_gateway(app, sim, "demo-user-2", "razorpay").body["job_id"]
    [left] = [j["id"] for j in gateway_jobs(app.db) if j["id"] != other]

    # When the shop's backend reads their payments (merchant routes)
    _, one = merchant_call(status_handler, "GET", f"/v1/merchant/payments/{left}")
    _, listed = merchant_call(status_handler, "GET", "/v1/merchant/payments", query="user_id=demo-user-2")

    # Then it sees who asked to leave, and who did not
    assert (one["order_id"], one["status"], one["cancel_requested"]) == (view["order_id"], "queued", True)
    assert [(p["job_id"], p["cancel_requested"]) for p in listed["payments"]] == [(other, False)]


def test_a_late_success_webhook_does_not_pay_the_order_of_a_shopper_who_left_the_line(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Found by the review: the request was the job's alone, and a later job of the same payment paid the order.
    # Given a Razorpay payment authorised at the gateway, its job asked for by the page, its shopper leaving
    # the line, and Razorpay's payment.authorized webhook delayed (Razorpay retries a webhook for 24 hours)
    view = left_after_paying(app, sim)
    delayed = inbox.pending()

    # When the job's turn releases the authorisation, and then the webhook arrives
    drain(app)
    inbox.deliver(delayed)
    drain(app)

    # Then the order is not paid with the payment they were told goes back: nothing is captured
    assert {(j["status"], j["reason"]) for j in gateway_jobs(app.db)} == {("failed", "cancelled")}
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 0}
    assert app.db.fetch_one("SELECT order_status FROM orders WHERE id = %s", (view["order_id"],)) == {
        "order_status": "pending"
    }
    assert sim.stats()["captures"] == 0


def test_a_request_to_leave_landing_while_a_delivery_runs_is_read_before_the_order_is_paid(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a paid Cashfree job whose delivery has begun (BEGIN read no request), and a duplicate delivery of
    # it that failed on its last receive meanwhile, marking it dead-lettered while the first still runs
    job = pay_gateway(app, sim, "demo-user-1", "cashfree").body["job_id"]
    begun = app.db.fetch_one("SELECT * FROM pq_gateway_begin(%s, 100, 100)", (job,))
    assert begun is not None and begun["unfulfillable"] is None
    app.db.execute("SELECT pq_record_delivery_failure(%s, 'm2', 10, 'GatewayRetryable', '5xx', true)", (job,))

    # When the shopper leaves the line (the previous release's call still answers as it did)
    assert cancel_job(app, "demo-user-1", job)["cancel_requested"] is True
    assert app.db.fetch_one("SELECT outcome FROM pq_cancel_job('demo-user-1', %s)", (job,)) == {"outcome": "job_taken"}

    # Then the running delivery's COMPLETE reads it under the job's lock: the order is not paid, a refund booked
    done = app.db.fetch_one("SELECT * FROM pq_complete_gateway_payment(%s, %s, 'INR')", (job, 15_000))
    assert done is not None and (done["outcome"], done["reason"]) == ("refund_required", "cancelled")
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 0}


def test_the_previous_releases_cancel_still_answers_paid_at_gateway_for_a_gateway_job(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    job = pay_gateway(app, sim, "demo-user-1", "razorpay").body["job_id"]
    old = "SELECT outcome, status FROM pq_cancel_job('demo-user-1', %s)"
    assert app.db.fetch_one(old, (job,)) == {"outcome": "paid_at_gateway", "status": "queued"}
    assert cancel_job(app, "demo-user-1", job)["cancel_requested"] is True
    assert app.db.fetch_one(old, (job,)) == {"outcome": "paid_at_gateway", "status": "queued"}


def test_a_gateway_job_a_delivery_has_begun_cannot_be_asked_to_leave(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a paid Razorpay job whose delivery has begun (pq_gateway_begin took it)
    job = pay_gateway(app, sim, "demo-user-1", "razorpay").body["job_id"]
    app.db.execute("SELECT pq_gateway_begin(%s, 100, 100)", (job,))

    # When its shopper asks to leave
    refused = _refusal(cancel_job, app, "demo-user-1", job)

    # Then too late: the delivery decides with what it read, and nothing is recorded
    assert (refused.code, refused.details["job_status"]) == ("job_processing", "processing")
    assert app.db.fetch_one("SELECT cancel_requested_at FROM payment_jobs WHERE id = %s", (job,)) == {
        "cancel_requested_at": None
    }


def test_a_cashfree_job_sent_before_paying_can_leave_and_a_payment_made_after_goes_back(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a Cashfree job asked for before its shopper paid: its delivery parked it (the order still ACTIVE)
    view = open_for(app, "demo-user-1", "cashfree")
    job = accept_payment(app, "demo-user-1", "key-1", payment_request(view)).body["job_id"]
    drain(app)
    assert app.db.fetch_one("SELECT status, parked_at IS NOT NULL AS parked FROM payment_jobs") == {
        "status": "processing",
        "parked": True,
    }

    # When they leave the line, and then pay at Cashfree after all (the order is payable until it expires)
    left = cancel_job(app, "demo-user-1", job)
    pay_at_gateway(sim, view)
    app.db.execute("UPDATE payment_jobs SET parked_at = now() - interval '1 day'")  # the sweeper wakes it
    reconcile(app)
    sweeper_handler({}, LocalContext("sweeper"))
    drain(app)
    follow(app, sim)

    # Then the payment goes back and the job fails cancelled: the order is not paid with it
    assert (left["status"], left["cancel_requested"]) == ("processing", True)
    assert (_job(app.db, job)["status"], _job(app.db, job)["reason"]) == ("failed", "cancelled")
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_transactions") == {"n": 0}
    [money] = app.db.fetch_all("SELECT captured_paise, refunded_paise FROM pq_gateway_books()")
    assert money["refunded_paise"] == money["captured_paise"] == view["amount_paise"]
    assert ledger_violations(app, sim) == {}


@pytest.mark.parametrize("method", ["razorpay", "cashfree"])
def test_a_sold_out_bulk_end_leaves_a_gateway_job_to_refund_its_captured_money(
    app: App, sim: Simulator, demo: dict[str, int], method: str
) -> None:
    # Given a gateway job paid at the gateway, and its order's products then sold out by another path
    accepted = pay_gateway(app, sim, "demo-user-1", method).body
    set_stock_of_order(app, accepted["order_id"], 0)

    # When the processor's after-batch step and the sweeper end the sold-out products' line
    ended = end_sold_out_jobs(app, None)
    sweeper_handler({}, LocalContext("sweeper"))

    # Then the gateway job was not ended in bulk (its money would be stranded at the gateway) ...
    assert ended == 0 and _job(app.db, accepted["job_id"])["status"] == "queued"
    # ... its processor fails it out_of_stock and gives the money back, and the books close with the gateway's
    drain(app)
    assert (_job(app.db, accepted["job_id"])["status"], _job(app.db, accepted["job_id"])["reason"]) == (
        "failed",
        "out_of_stock",
    )
    assert ledger_violations(app, sim) == {}


# --- 2. sold out known at once ----------------------------------------------------------------------


def test_a_cancel_racing_the_bulk_end_ends_the_job_once(
    app: App, sale: int, holder: psycopg2.extensions.connection
) -> None:
    # Given the hot product sold out with its buyers in line, and a bulk end running (not committed)
    jobs = {user: pay(app, user, f"k-{user}").body["job_id"] for user in HOLDERS}
    app.db.execute("UPDATE products SET stock = 0 WHERE id = %s", (sale,))
    with holder.cursor() as cur:
        cur.execute("SELECT count(*) FROM pq_end_sold_out_jobs(ARRAY[%s]::bigint[], 1000)", (sale,))
        assert cur.fetchone() == (len(HOLDERS),)

        # When one of them cancels meanwhile
        racing = _Blocked(lambda: cancel_job(app, "demo-user-4", jobs["demo-user-4"]))
        wait_for_a_lock_wait(app, "pq_leave_line")
        holder.commit()
    racing.join()

    # Then the cancel waited and answers how the job ended; it ended once, with one event
    assert isinstance(racing.error, DomainError)
    assert (racing.error.code, racing.error.details["reason"]) == ("job_finished", "out_of_stock")
    assert app.db.fetch_one("SELECT count(*) AS n FROM outbox_events WHERE job_id = %s", (jobs["demo-user-4"],)) == {
        "n": 1
    }
    _settle(app)
    _whole(app.db)


def test_a_bulk_end_racing_a_cancel_in_progress_skips_that_job_and_ends_the_rest(
    app: App, sale: int, holder: psycopg2.extensions.connection
) -> None:
    # Given the hot product sold out with its buyers in line, and one buyer's cancel in progress
    jobs = {user: pay(app, user, f"k-{user}").body["job_id"] for user in HOLDERS}
    app.db.execute("UPDATE products SET stock = 0 WHERE id = %s", (sale,))
    with holder.cursor() as cur:
        cur.execute("SELECT outcome FROM pq_leave_line('demo-user-4', %s, true)", (jobs["demo-user-4"],))
        assert cur.fetchone() == ("cancelled",)

        # When the bulk end runs meanwhile
        ended = end_sold_out_jobs(app, [sale])
        holder.commit()

    # Then it ended the others without waiting, and the cancelled one is cancelled, each job ended once
    assert ended == len(HOLDERS) - 1
    reasons = {u: _job(app.db, j)["reason"] for u, j in jobs.items()}
    assert reasons == {u: "cancelled" if u == "demo-user-4" else "out_of_stock" for u in HOLDERS}
    assert end_sold_out_jobs(app, None) == 0
    _settle(app)
    _whole(app.db)


def test_a_bulk_end_racing_the_processor_that_takes_the_last_unit_never_oversells(
    app: App, sale: int, holder: psycopg2.extensions.connection
) -> None:
    # Given the whole line of the hot product, and a processor in the middle of paying its first buyer
    # (the last unit taken, not committed)
    stock = snapshot_stock(app.db)
    jobs = {user: pay(app, user, f"k-{user}").body["job_id"] for user in HOLDERS}
    with holder.cursor() as cur:
        cur.execute("SELECT outcome, sold_out FROM pq_process_payment(%s)", (jobs["demo-user-2"],))
        assert cur.fetchone() == ("succeeded", [sale])

        # When the sweeper's bulk end runs meanwhile, it does not yet see the product sold out
        assert end_sold_out_jobs(app, None) == 0
        holder.commit()

    # Then the after-batch step (here called as the processor does) ends the rest; nothing oversold
    assert end_sold_out_jobs(app, [sale]) == len(HOLDERS) - 1
    _settle(app)
    assert {u: _job(app.db, j)["status"] for u, j in jobs.items()} == {
        u: "succeeded" if u == "demo-user-2" else "failed" for u in HOLDERS
    }
    _whole(app.db, stock)


def test_a_bulk_end_racing_a_processor_stalled_behind_a_wallet_credit_leaves_that_job_to_it(
    app: App, sale: int, holder: psycopg2.extensions.connection
) -> None:
    # Given the hot product's buyers in line, and a merchant's credit to demo-user-4's wallet in progress
    # (the wallet row locked), which the processor paying demo-user-4's job is waiting on
    stock = snapshot_stock(app.db)
    jobs = {user: pay(app, user, f"k-{user}").body["job_id"] for user in HOLDERS}
    with holder.cursor() as cur:
        cur.execute(
            """SELECT outcome
                 FROM pq_merchant_adjust_wallet('shop', 'refund-1', 'h', 'demo-user-4', 2500, NULL, 'refund')"""
        )
        assert cur.fetchone() == ("adjusted",)
        stalled = _Blocked(lambda: process_wallet_job(app, jobs["demo-user-4"]))
        wait_for_a_lock_wait(app, "pq_process_payment")

        # When another processor takes the last unit and the bulk end runs meanwhile
        assert process_wallet_job(app, jobs["demo-user-2"]).sold_out == (sale,)
        ended = end_sold_out_jobs(app, [sale])
        holder.commit()
    stalled.join()

    # Then the bulk end ended the others without waiting and left the held job to its processor, which
    # failed it out_of_stock once the credit committed: credited, not charged, nothing oversold
    assert ended == 2
    assert stalled.error is None and (stalled.result.outcome, stalled.result.reason) == ("failed", "out_of_stock")
    assert {u: _job(app.db, j)["reason"] for u, j in jobs.items()} == {
        u: None if u == "demo-user-2" else "out_of_stock" for u in HOLDERS
    }
    wallet = app.db.fetch_one("SELECT balance_paise FROM wallets WHERE user_id = 'demo-user-4'")
    assert wallet == {"balance_paise": HOT.balance_paise + 2500}
    _settle(app)
    _whole(app.db, stock)


def test_a_restocked_product_is_sold_again_and_its_buyers_are_not_refused(app: App, sale: int) -> None:
    # Given the hot product sold out (its last unit paid), and a buyer refused 409 sold_out
    stock = snapshot_stock(app.db)
    process_wallet_job(app, pay(app, "demo-user-2", "k2").body["job_id"])
    assert _refusal(pay, app, "demo-user-4", "k4").code == "sold_out"

    # When an operator restocks it with two units
    app.db.execute("UPDATE products SET stock = stock + 2 WHERE id = %s", (sale,))
    stock[sale] += 2

    # Then the same request (same key: the refusal recorded nothing) is accepted, and so is another buyer's;
    # the sweeper ends no one, and both are paid
    accepted = [pay(app, user, f"k{user[-1]}").body for user in ("demo-user-4", "demo-user-5")]
    assert [a["status"] for a in accepted] == ["queued", "queued"]
    assert sweeper_handler({}, LocalContext("sweeper"))["sold_out_jobs_ended"] == 0
    drain_line(app)
    assert [_job(app.db, a["job_id"])["status"] for a in accepted] == ["succeeded", "succeeded"]
    # And the product sold out again: the next buyer is refused at once
    assert _refusal(pay, app, "demo-user-6", "k6").code == "sold_out"
    _no_violations(app.db, stock)


def test_a_sharded_product_restocked_in_its_shards_is_sold_again(app: App, db: Database) -> None:
    # Given the hot product's single unit in one of three shards, paid: sold out
    seed(db, dataclasses.replace(HOT, hot_shards=3))
    hot = db.fetch_one("SELECT min(id) AS id FROM products")
    assert hot is not None
    stock = snapshot_stock(db)
    process_wallet_job(app, pay(app, "demo-user-2", "k2").body["job_id"])
    assert _refusal(pay, app, "demo-user-4", "k4").code == "sold_out"

    # When an operator adds a unit to a shard
    db.execute("UPDATE product_stock_shards SET stock = stock + 1 WHERE product_id = %s AND shard = 0", (hot["id"],))
    stock[hot["id"]] += 1

    # Then a buyer is accepted and paid
    job = pay(app, "demo-user-4", "k4").body["job_id"]
    _settle(app)  # the first payment's event (paid here outside a batch)
    assert _job(db, job)["status"] == "succeeded"
    _no_violations(db, stock)


def test_a_bulk_end_keeps_a_shoppers_jobs_in_order_when_their_first_is_cancelled(app: App, sale: int) -> None:
    # Given a shopper with an earlier job (no hot product) and a later one holding the sold-out product
    app.db.execute(
        """UPDATE orders SET (items, total_paise) =
                  (SELECT items, total_paise FROM orders WHERE user_id = 'demo-user-1')
            WHERE user_id = 'demo-user-3'"""
    )
    first = pay(app, "demo-user-3", "k-first").body["job_id"]
    hot_order = app.db.fetch_one(
        """INSERT INTO orders (user_id, items, total_paise)
           SELECT 'demo-user-3', items, total_paise FROM orders WHERE user_id = 'demo-user-4' RETURNING id"""
    )
    assert hot_order is not None
    later = pay(app, "demo-user-3", "k-later", int(hot_order["id"])).body["job_id"]
    app.db.execute("UPDATE products SET stock = 0 WHERE id = %s", (sale,))

    # When the bulk end runs: the later job waits behind the earlier one
    assert end_sold_out_jobs(app, [sale]) == 0
    # and when the shopper cancels the earlier one, the next bulk end ends the later one
    cancel_job(app, "demo-user-3", first)
    assert end_sold_out_jobs(app, [sale]) == 1

    assert (_job(app.db, later)["status"], _job(app.db, later)["reason"]) == ("failed", "out_of_stock")
    drain_line(app)
    _no_violations(app.db)


# --- 3. the now-serving figure and positions -----------------------------------------------------------


def test_positions_only_fall_as_shoppers_leave_and_the_figure_counts_each_end_once(app: App, sale: int) -> None:
    # Given the hot product's buyers in line, and demo-user-1 (no hot product) waiting behind them
    jobs = {user: pay(app, user, f"k-{user}").body["job_id"] for user in HOLDERS}
    waiting = pay(app, "demo-user-1", "k1").body

    def position() -> int:
        return int(call(status_handler, "GET", f"/v1/payments/{waiting['job_id']}", user="demo-user-1")[1]["position"])

    seen = [waiting["position"], position()]

    # When one buyer cancels, and the rest are ended by the sold-out bulk end (run twice, as the processor's
    # after-batch step and the sweeper both may)
    app.db.execute("UPDATE products SET stock = 0 WHERE id = %s", (sale,))
    cancel_job(app, "demo-user-5", jobs["demo-user-5"])
    seen.append(position())
    ended = end_sold_out_jobs(app, [sale]) + end_sold_out_jobs(app, None)
    seen.append(position())
    figure = call(status_handler, "GET", "/v1/queue/now-serving", user=None)[1]

    # Then the shared figure moved the waiting shopper up by exactly the shoppers who left ahead of them (the
    # line's front, now theirs, has passed every one), and the job's own answers, which count only the jobs
    # that ended in their turn, never put them lower (migration 0024) nor moved them back; the counter moved
    # once per job that ended
    assert ended == len(HOLDERS) - 1
    assert seen == [5, 5, 5, 5]
    assert max(1, waiting["queue_number"] - figure["serving"]) == 1
    _finished_counter_matches_the_books(app.db)


def test_a_shopper_who_leaves_behind_you_moves_you_up_nothing_and_one_ahead_does_once_the_front_passes(
    app: App, demo: dict[str, int]
) -> None:
    # Given three shoppers in line, in order. Found by a review: each end moved everyone up, so one that left
    # behind you moved you up too (a sold-out bulk end of a thousand holders behind you: a thousand places)
    first, middle, last = (pay(app, f"demo-user-{i}", f"k{i}").body for i in (1, 2, 3))
    assert (first["position"], middle["position"], last["position"]) == (1, 2, 3)

    def places() -> tuple[int, int]:
        """The middle shopper's place by their job's answer, and by the shared figure."""
        job = call(status_handler, "GET", f"/v1/payments/{middle['job_id']}", user="demo-user-2")[1]
        figure = call(status_handler, "GET", "/v1/queue/now-serving", user=None)[1]
        return int(job["position"]), max(1, middle["queue_number"] - figure["serving"])

    # When the last one leaves the line: the middle one is still second, by either measure
    cancel_job(app, "demo-user-3", last["job_id"])
    assert places() == (2, 2)
    figure = call(status_handler, "GET", "/v1/queue/now-serving", user=None)[1]
    assert figure["per_s"] is None  # a leaver is not the line moving

    # When the first one leaves too, the line's front passes them: the figure moves the middle one up
    cancel_job(app, "demo-user-1", first["job_id"])
    assert places() == (2, 1)

    # And when the line is served (the middle one paid in its turn), the figure counts it and nothing goes back
    _settle(app)
    assert _job(app.db, middle["job_id"])["status"] == "succeeded"
    after = call(status_handler, "GET", "/v1/queue/now-serving", user=None)[1]
    assert after["serving"] == 3 and after["serving"] >= figure["serving"]
    _whole(app.db)


def test_a_rolled_back_bulk_end_moves_no_one_up_the_line(
    app: App, sale: int, holder: psycopg2.extensions.connection
) -> None:
    # Found by the review: the finished counter was a sequence, which never rolls back, so a bulk end cut
    # off by its statement timeout (or a lost connection) moved every waiting shopper up for good. It is
    # now line_finished (migration 0022), updated in the ending transaction.
    # Given a shopper waiting behind the hot product's buyers, the product sold out
    waiting = pay(app, "demo-user-1", "k1").body
    for user in HOLDERS:
        pay(app, user, f"k-{user}")
    app.db.execute("UPDATE products SET stock = 0 WHERE id = %s", (sale,))
    before = call(status_handler, "GET", f"/v1/payments/{waiting['job_id']}", user="demo-user-1")[1]

    # When a bulk end runs and is rolled back (a statement timeout, a lost connection)
    with holder.cursor() as cur:
        cur.execute("SELECT count(*) FROM pq_end_sold_out_jobs(ARRAY[%s]::bigint[], 1000)", (sale,))
        assert cur.fetchone() == (len(HOLDERS),)
    holder.rollback()

    # Then nothing ended, and nobody moved: the figure still counts only the jobs that ended
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_jobs WHERE finished_at IS NOT NULL") == {"n": 0}
    after = call(status_handler, "GET", f"/v1/payments/{waiting['job_id']}", user="demo-user-1")[1]
    figure = call(status_handler, "GET", "/v1/queue/now-serving", user=None)[1]
    assert figure["serving"] == 0
    assert after["position"] == before["position"]


def test_the_shared_figure_never_shows_a_shopper_a_place_further_back_than_their_job_did(
    app: App, demo: dict[str, int], tmp_path: Path
) -> None:
    # Found by the review: a figure from the shared cache (up to NOW_SERVING_CACHE_S old; CloudFront on AWS)
    # can carry a smaller serving than the one a 202 or job view measured its position against, and a
    # client measuring against it saw its place go back. The view now carries its serving
    # (shared/services/reads.py) and a client keeps the largest it has seen (bench/client.py, progress.js).
    issuer = LocalIssuer(tmp_path / "key.pem", "https://issuer.test", "payments")

    class StillClock:
        now = 1000.0

        def __call__(self) -> float:
            return self.now

    api = LocalApi(issuer, clock=StillClock())

    async def run() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with TestClient(TestServer(build_app(api))) as client:

            async def figure() -> dict[str, Any]:
                async with client.get("/v1/queue/now-serving") as resp:
                    assert resp.status == 200
                    return dict(json.loads(await resp.text()))

            # Given two shoppers in line and the figure read (and cached) by some waiting client
            first = pay(app, "demo-user-1", "k1").body
            pay(app, "demo-user-2", "k2")
            cached = await figure()
            # When the first is paid, and a third shopper joins and polls the figure within the same second
            process_wallet_job(app, first["job_id"])
            accepted = pay(app, "demo-user-3", "k3").body
            return cached, accepted, await figure()

    cached, accepted, polled = asyncio.run(run())

    # Then the figure read is the older, cached one, the 202 says which counter its position was measured
    # against, and measured against the largest serving seen the third shopper's place is not further back
    assert polled == cached  # answered from the shared cache, as designed
    assert polled["serving"] < accepted["serving"]
    assert accepted["position"] == max(1, accepted["queue_number"] - accepted["serving"])
    assert max(1, accepted["queue_number"] - max(accepted["serving"], polled["serving"])) <= accepted["position"]


# --- 4. enqueue in one round trip, and the sweeper's resend rule -------------------------------------


@pytest.mark.parametrize("how", ["cancelled", "sold_out"])
def test_the_sweeper_never_sends_a_job_that_left_the_line(app: App, demo: dict[str, int], how: str) -> None:
    # Given a job an SQS intake left unconfirmed long ago (sent_at NULL) in a stalled line, that left the line
    job = _unconfirmed(app.db, "demo-user-1", "k1", 100)
    if how == "cancelled":
        cancel_job(app, "demo-user-1", job)
    else:
        # (what pq_enqueue_job records for the bulk end to find it by)
        app.db.execute(
            """UPDATE payment_jobs j SET product_ids = pq_item_products(o.items)
                 FROM orders o WHERE o.id = j.order_id AND j.id = %s""",
            (job,),
        )
        set_stock_of_order(app, _order_of_job(app.db, job), 0)
        assert end_sold_out_jobs(app, None) == 1

    # When the sweeper runs
    swept = sweep(dataclasses.replace(app, settings=app.settings.model_copy(update={"sweep_after_s": N})))

    # Then the job is not sent: no message is made for a job that has ended
    assert swept["jobs_resent"] == 0
    assert app.db.fetch_one("SELECT count(*) AS n FROM pgmq.q_payments") == {"n": 0}
    assert _job(app.db, job)["sent_at"] is not None


def _order_of_job(db: Database, job_id: str) -> int:
    row = db.fetch_one("SELECT order_id FROM payment_jobs WHERE id = %s", (job_id,))
    assert row is not None
    return int(row["order_id"])


def _swept(db: Database) -> set[str]:
    return {str(r["id"]) for r in db.fetch_all("SELECT id FROM pq_unsent_jobs(%s, 500)", (N,))}


@pytest.mark.parametrize("how", ["cancelled", "sold_out"])
def test_a_shopper_leaving_at_the_back_does_not_make_the_sweeper_resend_the_line(
    app: App, demo: dict[str, int], how: str
) -> None:
    # Found by the review: pq_unsent_jobs took the line's front to be the newest job that ended lately, and
    # a job that left the line (cancelled, or the sold-out bulk end) ends at the back, so one such end made
    # the sweeper resend every unconfirmed (SQS) job. Such ends are now marked (payment_jobs.left_line,
    # migration 0022) and the front is measured without them.
    # Given a job sent 100 s ago but unconfirmed (SQS), waiting its turn: the line's front (the newest job
    # to end in the last N s) was accepted 110 s ago, so the line has not reached it
    waiting = _unconfirmed(app.db, "demo-user-1", "k1", 100)
    front = _unconfirmed(app.db, "demo-user-2", "k2", 110)
    process_wallet_job(app, front)
    assert waiting not in _swept(app.db)

    # When a shopper who joined just now leaves the line (cancels, or their product sells out)
    late = pay(app, "demo-user-3", "k3").body["job_id"]
    if how == "cancelled":
        cancel_job(app, "demo-user-3", late)
    else:
        set_stock_of_order(app, _order_of_job(app.db, late), 0)
        assert end_sold_out_jobs(app, None) == 1

    # Then the waiting job is still not sent again: the line has not moved past it
    assert waiting not in _swept(app.db)


def test_sold_out_refusals_and_a_replay_of_an_ended_job_send_no_message(app: App, sale: int) -> None:
    # Given the hot product sold out
    paid_order = pending_order(app.db, "demo-user-2")
    process_wallet_job(app, pay(app, "demo-user-2", "k2", paid_order).body["job_id"])
    drain_line(app)
    before = row_counts(app.db)

    # When its buyers ask to pay (one twice) and a shopper whose job ended asks again
    for user, key in (("demo-user-4", "k4"), ("demo-user-4", "k4"), ("demo-user-6", "k6")):
        assert _refusal(pay, app, user, key).code == "sold_out"
    assert pay(app, "demo-user-2", "k2", paid_order).replayed

    # Then no job, no message, no event was made
    assert row_counts(app.db) == before


# --- DLQ: a cancelled job's message redelivered ----------------------------------------------------


def test_a_dead_lettered_job_cancelled_then_redriven_is_acknowledged_without_work(
    app: App, demo: dict[str, int]
) -> None:
    # Given a job whose message went to the DLQ (recorded as the processor does)
    stock = snapshot_stock(app.db)
    job = pay(app, "demo-user-1", "k1").body["job_id"]
    dead = dead_letter_everything(app)
    app.db.execute(
        "SELECT pq_record_delivery_failure(%s, %s, 10, 'TransientError', 'x', true)", (job, str(dead[0]["msg_id"]))
    )
    before = row_counts(app.db)

    # When the shopper leaves the line (their job shows no place in line: it waits for an operator)
    left = cancel_job(app, "demo-user-1", job)
    # and the operator, later, cannot drop it by id (it has ended) but redrives the DLQ
    dropped = _refusal(drop_dead_letter, app, job, "ops")
    moved = app.queue.redrive()
    drain_line(app)

    # Then the job stays cancelled and its redriven message was consumed without charging anything
    assert (left["status"], left["reason"]) == ("failed", "cancelled")
    assert (dropped.code, moved.moved) == ("job_not_dead_lettered", 1)
    stats = app.queue.stats()
    assert (stats.depth, stats.dlq_depth) == (0, 0)
    after = row_counts(app.db)
    assert {k: after[k] for k in ("payments", "wallet_txs", "balances", "stock")} == {
        k: before[k] for k in ("payments", "wallet_txs", "balances", "stock")
    }
    _no_violations(app.db, stock)


def test_a_job_in_the_dlq_holds_no_place_at_the_front_of_the_line(app: App, demo: dict[str, int]) -> None:
    # Given three shoppers in line: the first one's message runs out of deliveries and sits in the DLQ (its
    # job stays queued, waiting for an operator), and the second leaves the line
    first, second, third = (pay(app, f"demo-user-{i}", f"k{i}").body for i in (1, 2, 3))
    head = receive(app, qty=1)
    assert [m["message"]["job_id"] for m in head] == [first["job_id"]]
    dead_letter(app.db, head, queue="payments", dlq="payments_dlq")
    cancel_job(app, "demo-user-2", second["job_id"])

    # When the line is served: the third one's job is paid in its turn
    drain_line(app)
    assert _job(app.db, third["job_id"])["status"] == "succeeded"

    # Then the shared figure has passed the leaver: the job stuck in the DLQ (its failure never recorded, as
    # when its processor kept dying on it) does not hold the line's front back. Found by a review: it did, and
    # no leaver behind it was ever counted (a served shopper's number never came up)
    figure = call(status_handler, "GET", "/v1/queue/now-serving", user=None)[1]
    assert third["queue_number"] - figure["serving"] <= 1


def test_a_shopper_who_joins_after_others_left_is_told_their_exact_place_and_keeps_it(
    app: App, demo: dict[str, int]
) -> None:
    # Given three shoppers in line, the first of whom leaves
    first, _, _ = (pay(app, f"demo-user-{i}", f"k{i}").body for i in (1, 2, 3))
    cancel_job(app, "demo-user-1", first["job_id"])

    # When a fourth job joins (the first shopper, back with another order): two are ahead of it
    joined = pay(app, "demo-user-1", "k4", second_order(app.db, "demo-user-1")).body
    read = call(status_handler, "GET", f"/v1/payments/{joined['job_id']}", user="demo-user-1")[1]

    # Then their 202 and their reads say third, as the shared figure does: every job that had ended when they
    # were accepted was ahead of them (payment_jobs.ended_ahead), a leaver among them
    figure = call(status_handler, "GET", "/v1/queue/now-serving", user=None)[1]
    assert joined["position"] == read["position"] == 3 == joined["queue_number"] - figure["serving"]

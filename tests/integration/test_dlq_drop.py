"""The operator drops a poison message from the DLQ (POST /v1/dlq/jobs/{job_id}/drop): the job ends failed,
recorded with who and when, idempotent; refused for a job not in the DLQ and for a gateway job whose money
would leave the books."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from functions.status.handler import handler as status_handler
from local.gateway_sim import Simulator
from local.invariants import check
from local.workers import dead_letter
from shared.bootstrap import App
from shared.gateways.razorpay import Razorpay
from shared.services.intake import accept_payment, job_message
from shared.services.wallet import process_wallet_job
from shared.settings import Settings
from tests.integration.gateway_helpers import (
    WebhookInbox,
    drain,
    jobs,
    no_violations,
    open_for,
    pay_at_gateway,
    pay_gateway,
    payment_request,
    pgmq_gateway_settings,
    set_stock_of_order,
)
from tests.integration.helpers import deliver, pay, receive
from tests.integration.test_api_handlers import OPERATOR, call

GHOST = "00000000-0000-4000-8000-00000000dead"


@pytest.fixture
def settings(database_url: str, sim: Simulator) -> Settings:
    return pgmq_gateway_settings(database_url, sim)


def drop(job_id: str, operator: str = "ops") -> tuple[int, dict[str, Any]]:
    status, body, _ = call(status_handler, "POST", f"/v1/dlq/jobs/{job_id}/drop", user=operator, scopes=[OPERATOR])
    return status, body


def poison_job(app: App, user: str = "demo-user-1") -> str:
    """A wallet job whose message says it is a Razorpay payment: the gateway path finds no gateway payment
    (not_a_gateway_job) and the processor moves it to the DLQ at first sight, recording it there."""
    job_id = str(pay(app, user, f"poison-{user}").body["job_id"])
    app.db.execute(
        "UPDATE pgmq.q_payments SET message = message || '{\"method\": \"razorpay\"}' WHERE headers->>'job_id' = %s",
        (job_id,),
    )
    deliver(app, receive(app))
    assert app.queue.stats().dlq_depth == 1
    return job_id


def job(app: App, job_id: str) -> dict[str, Any]:
    row = app.db.fetch_one("SELECT status, reason, dead_lettered_at FROM payment_jobs WHERE id = %s", (job_id,))
    assert row is not None
    return row


def order_total(app: App, job_id: str) -> int:
    row = app.db.fetch_one(
        "SELECT o.total_paise FROM orders o JOIN payment_jobs j ON j.order_id = o.id WHERE j.id = %s", (job_id,)
    )
    assert row is not None
    return int(row["total_paise"])


def dead_letter_in_db(app: App, job_id: str) -> None:
    """What the processor does when a job's last allowed delivery fails: its message goes to the DLQ and
    the failure is recorded as dead-lettered."""
    messages = [m for m in receive(app) if m["headers"]["job_id"] == job_id]
    for message in messages:
        app.db.execute(
            f"SELECT pq_record_delivery_failure(%s, %s, {app.settings.max_receive_count}, 'GatewayRetryable', "
            "'gateway unavailable', true)",
            (job_id, str(message["msg_id"])),
        )
    dead_letter(app.db, messages, queue="payments", dlq="payments_dlq")


def test_an_operator_drops_a_poison_job_which_ends_failed_with_who_and_when(app: App, demo: dict[str, int]) -> None:
    # Given a job whose message can never succeed, in the DLQ, listed on the operator's view
    job_id = poison_job(app)
    _, queue, _ = call(status_handler, "GET", "/v1/queue/status", scopes=[OPERATOR])
    assert [j["job_id"] for j in queue["dlq_jobs"]] == [job_id]

    # When the operator drops it
    status, body = drop(job_id)

    # Then the job has ended failed, dropped by that operator, and its message is gone from the DLQ
    assert status == 200, body
    assert body | {"dropped_at": None} == {
        "job_id": job_id,
        "status": "failed",
        "reason": "dropped_by_operator",
        "status_when_dropped": "queued",
        "dropped_by": "ops",
        "dropped_at": None,
    }
    recorded = app.db.fetch_one("SELECT dropped_by, dropped_at FROM dead_letter_drops WHERE job_id = %s", (job_id,))
    assert recorded is not None and recorded["dropped_by"] == "ops"
    assert recorded["dropped_at"].isoformat() == body["dropped_at"]
    assert job(app, job_id)["status"] == "failed"
    assert app.queue.stats().dlq_depth == 0
    _, queue, _ = call(status_handler, "GET", "/v1/queue/status", scopes=[OPERATOR])
    assert queue["dlq_jobs"] == [] and queue["dlq_depth"] == 0

    # And the shopper and the shop hear of it as of any failed payment, and no job is lost
    _, view, _ = call(status_handler, "GET", f"/v1/payments/{job_id}")
    assert (view["status"], view["reason"]) == ("failed", "dropped_by_operator")
    event = app.db.fetch_one("SELECT event_type, payload FROM outbox_events WHERE job_id = %s", (job_id,))
    assert event is not None and event["event_type"] == "PaymentFailed"
    assert event["payload"]["reason"] == "dropped_by_operator"
    no_violations(app)


def test_dropping_twice_answers_the_first_drop_and_changes_nothing(app: App, demo: dict[str, int]) -> None:
    # Given a job an operator dropped
    job_id = poison_job(app)
    first = drop(job_id, operator="ops")
    finished = app.db.fetch_one("SELECT pq_finished_count() AS n")

    # When the drop is sent again, by another operator too
    again = drop(job_id, operator="ops")
    other = drop(job_id, operator="ops-2")

    # Then each answer is the first one, and nothing more ended or was published
    assert first[0] == 200 and again == first and other == first
    assert app.db.fetch_one("SELECT pq_finished_count() AS n") == finished
    assert app.db.fetch_one("SELECT count(*) AS n FROM outbox_events WHERE job_id = %s", (job_id,)) == {"n": 1}
    assert app.db.fetch_one("SELECT count(*) AS n FROM dead_letter_drops") == {"n": 1}


def test_a_drop_whose_delete_was_lost_deletes_the_message_when_sent_again(app: App, demo: dict[str, int]) -> None:
    # Given a job dropped while its message stayed in the DLQ (the delete after the commit never happened)
    job_id = poison_job(app)
    app.db.execute("SELECT pq_drop_dead_letter(%s, 'ops', true)", (job_id,))
    assert app.queue.stats().dlq_depth == 1 and job(app, job_id)["status"] == "failed"

    # When the operator drops it again
    status, body = drop(job_id)

    # Then the same drop is answered and the message is deleted now
    assert (status, body["dropped_by"], body["reason"]) == (200, "ops", "dropped_by_operator")
    assert app.queue.stats().dlq_depth == 0


def test_a_message_naming_a_job_that_does_not_exist_is_dropped_as_unknown(app: App, demo: dict[str, int]) -> None:
    # Given a message naming a job we never recorded, sent to the DLQ at first sight
    app.queue.send([job_message(GHOST, "demo-user-1", 1, "wallet")])
    deliver(app, receive(app))
    assert app.queue.stats().dlq_depth == 1

    # When the operator drops it, twice
    first = drop(GHOST)
    again = drop(GHOST)

    # Then it is gone from the DLQ and the view, recorded as a job of unknown status
    assert first == again and first[0] == 200
    assert (first[1]["status"], first[1]["reason"], first[1]["status_when_dropped"]) == ("unknown", None, "unknown")
    assert app.queue.stats().dlq_depth == 0
    _, queue, _ = call(status_handler, "GET", "/v1/queue/status", scopes=[OPERATOR])
    assert queue["dlq_jobs"] == []


@pytest.mark.parametrize("job_id", ["not-a-uuid", "1", str(uuid.UUID(int=7))])
def test_a_job_id_that_names_nothing_is_404_job_not_found(app: App, demo: dict[str, int], job_id: str) -> None:
    status, body = drop(job_id)

    assert (status, body["error"]["code"]) == (404, "job_not_found")
    assert app.db.fetch_one("SELECT count(*) AS n FROM dead_letter_drops") == {"n": 0}


def test_a_job_waiting_in_line_is_not_dropped(app: App, demo: dict[str, int]) -> None:
    # Given a job waiting in line, its message in the queue
    job_id = str(pay(app, "demo-user-1", "k1").body["job_id"])

    # When the operator tries to drop it
    status, body = drop(job_id)

    # Then it is refused: the job stays in line, its message where it was
    assert (status, body["error"]["code"]) == (409, "job_not_dead_lettered")
    assert body["error"]["details"]["job_status"] == "queued"
    assert job(app, job_id)["status"] == "queued" and app.queue.stats().depth == 1
    assert process_wallet_job(app, job_id).outcome == "succeeded"


def test_a_finished_job_is_not_dropped(app: App, demo: dict[str, int]) -> None:
    job_id = str(pay(app, "demo-user-1", "k1").body["job_id"])
    process_wallet_job(app, job_id)

    status, body = drop(job_id)

    assert (status, body["error"]["code"]) == (409, "job_not_dead_lettered")
    assert body["error"]["details"] == {"job_status": "succeeded", "reason": None}


def test_the_drop_route_needs_the_operator_scope(app: App, demo: dict[str, int]) -> None:
    job_id = poison_job(app)

    status, body, _ = call(status_handler, "POST", f"/v1/dlq/jobs/{job_id}/drop", scopes=["payments/pay"])

    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert job(app, job_id)["status"] == "queued" and app.queue.stats().dlq_depth == 1


def test_a_gateway_job_whose_payment_was_never_read_is_not_dropped(
    app: App, demo: dict[str, int], sim: Simulator
) -> None:
    # Given a Razorpay job the shopper paid at the gateway, dead-lettered before any delivery read its payment
    job_id = str(pay_gateway(app, sim, "demo-user-1", "razorpay").body["job_id"])
    dead_letter_in_db(app, job_id)

    # When the operator tries to drop it
    status, body = drop(job_id)

    # Then it is refused: the money the gateway may hold is in no book of ours yet; the job stays in the DLQ
    assert (status, body["error"]["code"]) == (409, "gateway_money_unsettled")
    assert body["error"]["details"] == {"job_status": "queued", "money": None}
    assert job(app, job_id)["status"] == "queued" and app.queue.stats().dlq_depth == 1
    assert app.db.fetch_one("SELECT count(*) AS n FROM dead_letter_drops") == {"n": 0}
    no_violations(app)


def test_a_gateway_job_whose_payment_an_earlier_job_released_and_the_gateway_then_captured_is_not_dropped(
    app: App, demo: dict[str, int], sim: Simulator, inbox: WebhookInbox
) -> None:
    # Given a Razorpay payment whose first job ended out of stock and released its authorisation, which Razorpay
    # then captured after all (the account's capture settings): a second job is made for it, and dead-lettered
    # before any delivery of it read the payment
    view = open_for(app, "demo-user-1", "razorpay")
    handed = pay_at_gateway(sim, view)
    accept_payment(app, "demo-user-1", "k1", payment_request(view, handed))
    set_stock_of_order(app, view["order_id"], 0)
    inbox.deliver()
    drain(app)
    app.db.execute("UPDATE products SET stock = 100")
    razorpay = app.gateways["razorpay"]
    assert isinstance(razorpay, Razorpay)
    razorpay.api.capture(handed["razorpay_payment_id"], view["amount_paise"], "INR")
    inbox.deliver()
    second = str(jobs(app.db)[1]["id"])
    dead_letter_in_db(app, second)

    # When the operator tries to drop it
    status, body = drop(second)

    # Then it is refused: the books the first job left (nothing captured, released) say nothing of the money
    # the second holds (a review found the drop leaving ₹150 captured in no book)
    assert (status, body["error"]["code"]) == (409, "gateway_money_unsettled")
    assert body["error"]["details"]["money"]["captured_paise"] == 0
    assert job(app, second)["status"] == "queued"
    assert app.db.fetch_one("SELECT count(*) AS n FROM dead_letter_drops") == {"n": 0}


def test_a_gateway_job_whose_captured_money_is_held_is_not_dropped(
    app: App, demo: dict[str, int], sim: Simulator
) -> None:
    # Given a dead-lettered gateway job whose captured payment is in the books, neither applied nor refunded
    job_id = str(pay_gateway(app, sim, "demo-user-1", "razorpay").body["job_id"])
    total = order_total(app, job_id)
    app.db.execute("SELECT pq_payment_seen(j, 'INR', 0, %s) FROM payment_jobs j WHERE j.id = %s", (total, job_id))
    dead_letter_in_db(app, job_id)

    # When the operator tries to drop it
    status, body = drop(job_id)

    # Then it is refused, saying where the money is
    assert (status, body["error"]["code"]) == (409, "gateway_money_unsettled")
    money = body["error"]["details"]["money"]
    assert (money["captured_paise"], money["applied_paise"], money["refunded_paise"]) == (total, 0, 0)
    assert job(app, job_id)["status"] == "queued" and app.queue.stats().dlq_depth == 1


def test_a_gateway_job_dead_lettered_mid_refund_is_dropped_and_its_refund_stays_in_the_books(
    app: App, demo: dict[str, int], sim: Simulator
) -> None:
    # Given a gateway job whose captured payment is being refunded (its order could not be fulfilled) when
    # its deliveries ran out
    job_id = str(pay_gateway(app, sim, "demo-user-1", "razorpay").body["job_id"])
    total = order_total(app, job_id)
    app.db.execute("SELECT * FROM pq_gateway_begin(%s, 100, 100)", (job_id,))
    app.db.execute(
        "SELECT * FROM pq_refund_request(%s, %s, 'INR', 'out_of_stock', %s)",
        (job_id, total, total),
    )
    dead_letter_in_db(app, job_id)

    # When the operator drops it
    status, body = drop(job_id)

    # Then the job ends, and its money stays on the books, on its way back to the shopper
    assert (status, body["status"], body["status_when_dropped"]) == (200, "failed", "processing")
    books = app.db.fetch_one(
        "SELECT captured_paise, refunding_paise, unaccounted_paise FROM pq_gateway_books() WHERE job_id = %s",
        (job_id,),
    )
    assert books == {
        "captured_paise": total,
        "refunding_paise": total,
        "unaccounted_paise": 0,
    }
    assert check(app.db)["lost_jobs"] == 0
    assert app.queue.stats().dlq_depth == 0
    _, view, _ = call(status_handler, "GET", f"/v1/payments/{job_id}")
    assert view["refund"] == {"status": "refunding", "amount_paise": total}

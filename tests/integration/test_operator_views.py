"""What the operator's views count: an error is ours (a failed delivery), never a declined payment; and the
DLQ's job list agrees with its depth after a redrive."""

from __future__ import annotations

from functions.status.handler import handler as status_handler
from local.workers import dead_letter
from shared.bootstrap import App
from shared.services.wallet import process_wallet_job
from tests.integration.helpers import pay, receive
from tests.integration.test_api_handlers import OPERATOR, call


def test_a_declined_payment_is_no_error_and_a_failed_delivery_is(app: App, demo: dict[str, int]) -> None:
    # Given one payment declined (the wallet holds too little), one paid, and one delivery that failed
    app.db.execute("UPDATE wallets SET balance_paise = 100 WHERE user_id = 'demo-user-1'")
    for i in (1, 2):
        process_wallet_job(app, pay(app, f"demo-user-{i}", f"k{i}").body["job_id"])
    app.db.execute("SELECT pq_record_delivery_failure(NULL, 'm-1', 1, 'OperationalError', 'database away', false)")

    # When the operator reads the metrics
    status, body, _ = call(status_handler, "GET", "/v1/metrics", user="ops", scopes=[OPERATOR])

    # Then the decline is a decline, and the error rate counts the failed delivery of the three deliveries
    assert status == 200
    minute = body["windows"]["1m"]
    assert (minute["processed"], minute["failed"], minute["decline_rate"]) == (2, 1, 0.5)
    assert (minute["failed_deliveries"], minute["error_rate"]) == (1, 0.3333)


def test_a_job_dead_lettered_again_after_a_redrive_is_listed_once(app: App, demo: dict[str, int]) -> None:
    # Given a job whose message ran out of deliveries, was redriven, and ran out again under a new message id
    job = pay(app, "demo-user-1", "k1").body["job_id"]
    for _ in range(2):
        messages = receive(app)
        for message in messages:
            app.db.execute(
                "SELECT pq_record_delivery_failure(%s, %s, 5, 'RuntimeError', 'boom', true)",
                (job, str(message["msg_id"])),
            )
        dead_letter(app.db, messages, queue="payments", dlq="payments_dlq")
        if len(app.db.fetch_all("SELECT 1 FROM delivery_failures", ())) == 1:
            app.queue.redrive()

    # When the operator reads the queue status
    status, body, _ = call(status_handler, "GET", "/v1/queue/status", user="ops", scopes=[OPERATOR])

    # Then the DLQ holds one message and lists one job
    assert status == 200
    assert body["dlq_depth"] == 1
    assert [j["job_id"] for j in body["dlq_jobs"]] == [job]

"""The processor handler fed SQS-shaped batches from PGMQ, the outbox relay and the sweeper."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.process_payment.handler import handler as process_handler
from local.lambda_shim import LocalContext, sqs_record
from shared.bootstrap import App
from shared.ports import QueueMessage
from shared.services.outbox import sweep
from tests.integration.helpers import deliver, pay, pending_order, receive


def test_batch_is_processed_deleted_and_its_events_published(app: App, demo: dict[str, int]) -> None:
    jobs = [pay(app, f"demo-user-{i}", f"k{i}").body["job_id"] for i in (1, 2, 3)]

    failed = deliver(app, receive(app))

    assert failed == set()
    statuses = app.db.fetch_all("SELECT status FROM payment_jobs WHERE id = ANY(%s::uuid[])", (jobs,))
    assert [s["status"] for s in statuses] == ["succeeded"] * 3
    assert app.db.fetch_one("SELECT count(*) n FROM pgmq.q_payments") == {"n": 0}
    events = app.db.fetch_all("SELECT message FROM pgmq.q_payment_events")
    assert sorted(e["message"]["detail"]["data"]["job_id"] for e in events) == sorted(jobs)
    assert {e["message"]["detail-type"] for e in events} == {"PaymentSucceeded"}
    assert app.db.fetch_one("SELECT count(*) n FROM outbox_events WHERE published_at IS NULL") == {"n": 0}


def test_poison_message_goes_to_the_dlq_after_max_receive_count(app: App, demo: dict[str, int]) -> None:
    app.db.execute(
        "SELECT pgmq.send('payments', %s::jsonb, %s::jsonb)",
        (json.dumps({"job_id": "not-a-uuid"}), json.dumps({"x-pgmq-group": "demo-user-1"})),
    )
    other = pay(app, "demo-user-2", "k2").body["job_id"]

    for _ in range(app.settings.max_receive_count):
        deliver(app, receive(app))

    assert app.db.fetch_one("SELECT count(*) n FROM pgmq.q_payments") == {"n": 0}
    dead = app.db.fetch_all("SELECT message, headers FROM pgmq.q_payments_dlq")
    assert [d["message"] for d in dead] == [{"job_id": "not-a-uuid"}]
    assert dead[0]["headers"]["x-receive-count"] == app.settings.max_receive_count
    # Another user's job is not held up by the poison message.
    assert app.db.fetch_one("SELECT status FROM payment_jobs WHERE id = %s", (other,)) == {"status": "succeeded"}


def test_a_failed_record_holds_back_the_rest_of_its_group(app: App, demo: dict[str, int]) -> None:
    # Given a poison message at the head of demo-user-1's group, followed by a real job of theirs
    app.db.execute(
        "SELECT pgmq.send('payments', %s::jsonb, %s::jsonb)",
        (json.dumps({"job_id": "00000000-0000-4000-8000-000000000000"}), json.dumps({"x-pgmq-group": "demo-user-1"})),
    )
    job = pay(app, "demo-user-1", "k1").body["job_id"]

    # When the workers read, Then only the group's head is handed out, and it fails
    first = receive(app)
    assert [m["message"]["job_id"] for m in first] == ["00000000-0000-4000-8000-000000000000"]
    assert deliver(app, first) == {str(first[0]["msg_id"])}
    # And when it comes back for its retry, it is still the only message of the group handed out
    again = receive(app)
    assert [m["message"]["job_id"] for m in again] == ["00000000-0000-4000-8000-000000000000"]

    # When both records arrive in one batch anyway, Then the handler fails both (skip_group_on_error)
    both = app.db.fetch_all("SELECT * FROM pgmq.q_payments ORDER BY msg_id")
    records = [sqs_record(m, "payments") for m in both]
    response = process_handler({"Records": records}, LocalContext("test"))
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {r["messageId"] for r in records}
    assert app.db.fetch_one("SELECT status FROM payment_jobs WHERE id = %s", (job,)) == {"status": "queued"}


class FailingBus:
    def publish(self, events: Any) -> list[str]:
        raise ConnectionError("event bus down")


class FailingQueue:
    def send(self, messages: list[QueueMessage]) -> list[str]:
        raise ConnectionError("queue down")

    def stats(self) -> Any:
        raise ConnectionError("queue down")


def test_events_unpublished_when_the_bus_is_down_are_published_by_the_sweeper(
    app: App, demo: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    pay(app, "demo-user-1", "k1")
    real_bus = app.bus
    monkeypatch.setattr(app, "bus", FailingBus())
    deliver(app, receive(app))
    assert app.db.fetch_one("SELECT count(*) n FROM outbox_events WHERE published_at IS NULL") == {"n": 1}

    monkeypatch.setattr(app, "bus", real_bus)
    result = sweep(app)

    assert result["events_republished"] == 1
    assert app.db.fetch_one("SELECT count(*) n FROM pgmq.q_payment_events") == {"n": 1}
    assert app.db.fetch_one("SELECT count(*) n FROM outbox_events WHERE published_at IS NULL") == {"n": 0}


def test_job_whose_queue_send_failed_is_sent_by_the_sweeper(
    app: App, demo: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_queue = app.queue
    monkeypatch.setattr(app, "queue", FailingQueue())
    accepted = pay(app, "demo-user-1", "k1")  # accepted although the queue is down
    assert accepted.body["status"] == "queued"
    assert app.db.fetch_one("SELECT count(*) n FROM pgmq.q_payments") == {"n": 0}

    monkeypatch.setattr(app, "queue", real_queue)
    assert sweep(app)["jobs_resent"] == 1

    deliver(app, receive(app))
    job = app.db.fetch_one("SELECT status, sent_at FROM payment_jobs WHERE id = %s", (accepted.body["job_id"],))
    assert job is not None and job["status"] == "succeeded" and job["sent_at"] is not None
    assert sweep(app) == {"jobs_resent": 0, "events_republished": 0}


def test_duplicate_delivery_of_one_job_charges_once(app: App, demo: dict[str, int]) -> None:
    accepted = pay(app, "demo-user-1", "k1")
    order = pending_order(app.db, "demo-user-1")
    # The same job sent twice (a sweeper re-send racing the original, or at-least-once delivery).
    app.queue.send([QueueMessage(accepted.body["job_id"], "demo-user-1", {"job_id": accepted.body["job_id"]})])

    delivered = 0
    while messages := receive(app):
        delivered += len(messages)
        deliver(app, messages)

    assert delivered == 2
    assert app.db.fetch_one("SELECT count(*) n FROM payment_transactions WHERE order_id = %s", (order,)) == {"n": 1}
    assert app.db.fetch_one("SELECT count(*) n FROM wallet_transactions WHERE kind = 'debit'") == {"n": 1}
    assert app.db.fetch_one("SELECT count(*) n FROM pgmq.q_payment_events") == {"n": 1}


def test_records_left_without_time_are_handed_back_unpaid(app: App, demo: dict[str, int]) -> None:
    # Given two queued payments and an invocation with less time left than a wallet record may need
    for user in ("demo-user-1", "demo-user-2"):
        pay(app, user, f"key-{user}")
    messages = receive(app, vt=300)
    assert len(messages) == 2
    almost_over = LocalContext("test", timeout_s=app.settings.wallet_record_budget_ms / 1000 - 1)

    # When the processor runs them
    response = process_handler({"Records": [sqs_record(m, "payments") for m in messages]}, almost_over)

    # Then neither is paid, both fail the batch and are visible again at once for the next invocation
    assert len(response["batchItemFailures"]) == 2
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_jobs WHERE status = 'queued'") == {"n": 2}
    assert len(receive(app)) == 2

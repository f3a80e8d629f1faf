"""The processor handler fed SQS-shaped batches from PGMQ, the outbox relay and the sweeper."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.process_payment.handler import handler as process_handler
from local.lambda_shim import LocalContext, sqs_record
from local.workers import settle
from shared.bootstrap import App
from shared.db import Database
from shared.domain import TransientError
from shared.observability import metrics
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


def _send_raw(app: App, body: dict[str, Any], group: str) -> None:
    """A message as some other producer (or a bug) might have put it on the queue."""
    app.db.execute(
        "SELECT pgmq.send('payments', %s::jsonb, %s::jsonb)",
        (json.dumps(body), json.dumps({"x-pgmq-group": group, "job_id": str(body.get("job_id"))})),
    )


def _count_metrics(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the metrics the handler adds, in order (Powertools prints them past capsys)."""
    names: list[str] = []
    add = metrics.add_metric

    def spy(name: str, **kwargs: Any) -> None:
        names.append(name)
        add(name=name, **kwargs)

    monkeypatch.setattr(metrics, "add_metric", spy)
    return names


def _one_batch(app: App) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every queued message in one batch, several of one group together, as SQS FIFO may deliver them."""
    messages = app.db.fetch_all(
        """UPDATE pgmq.q_payments SET read_ct = read_ct + 1, vt = clock_timestamp() + interval '30 seconds'
            RETURNING *"""
    )
    messages.sort(key=lambda m: m["msg_id"])
    response = process_handler({"Records": [sqs_record(m, "payments") for m in messages]}, LocalContext("test"))
    return messages, response


def test_poison_message_goes_to_the_dlq_on_its_first_delivery_and_its_users_next_job_succeeds(
    app: App, demo: dict[str, int], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = _count_metrics(monkeypatch)
    # Given a malformed message at the head of demo-user-1's group, then a message for a job that
    # does not exist, then a real job of the same user's, all delivered in one batch
    _send_raw(app, {"job_id": "not-a-uuid"}, "demo-user-1")
    missing = "00000000-0000-4000-8000-000000000000"
    _send_raw(app, {"job_id": missing}, "demo-user-1")
    job = pay(app, "demo-user-1", "k1").body["job_id"]

    # When the processor handles the batch
    messages, response = _one_batch(app)
    settle_failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}

    # Then nothing in it failed: both poison messages are in the DLQ after one delivery each, with
    # their group, job id and why, and the user's job behind them succeeded in the same batch
    assert settle_failed == set()
    assert app.db.fetch_one("SELECT status FROM payment_jobs WHERE id = %s", (job,)) == {"status": "succeeded"}
    dead = app.db.fetch_all("SELECT message, headers FROM pgmq.q_payments_dlq ORDER BY msg_id")
    assert [d["message"] for d in dead] == [{"job_id": "not-a-uuid"}, {"job_id": missing}]
    assert [d["headers"]["x-receive-count"] for d in dead] == [1, 1]
    assert {d["headers"]["x-pgmq-group"] for d in dead} == {"demo-user-1"}
    assert [d["headers"]["job_id"] for d in dead] == ["not-a-uuid", missing]
    assert "malformed message body" in dead[0]["headers"]["x-dead-letter-reason"]
    assert dead[1]["headers"]["x-dead-letter-reason"] == f"job {missing}: job_not_found"
    # And only the real job's message is left for the event source mapping to delete
    remaining = app.db.fetch_all("SELECT msg_id FROM pgmq.q_payments")
    assert [r["msg_id"] for r in remaining] == [messages[2]["msg_id"]]
    # And each move is logged at WARNING with the job the body names, the reason and the delivery,
    # recorded for the operator's view, and counted
    moved = [vars(r) for r in caplog.records if r.getMessage() == "message moved to the DLQ"]
    assert [(r["levelname"], r["job_id"], r["receive_count"]) for r in moved] == [
        ("WARNING", "not-a-uuid", 1),
        ("WARNING", missing, 1),
    ]
    assert moved[1]["detail"] == f"PoisonMessageError: job {missing}: job_not_found"
    recorded = app.db.fetch_all("SELECT job_id::text, receive_count, dead_lettered FROM delivery_failures")
    assert sorted(recorded, key=str) == sorted(
        [
            {"job_id": None, "receive_count": 1, "dead_lettered": True},
            {"job_id": missing, "receive_count": 1, "dead_lettered": True},
        ],
        key=str,
    )
    assert counted.count("PoisonMessages") == 2


def test_gateway_job_on_the_wallet_path_is_dead_lettered_at_once_and_debits_nothing(
    app: App, demo: dict[str, int]
) -> None:
    # Given a Razorpay job whose queue message lost its method, so it arrives on the wallet path
    order = pending_order(app.db, "demo-user-1")
    job = app.db.fetch_one(
        """INSERT INTO payment_jobs (user_id, idempotency_key, request_hash, order_id, method, gateway_ref)
           VALUES ('demo-user-1', 'k', 'h', %s, 'razorpay', 'pay_abc') RETURNING id::text""",
        (order,),
    )
    assert job is not None
    _send_raw(app, {"job_id": job["id"]}, "demo-user-1")

    # When it is delivered once
    failed = deliver(app, receive(app))

    # Then it is in the DLQ, not failed back to the queue, and no money moved
    assert failed == set()
    assert app.db.fetch_one("SELECT count(*) n FROM pgmq.q_payments") == {"n": 0}
    dead = app.db.fetch_one("SELECT headers FROM pgmq.q_payments_dlq")
    assert dead is not None and dead["headers"]["x-receive-count"] == 1
    assert dead["headers"]["x-dead-letter-reason"] == f"job {job['id']}: not_a_wallet_job"
    assert app.db.fetch_one("SELECT count(*) n FROM wallet_transactions WHERE kind = 'debit'") == {"n": 0}


class FlakyDb:
    """The real database, except that the payment of one job fails as a dropped connection does."""

    def __init__(self, db: Database, job_id: str) -> None:
        self._db, self._job_id = db, job_id

    def fetch_one(self, sql: str, params: Any = None, **options: Any) -> Any:
        if "pq_process_payment" in sql and str(params[0]) == self._job_id:
            raise TransientError("OperationalError: server closed the connection unexpectedly")
        return self._db.fetch_one(sql, params, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_a_transient_failure_holds_back_the_rest_of_its_group_until_max_receive_count(
    app: App, demo: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two jobs of demo-user-1's, the first of which fails transiently on every delivery
    head = pay(app, "demo-user-1", "k1").body["job_id"]
    order2 = app.db.fetch_one(
        """INSERT INTO orders (user_id, items, total_paise)
           SELECT user_id, items, total_paise FROM orders WHERE user_id = 'demo-user-1' RETURNING id"""
    )
    assert order2 is not None
    behind = pay(app, "demo-user-1", "k2", order_id=order2["id"]).body["job_id"]
    monkeypatch.setattr(app, "db", FlakyDb(app.db, head))

    # When both records arrive in one batch, Then the handler fails both (skip_group_on_error)
    messages, response = _one_batch(app)
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {str(m["msg_id"]) for m in messages}
    assert app.db.fetch_one("SELECT status FROM payment_jobs WHERE id = %s", (behind,)) == {"status": "queued"}
    assert app.db.fetch_one("SELECT count(*) n FROM pgmq.q_payments_dlq") == {"n": 0}
    # And the record held back is visible again at once (ChangeMessageVisibility 0), not after the
    # visibility timeout, while the failed head keeps the visibility its delivery set
    visible = app.db.fetch_all(
        "SELECT message->>'job_id' AS job_id, vt <= clock_timestamp() AS visible FROM pgmq.q_payments ORDER BY msg_id"
    )
    assert visible == [{"job_id": head, "visible": False}, {"job_id": behind, "visible": True}]

    # And the head keeps the retry path: the workers hand out only it, until its deliveries are used up
    settle(
        app.db,
        messages,
        {str(m["msg_id"]) for m in messages},
        queue="payments",
        dlq="payments_dlq",
        max_receive_count=app.settings.max_receive_count,
        retry_delay_s=0,
    )
    for _ in range(app.settings.max_receive_count - 1):
        again = receive(app)
        assert [m["message"]["job_id"] for m in again] == [head]
        assert deliver(app, again) == {str(again[0]["msg_id"])}
    dead = app.db.fetch_all("SELECT headers FROM pgmq.q_payments_dlq")
    assert [(d["headers"]["job_id"], d["headers"]["x-receive-count"]) for d in dead] == [
        (head, app.settings.max_receive_count)
    ]
    assert "x-dead-letter-reason" not in dead[0]["headers"]
    # And the job behind it goes through once the head is out of the way
    deliver(app, receive(app))
    assert app.db.fetch_one("SELECT status FROM payment_jobs WHERE id = %s", (behind,)) == {"status": "succeeded"}


class FailingBus:
    def publish(self, events: Any) -> list[str]:
        raise ConnectionError("event bus down")


class FailingQueue:
    """A queue outside the database (as SQS is) that is down."""

    def send(self, messages: list[QueueMessage]) -> list[str]:
        raise ConnectionError("queue down")

    def in_transaction(self, message: QueueMessage) -> None:
        return None

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

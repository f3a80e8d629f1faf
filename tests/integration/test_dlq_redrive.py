"""The operator's DLQ redrive on PGMQ: dead-lettered jobs go back to the queue and get paid."""

from __future__ import annotations

import pytest

from functions.status.handler import handler as status_handler
from local.workers import dead_letter
from shared.bootstrap import App
from shared.ports import ReceivedMessage
from shared.services.intake import job_message
from tests.integration.helpers import deliver, pay, receive
from tests.integration.test_api_handlers import OPERATOR, call


def dead_letter_everything(app: App) -> list[dict[str, object]]:
    """What the event source mapping does after the last failed delivery: move each message to the DLQ."""
    messages = receive(app)
    dead_letter(app.db, messages, queue="payments", dlq="payments_dlq")
    return messages


def test_redrive_moves_dead_jobs_back_with_their_group_and_job_id(app: App, demo: dict[str, int]) -> None:
    # Given two users' jobs that ran out of deliveries and sit in the DLQ
    jobs = [pay(app, f"demo-user-{i}", f"k{i}").body["job_id"] for i in (1, 2)]
    dead = dead_letter_everything(app)
    assert app.queue.stats().dlq_depth == 2 and app.queue.stats().depth == 0

    # When the operator redrives the DLQ
    result = app.queue.redrive()

    # Then every message is back in the queue, oldest first, with its group and job id and a fresh count
    assert (result.status, result.moved) == ("completed", 2)
    stats = app.queue.stats()
    assert (stats.depth, stats.dlq_depth) == (2, 0)
    back = app.db.fetch_all("SELECT message, headers, read_ct FROM pgmq.q_payments ORDER BY msg_id")
    assert [b["message"] for b in back] == [d["message"] for d in dead]
    assert [b["headers"] for b in back] == [
        {"x-pgmq-group": f"demo-user-{i}", "job_id": job} for i, job in zip((1, 2), jobs, strict=True)
    ]
    assert {b["read_ct"] for b in back} == {0}

    # And the workers pay them
    assert deliver(app, receive(app)) == set()
    statuses = app.db.fetch_all("SELECT status FROM payment_jobs WHERE id = ANY(%s::uuid[])", (jobs,))
    assert [s["status"] for s in statuses] == ["succeeded", "succeeded"]


def test_redriving_an_empty_dlq_moves_nothing(app: App, demo: dict[str, int]) -> None:
    pay(app, "demo-user-1", "k1")

    result = app.queue.redrive()

    assert (result.status, result.moved) == ("completed", 0)
    assert app.queue.stats().depth == 1


def test_redrive_route_needs_the_operator_scope_and_reports_what_moved(app: App, demo: dict[str, int]) -> None:
    pay(app, "demo-user-1", "k1")
    dead_letter_everything(app)

    refused, error, _ = call(status_handler, "POST", "/v1/dlq/redrive", scopes=[])
    assert (refused, error["error"]["code"]) == (403, "forbidden")
    assert app.queue.stats().dlq_depth == 1

    status, body, _ = call(status_handler, "POST", "/v1/dlq/redrive", user="ops", scopes=[OPERATOR])
    assert (status, body) == (200, {"status": "completed", "moved": 1})
    assert app.queue.stats().dlq_depth == 0


def _received(message: dict[str, object], read_ct: int) -> ReceivedMessage:
    return ReceivedMessage(
        body="{}",
        group_id="demo-user-1",
        deduplication_id="job",
        message_id=str(message["msg_id"]),
        receipt_handle=f"payments:{message['msg_id']}:{read_ct}",
        receive_count=read_ct,
    )


def test_a_message_dead_lettered_at_first_sight_is_redriven_without_its_dead_letter_headers(
    app: App, demo: dict[str, int]
) -> None:
    # Given a job the processor moved to the DLQ on its first delivery
    job = pay(app, "demo-user-1", "k1").body["job_id"]
    [message] = receive(app)
    app.queue.dead_letter(_received(message, message["read_ct"]), "job does not exist")
    dead = app.db.fetch_one("SELECT headers FROM pgmq.q_payments_dlq")
    assert dead is not None and dead["headers"] == {
        "x-pgmq-group": "demo-user-1",
        "job_id": job,
        "x-source-queue": "payments",
        "x-receive-count": 1,
        "x-dead-letter-reason": "job does not exist",
    }

    # When the operator redrives it
    assert app.queue.redrive().moved == 1

    # Then it is back with only its group and job id, and gets paid
    back = app.db.fetch_one("SELECT headers FROM pgmq.q_payments")
    assert back == {"headers": {"x-pgmq-group": "demo-user-1", "job_id": job}}
    assert deliver(app, receive(app)) == set()
    assert app.db.fetch_one("SELECT status FROM payment_jobs WHERE id = %s", (job,)) == {"status": "succeeded"}


def test_dead_letter_with_a_stale_receipt_handle_moves_nothing(app: App, demo: dict[str, int]) -> None:
    # Given a message received twice (the first delivery's visibility ran out)
    pay(app, "demo-user-1", "k1")
    [first] = receive(app, vt=0)
    [second] = receive(app)
    assert second["read_ct"] == first["read_ct"] + 1

    # When the first delivery's handler dead-letters it
    app.queue.dead_letter(_received(first, first["read_ct"]), "poison")

    # Then the message stays where it is, as SQS ignores a stale receipt handle
    stats = app.queue.stats()
    assert (stats.in_flight, stats.dlq_depth) == (1, 0)


def test_a_dead_lettered_job_is_explained_in_the_logs_and_the_operator_view(
    app: App, demo: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a message naming a job that does not exist (it can never succeed)
    ghost = "00000000-0000-4000-8000-00000000dead"
    app.queue.send([job_message(ghost, "demo-user-1", 1, "wallet")])

    # When the workers deliver it until it reaches the DLQ
    for _ in range(app.settings.max_receive_count):
        if app.queue.stats().dlq_depth:
            break
        deliver(app, receive(app, vt=0))

    # Then the logs name the job, its user and order, the error and the delivery
    assert app.queue.stats().dlq_depth == 1
    moved = [vars(r) for r in caplog.records if r.getMessage() == "message moved to the DLQ"]
    assert moved and moved[-1]["job_id"] == ghost and moved[-1]["user_id"] == "demo-user-1"
    assert moved[-1]["order_id"] == 1 and moved[-1]["levelname"] == "WARNING"
    assert "PoisonMessageError" in moved[-1]["detail"] and moved[-1]["receive_count"] >= 1

    # And the operator's views list it with its last error, and count its failed deliveries
    status, queue, _ = call(status_handler, "GET", "/v1/queue/status", scopes=[OPERATOR])
    assert status == 200
    assert [(j["job_id"], j["status"], j["user_id"]) for j in queue["dlq_jobs"]] == [(ghost, "unknown", None)]
    assert "job_not_found" in queue["dlq_jobs"][0]["last_error"]
    status, metrics, _ = call(status_handler, "GET", "/v1/metrics", scopes=[OPERATOR])
    assert status == 200 and metrics["windows"]["1m"]["failed_deliveries"] >= 1
    assert metrics["windows"]["1m"]["failed"] == 0  # no business failure among them

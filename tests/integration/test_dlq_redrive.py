"""The operator's DLQ redrive on PGMQ: dead-lettered jobs go back to the queue and get paid."""

from __future__ import annotations

from functions.status.handler import handler as status_handler
from local.workers import dead_letter
from shared.bootstrap import App
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

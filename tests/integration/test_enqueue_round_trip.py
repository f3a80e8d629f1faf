"""Enqueue in one database round trip, and how the sweeper tells a sent job from an unsent one without a
second write per job (shared/sql/intake.sql, pq_unsent_jobs)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from shared.adapters.aws import SqsJobQueue
from shared.bootstrap import App
from shared.db import Database
from shared.services.outbox import sweep
from shared.services.wallet import process_wallet_job
from tests.integration.helpers import pay, pending_order

N = 30  # the sweeper's age threshold in these tests (PQ_SWEEP_AFTER_S)


def test_enqueue_records_and_sends_in_one_round_trip_on_the_local_queue(app: App, demo: dict[str, int]) -> None:
    order = pending_order(app.db, "demo-user-1")
    before = app.db.round_trips

    accepted = pay(app, "demo-user-1", "k1", order)

    assert app.db.round_trips - before == 1
    job = app.db.fetch_one("SELECT sent_at FROM payment_jobs WHERE id = %s", (accepted.body["job_id"],))
    assert job is not None and job["sent_at"] is not None
    message = app.db.fetch_one("SELECT message, headers FROM pgmq.q_payments")
    assert message is not None and message["message"]["job_id"] == accepted.body["job_id"]
    assert message["headers"] == {"x-pgmq-group": "demo-user-1", "job_id": accepted.body["job_id"]}


def test_a_replay_sends_nothing_more(app: App, demo: dict[str, int]) -> None:
    pay(app, "demo-user-1", "k1")
    pay(app, "demo-user-1", "k1")

    assert app.db.fetch_one("SELECT count(*) AS n FROM pgmq.q_payments") == {"n": 1}


def test_enqueue_on_sqs_is_one_round_trip_and_writes_nothing_back(
    app: App, demo: dict[str, int], queues: tuple[Any, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs, url, dlq = queues
    monkeypatch.setattr(app, "queue", SqsJobQueue(sqs, url, dlq))
    order = pending_order(app.db, "demo-user-1")
    before = app.db.round_trips

    accepted = pay(app, "demo-user-1", "k1", order)

    assert app.db.round_trips - before == 1
    received = sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=["MessageDeduplicationId"])["Messages"]
    assert [json.loads(m["Body"])["job_id"] for m in received] == [accepted.body["job_id"]]
    assert received[0]["Attributes"]["MessageDeduplicationId"] == accepted.body["job_id"]
    job = app.db.fetch_one("SELECT sent_at FROM payment_jobs WHERE id = %s", (accepted.body["job_id"],))
    assert job == {"sent_at": None}  # confirmed by nobody: the sweeper's rule decides


def _unconfirmed(db: Database, user: str, key: str, accepted_s_ago: float) -> str:
    """A wallet job recorded as an SQS intake leaves it: unconfirmed, accepted that long ago."""
    row = db.fetch_one(
        """INSERT INTO payment_jobs (user_id, idempotency_key, request_hash, order_id, method, created_at)
           SELECT %s, %s, 'h', o.id, 'wallet', now() - make_interval(secs => %s)
             FROM orders o WHERE o.user_id = %s RETURNING id""",
        (user, key, accepted_s_ago, user),
    )
    assert row is not None
    return str(row["id"])


def _swept(db: Database) -> set[str]:
    return {str(r["id"]) for r in db.fetch_all("SELECT id FROM pq_unsent_jobs(%s, 500)", (N,))}


def test_a_waiting_job_the_line_has_not_passed_is_not_sent_again(app: App, demo: dict[str, int]) -> None:
    # Given an unconfirmed job accepted 100 s ago, and the line's front (the newest job to end in the last
    # N seconds) accepted 90 s ago: the line has not yet reached 100 s - the job still waits its turn
    waiting = _unconfirmed(app.db, "demo-user-1", "k1", 100)
    front = _unconfirmed(app.db, "demo-user-2", "k2", 90)
    process_wallet_job(app, front)

    assert waiting not in _swept(app.db)


def test_an_unconfirmed_job_the_line_has_passed_is_sent_once(app: App, demo: dict[str, int]) -> None:
    # Given an unconfirmed job accepted 100 s ago, and a job accepted 60 s ago that has already ended
    passed = _unconfirmed(app.db, "demo-user-1", "k1", 100)
    front = _unconfirmed(app.db, "demo-user-2", "k2", 60)
    process_wallet_job(app, front)

    # When the sweeper runs (twice)
    assert _swept(app.db) == {passed}
    first = sweep(dataclasses.replace(app, settings=app.settings.model_copy(update={"sweep_after_s": N})))
    again = _swept(app.db)

    # Then it is sent once, and marked
    assert first["jobs_resent"] == 1 and again == set()
    assert app.db.fetch_one("SELECT count(*) AS n FROM pgmq.q_payments") == {"n": 1}


def test_an_unconfirmed_job_of_a_stalled_line_is_sent(app: App, demo: dict[str, int]) -> None:
    # Given an unconfirmed job accepted 100 s ago, and no job ended in the last N seconds
    stalled = _unconfirmed(app.db, "demo-user-1", "k1", 100)

    assert _swept(app.db) == {stalled}


def test_a_job_a_processor_received_or_the_dlq_holds_is_never_sent_again(app: App, demo: dict[str, int]) -> None:
    # Given unconfirmed jobs of a stalled line: one that failed a delivery, one dead-lettered, one ended
    failed_once = _unconfirmed(app.db, "demo-user-1", "k1", 100)
    dead = _unconfirmed(app.db, "demo-user-2", "k2", 100)
    ended = _unconfirmed(app.db, "demo-user-3", "k3", 100)
    app.db.execute("SELECT pq_record_delivery_failure(%s, 'm1', 1, 'TransientError', 'x', false)", (failed_once,))
    app.db.execute("SELECT pq_record_delivery_failure(%s, 'm2', 10, 'TransientError', 'x', true)", (dead,))
    process_wallet_job(app, ended)
    app.db.execute("UPDATE payment_jobs SET finished_at = now() - interval '1 hour' WHERE id = %s", (ended,))

    assert _swept(app.db) == set()


def test_a_parked_gateway_job_waits_with_no_message_and_goes_again_once_woken(app: App, demo: dict[str, int]) -> None:
    # Given a job an SQS intake left unconfirmed, taken by a gateway processor and parked for its verdict
    parked = _unconfirmed(app.db, "demo-user-1", "k1", 100)
    app.db.execute(
        "UPDATE payment_jobs SET status = 'processing', parks = 1, parked_at = now() WHERE id = %s", (parked,)
    )
    assert _swept(app.db) == set()

    # When a webhook wakes it (pq_checkout_settle: parked_at and sent_at cleared) and its send fails
    app.db.execute("UPDATE payment_jobs SET parked_at = NULL, sent_at = NULL WHERE id = %s", (parked,))

    # Then the sweeper sends it
    assert _swept(app.db) == {parked}

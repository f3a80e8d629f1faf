"""One queue message (shared/services/processing.py, shared/poison.py) and the batch's events (shared/services/
outbox.py) with fakes: what reaches the books, the queue, a gateway and the bus, and what does not. The
statements themselves, and the processor's handler end to end, are tested against PostgreSQL in
tests/integration/test_processor_and_outbox.py and test_dlq_redrive.py."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.domain import PoisonMessageError, RetryLater
from shared.outcomes import WalletOutcome
from shared.poison import dead_letter_poison
from shared.ports import SqlParams
from shared.services.outbox import OutboxRelay
from shared.services.processing import process_message, record_failure
from tests.unit.fakes import FakeBus, FakeDb, FakeDeps, FakeGateway, FakeQueue, Rows

JOB_ID = str(uuid.uuid4())


def sqs_record(body: str, receive_count: int = 1) -> SQSRecord:
    return SQSRecord(
        {
            "messageId": "m-1",
            "receiptHandle": "handle-1",
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": str(receive_count),
                "MessageGroupId": "shopper-1",
                "MessageDeduplicationId": "dedup-1",
            },
        }
    )


def event(event_id: str) -> dict[str, Any]:
    return {"id": event_id, "detail-type": "payment.succeeded", "detail": {}}


@pytest.mark.parametrize(
    "body",
    ["not json", "[]", json.dumps({"method": "wallet"}), json.dumps({"job_id": "not-a-uuid", "method": "razorpay"})],
)
def test_a_message_whose_body_is_not_a_job_is_dead_lettered_as_poison_without_a_payment_call(body: str) -> None:
    # Given a message whose body names no job, and books that answer only the failure record
    razorpay = FakeGateway("razorpay")
    deps = FakeDeps(db=FakeDb({"pq_record_delivery_failure": [[]]}), gateways={"razorpay": razorpay})
    queue = deps.queue
    assert isinstance(queue, FakeQueue)

    # When it is processed, and its PoisonMessageError handled as the processor handles it
    with pytest.raises(PoisonMessageError) as raised:
        process_message(deps, body, receipt_handle="handle-1", receive_count=1, remaining_ms=60_000)
    assert deps.db.calls == []  # nothing paid, nothing looked up
    dead_letter_poison(deps, sqs_record(body), raised.value)

    # Then it is in the DLQ intact, with the reason, recorded dead-lettered and naming no job; no gateway called
    [(moved, reason)] = queue.dead_lettered
    assert (moved.body, moved.group_id, moved.deduplication_id) == (body, "shopper-1", "dedup-1")
    assert reason.startswith("malformed message body")
    [[job_id, message_id, receive_count, error, _detail, dead_lettered]] = deps.db.called("pq_record_delivery_failure")
    assert (job_id, message_id, receive_count, error, dead_lettered) == (None, "m-1", 1, "PoisonMessageError", True)
    assert razorpay.created == [] and queue.visibility == []


def test_a_poison_message_the_queue_cannot_move_is_not_recorded_as_dead_lettered() -> None:
    # Given a queue whose DLQ move fails
    deps = FakeDeps(queue=FakeQueue(fail_dead_letters=True))

    # When a poison message is dead-lettered
    # Then the error propagates (the record takes the retry path, the next delivery moves it) and the books
    # are not told it went to the DLQ (FakeDb fails any statement)
    with pytest.raises(ConnectionError):
        dead_letter_poison(deps, sqs_record("not json"), PoisonMessageError("malformed message body: ValueError"))
    assert deps.db.calls == []


def test_a_gateway_message_is_handed_back_with_time_a_wallet_payment_would_still_have() -> None:
    # Given 10 s left in the invocation: more than a wallet payment's budget, less than a gateway payment's
    wallet_row: Rows = [{"outcome": "succeeded", "reason": None, "payment_id": 1, "event": None, "sold_out": None}]
    deps = FakeDeps(db=FakeDb({"pq_process_payment": [wallet_row]}), gateways={"razorpay": FakeGateway("razorpay")})
    queue = deps.queue
    assert isinstance(queue, FakeQueue)
    remaining_ms = 10_000
    assert deps.settings.wallet_record_budget_ms < remaining_ms < deps.settings.gateway_record_budget_ms

    # When a wallet message and a gateway message come
    paid = process_message(
        deps,
        json.dumps({"job_id": JOB_ID, "method": "wallet"}),
        receipt_handle="h-wallet",
        receive_count=1,
        remaining_ms=remaining_ms,
    )
    with pytest.raises(RetryLater) as handed_back:
        process_message(
            deps,
            json.dumps({"job_id": JOB_ID, "method": "razorpay"}),
            receipt_handle="h-gateway",
            receive_count=1,
            remaining_ms=remaining_ms,
        )

    # Then the wallet job is paid, and the gateway message is visible again at once with its job untouched
    assert paid.outcome is WalletOutcome.SUCCEEDED
    assert handed_back.value.delay_s == 0
    assert queue.visibility == [("h-gateway", 0)]
    assert [name for name, _ in deps.db.calls] == ["pq_process_payment"]


@pytest.mark.parametrize(
    ("body", "job_id"),
    [
        (json.dumps({"job_id": JOB_ID, "user_id": "shopper-1", "method": "wallet"}), uuid.UUID(JOB_ID)),
        (json.dumps({"job_id": "not-a-uuid"}), None),
        ("not json", None),
    ],
)
def test_a_failed_delivery_is_recorded_with_the_job_its_body_names_if_any(body: str, job_id: uuid.UUID | None) -> None:
    # Given books that take failure records
    deps = FakeDeps(db=FakeDb({"pq_record_delivery_failure": [[]]}))

    # When a delivery fails, short of its last receive
    record_failure(deps, body, message_id="m-1", receive_count=2, error=TimeoutError("db slow"), dead_lettered=False)

    # Then its record names the job its body names (a body naming none, or not a job id, is recorded without one)
    [[recorded_job, message_id, receive_count, error, detail, dead_lettered]] = deps.db.called(
        "pq_record_delivery_failure"
    )
    assert (recorded_job, message_id, receive_count, dead_lettered) == (job_id, "m-1", 2, False)
    assert (error, detail) == ("TimeoutError", "TimeoutError: db slow")


def test_a_failed_delivery_the_books_cannot_record_is_only_logged() -> None:
    # Given books that are down
    def down(params: SqlParams) -> Rows:
        raise ConnectionError("database unreachable")

    deps = FakeDeps(db=FakeDb({"pq_record_delivery_failure": down}))

    # When a delivery fails
    record_failure(deps, "not json", message_id="m-1", receive_count=1, error="held back", dead_lettered=False)

    # Then nothing is raised (the queue keeps the message either way) and the record was attempted
    assert len(deps.db.called("pq_record_delivery_failure")) == 1


def test_the_relay_publishes_what_the_batch_added_and_marks_only_what_the_bus_accepted() -> None:
    # Given a batch that added three events and a sold-out product, and a bus that refuses one of the events
    bus = FakeBus(refuses={"e-2"})
    deps = FakeDeps(db=FakeDb({"pq_mark_events_published": [[]]}), bus=bus)
    relay = OutboxRelay(deps)
    relay.add(event("e-1"))
    relay.add(None, sold_out=[4])  # a failed payment: no event, a product it found sold out
    relay.add(event("e-2"))
    relay.add(event("e-3"), sold_out=[9])

    # When the relay flushes after the batch
    published = relay.flush()

    # Then every event was offered, the two accepted are marked published in one statement (the refused one
    # is left for the sweeper), nothing is pending, and the sold-out products are kept for the line's end
    assert published == 2
    assert [e["id"] for e in bus.published] == ["e-1", "e-3"]
    assert deps.db.called("pq_mark_events_published") == [[["e-1", "e-3"]]]
    assert relay.pending == [] and relay.sold_out == {4, 9}


def test_events_the_bus_is_down_for_are_left_unmarked_for_the_sweeper() -> None:
    # Given a batch that added an event, and a bus that is down
    deps = FakeDeps(bus=FakeBus(down=True))
    relay = OutboxRelay(deps)
    relay.add(event("e-1"))

    # When the relay flushes
    published = relay.flush()

    # Then nothing is published and nothing marked (FakeDb fails any statement), and nothing is kept to resend
    # with the next batch: the sweeper publishes what the outbox still holds
    assert published == 0 and deps.db.calls == [] and relay.pending == []

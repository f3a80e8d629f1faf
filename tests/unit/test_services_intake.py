"""Accepting a payment (shared/services/intake.py) with fakes: what is refused before anything is recorded,
how each intake outcome is refused, and when the job's message is sent. The intake statements themselves
are tested against PostgreSQL in tests/integration/test_payment_path.py and test_gateway_checkout.py."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.domain import PaymentRequest
from shared.errors import ErrorKind, Invalid
from shared.outcomes import EnqueueOutcome
from shared.ports import SqlParams
from shared.services.intake import accept_payment, enqueue_refusal
from tests.unit.fakes import FakeDb, FakeDeps, FakeGateway, FakeQueue, Rows

SHOPPER = "shopper-1"
WALLET_PAYMENT = PaymentRequest(order_id=7, method="wallet")


def recorded(outcome: EnqueueOutcome) -> FakeDb:
    """pq_enqueue_job answering the outcome, for a job queued at place 3 in line: a job it creates gets the id
    the intake gave it (the one its message names), a replayed one its own."""

    def answer(params: SqlParams) -> Rows:
        job_id = list(params)[6] if outcome is EnqueueOutcome.CREATED else uuid.uuid4()
        return [{"outcome": outcome.value, "job_id": job_id, "status": "queued", "queue_seq": 3, "finished": 0}]

    return FakeDb({"pq_enqueue_job": answer})


@pytest.mark.parametrize(
    ("outcome", "columns", "kind", "code", "details"),
    [
        (EnqueueOutcome.ORDER_NOT_FOUND, {}, ErrorKind.NOT_FOUND, "order_not_found", {}),
        (
            EnqueueOutcome.ORDER_NOT_PAYABLE,
            {"reason": "paid"},
            ErrorKind.CONFLICT,
            "order_not_payable",
            {"order_status": "paid"},
        ),
        (EnqueueOutcome.KEY_REUSED, {}, ErrorKind.CONFLICT, "idempotency_key_reused", {}),
        (
            EnqueueOutcome.PAYMENT_IN_PROGRESS,
            {"job_id": "j-1"},
            ErrorKind.CONFLICT,
            "payment_in_progress",
            {"job_id": "j-1"},
        ),
        (
            EnqueueOutcome.GATEWAY_REF_IN_USE,
            {"job_id": "j-2"},
            ErrorKind.CONFLICT,
            "gateway_payment_in_use",
            {"job_id": "j-2"},
        ),
        (EnqueueOutcome.SOLD_OUT, {"sold_out": [4, 9]}, ErrorKind.CONFLICT, "sold_out", {"product_ids": [4, 9]}),
        (EnqueueOutcome.CHECKOUT_REQUIRED, {}, ErrorKind.CONFLICT, "checkout_required", {}),
        (EnqueueOutcome.GATEWAY_ORDER_MISMATCH, {}, ErrorKind.CONFLICT, "gateway_order_mismatch", {}),
    ],
)
def test_each_refused_intake_outcome_has_its_kind_code_and_details(
    outcome: EnqueueOutcome, columns: dict[str, Any], kind: ErrorKind, code: str, details: dict[str, Any]
) -> None:
    refusal = enqueue_refusal(outcome, columns, "razorpay")

    assert refusal is not None
    assert (refusal.kind, refusal.code, refusal.details) == (kind, code, details)


@pytest.mark.parametrize("outcome", [EnqueueOutcome.CREATED, EnqueueOutcome.REPLAYED])
def test_a_job_made_or_replayed_is_not_refused(outcome: EnqueueOutcome) -> None:
    assert enqueue_refusal(outcome, {}, "wallet") is None


def test_the_shop_is_told_whose_order_was_not_found() -> None:
    shopper = enqueue_refusal(EnqueueOutcome.ORDER_NOT_FOUND, {}, "wallet", whose="shopper")
    user = enqueue_refusal(EnqueueOutcome.ORDER_NOT_FOUND, {}, "wallet")

    assert shopper is not None and shopper.message == "no such order for this shopper"
    assert user is not None and user.message == "no such order for this user"


def test_a_gateway_payment_whose_signature_does_not_verify_records_and_sends_nothing() -> None:
    # Given Razorpay enabled, and a page that sent a signature that is not Razorpay's
    queue = FakeQueue()
    deps = FakeDeps(db=FakeDb(), queue=queue, gateways={"razorpay": FakeGateway("razorpay", signature_valid=False)})
    request = PaymentRequest(
        order_id=7,
        method="razorpay",
        razorpay_order_id="order_A1",
        razorpay_payment_id="pay_B2",
        razorpay_signature="forged",
    )

    # When the payment is asked for
    with pytest.raises(Invalid) as refused:
        accept_payment(deps, SHOPPER, "key-1", request)

    # Then it is refused naming the signature, and nothing was recorded or queued
    assert (refused.value.code, refused.value.details) == ("gateway_signature_invalid", {"field": "razorpay_signature"})
    assert deps.db.calls == [] and queue.sent == []


def test_a_job_recorded_for_a_queue_outside_the_database_is_sent_after_commit_grouped_by_shopper() -> None:
    # Given an SQS-like queue (the intake statement cannot send to it)
    queue = FakeQueue()
    deps = FakeDeps(db=recorded(EnqueueOutcome.CREATED), queue=queue)

    # When a wallet payment is accepted
    accepted = accept_payment(deps, SHOPPER, "key-1", WALLET_PAYMENT)

    # Then its one message went out after the statement, in the shopper's group, naming the job it made
    [message] = queue.sent
    assert (message.job_id, message.group_id) == (accepted.body["job_id"], SHOPPER)
    assert (accepted.replayed, accepted.body["status"], accepted.body["position"]) == (False, "queued", 3)
    # And the statement was told to send nothing itself
    [params] = deps.db.called("pq_enqueue_job")
    assert list(params)[-3:] == [None, None, None]


def test_a_job_the_intake_statement_sent_itself_is_not_sent_again() -> None:
    # Given a PGMQ-like queue, which the intake statement sends to in its own transaction
    queue = FakeQueue(in_database=True)
    deps = FakeDeps(db=recorded(EnqueueOutcome.CREATED), queue=queue)

    accept_payment(deps, SHOPPER, "key-1", WALLET_PAYMENT)

    [params] = deps.db.called("pq_enqueue_job")
    assert list(params)[-3] == "jobs" and queue.sent == []


def test_a_replayed_request_sends_nothing() -> None:
    queue = FakeQueue()
    deps = FakeDeps(db=recorded(EnqueueOutcome.REPLAYED), queue=queue)

    accepted = accept_payment(deps, SHOPPER, "key-1", WALLET_PAYMENT)

    assert accepted.replayed and queue.sent == []


def test_a_job_whose_send_fails_is_still_accepted_for_the_sweeper_to_send() -> None:
    # Given a queue that is down
    deps = FakeDeps(db=recorded(EnqueueOutcome.CREATED), queue=FakeQueue(fail_sends=True))

    # When a payment is accepted
    accepted = accept_payment(deps, SHOPPER, "key-1", WALLET_PAYMENT)

    # Then the shopper still gets their job (recorded, unconfirmed: pq_unsent_jobs finds it)
    assert (accepted.replayed, accepted.body["status"]) == (False, "queued")

"""Accepting a payment request (functions/enqueue): validate, record the job, queue it."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from shared.domain import (
    BARE_REFERENCE_FIELDS,
    CHECKOUT_FIELDS,
    IDEMPOTENCY_KEY_MAX,
    IDEMPOTENCY_KEY_PATTERN,
    PAYMENT_REF_FIELDS,
    PaymentRequest,
    validated,
)
from shared.errors import (
    Conflict,
    DomainError,
    Invalid,
    Malformed,
    key_reused,
    method_not_supported,
    order_not_found,
    order_not_payable,
    payment_in_progress,
    sold_out,
)
from shared.gateways import GATEWAY_NAMES
from shared.gateways.port import PaymentGateway
from shared.observability import logger
from shared.outcomes import EnqueueOutcome
from shared.ports import HasDb, HasGateways, HasQueue, QueueMessage
from shared.services.reads import JobViewDeps, job_view


class SendDeps(HasDb, HasQueue, Protocol):
    """What sending recorded jobs uses: the queue, and the books to mark them sent."""


class IntakeDeps(JobViewDeps, HasQueue, HasGateways, Protocol):
    """What accepting a payment uses: the books, the queue, the gateways that verify a checkout's payment,
    and what a job's view needs."""


@dataclass(frozen=True)
class Accepted:
    body: dict[str, Any]
    replayed: bool


def parse_json_object(raw_body: str | None) -> dict[str, Any]:
    """A request body that must be a JSON object; anything else is invalid_json."""
    if not raw_body:
        raise Malformed("invalid_json", "request body must be a JSON object")
    try:
        data = json.loads(raw_body)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and also an integer of more digits than Python converts
        # (sys.get_int_max_str_digits, 4,300 by default), which is not a JSON syntax error.
        raise Malformed("invalid_json", "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Malformed("invalid_json", "request body must be a JSON object")
    return data


def parse_payment_request(raw_body: str | None, enabled_methods: Collection[str] = ("wallet",)) -> PaymentRequest:
    data = parse_json_object(raw_body)
    method = data.get("method")
    if method in GATEWAY_NAMES:
        if method not in enabled_methods:
            raise method_not_supported(method)
        # The old flow named a gateway payment with nothing binding it to the order or the shopper.
        bare = [f for f in BARE_REFERENCE_FIELDS if f in data]
        if PAYMENT_REF_FIELDS.get(method) in data:
            bare += [f for f in CHECKOUT_FIELDS[method] if f not in data]
        if bare:
            handed = "; ".join(f"{m}: {', '.join(CHECKOUT_FIELDS.get(m, ())) or '-'}" for m in GATEWAY_NAMES)
            raise Invalid(
                "bare_gateway_reference",
                "a gateway payment is accepted only through its checkout: POST /v1/checkouts first, then send "
                f"order_id, method and what the gateway's checkout handed the page ({handed})",
                field=bare[0],
            )
    return validated(PaymentRequest, data)


def validate_idempotency_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise Malformed("idempotency_key_required", "the Idempotency-Key header is required")
    if not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key):
        raise Malformed(
            "idempotency_key_invalid",
            f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} printable ASCII characters, no space at either end",
        )
    return key


def job_message(job_id: str, user_id: str, order_id: int, method: str, parks: int = 0) -> QueueMessage:
    """The queue message for a job: grouped by user (per-user order), deduplicated by job id (and, for
    a job sent again after waiting for its gateway, the times it was parked)."""
    return QueueMessage(
        job_id=job_id,
        group_id=user_id,
        body={"job_id": job_id, "user_id": user_id, "order_id": order_id, "method": method},
        dedup_id=f"{job_id}.{parks}" if parks else None,
    )


def enabled_gateway(deps: HasGateways, method: str) -> PaymentGateway:
    """The method's gateway, or method_not_supported: it is not enabled in this deployment."""
    gateway = deps.gateways.get(method)
    if gateway is None:
        raise method_not_supported(method)
    return gateway


def _verified_checkout_payment(deps: HasGateways, request: PaymentRequest) -> tuple[str | None, str | None]:
    """(gateway order id, payment reference) the page sent, once its gateway's signature over them verifies."""
    gateway = enabled_gateway(deps, request.method)
    if not gateway.checkout_signature_valid(request):
        signed = CHECKOUT_FIELDS.get(request.method, ())
        raise Invalid(
            "gateway_signature_invalid",
            "the signature is not the gateway's signature of this order and payment",
            field=signed[-1] if signed else "method",
        )
    return gateway.handed(request)


def _record(
    deps: IntakeDeps, user_id: str, idempotency_key: str, request: PaymentRequest, message: QueueMessage
) -> tuple[dict[str, Any], bool]:
    """The intake's one statement; and whether it sent the job's message itself, in its transaction
    (a queue in the jobs' database), should it create the job (message names the id it gets)."""
    in_transaction = deps.queue.in_transaction(message)
    send = (
        (uuid.UUID(message.job_id), in_transaction.queue, in_transaction.body, in_transaction.headers)
        if in_transaction is not None
        else (uuid.UUID(message.job_id), None, None, None)
    )
    if request.method == "wallet":
        row = deps.db.fetch_one(
            "SELECT * FROM pq_enqueue_job(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)",
            (user_id, idempotency_key, request.fingerprint(), request.order_id, request.method, None, *send),
        )
    else:
        gateway_order_id, payment_ref = _verified_checkout_payment(deps, request)
        row = deps.db.fetch_one(
            "SELECT * FROM pq_enqueue_gateway_job(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)",
            (
                user_id,
                idempotency_key,
                request.fingerprint(),
                request.order_id,
                request.method,
                gateway_order_id,
                payment_ref,
                *send,
            ),
        )
    assert row is not None
    return row, in_transaction is not None


def send_jobs(deps: SendDeps, messages: list[QueueMessage]) -> int:
    """Send recorded jobs and mark them sent; a failed send leaves them to the sweeper."""
    if not messages:
        return 0
    try:
        if sent := deps.queue.send(messages):
            deps.db.execute("SELECT pq_mark_jobs_sent(%s::uuid[])", (sent,))  # relaxed commit: see intake.sql
            return len(sent)
    except Exception:  # the jobs are recorded; the sweeper will deliver them
        logger.exception("queue send failed; left for the sweeper", jobs=len(messages))
    return 0


def send_recorded(deps: HasQueue, message: QueueMessage) -> None:
    """The message of a job just recorded, sent after commit to a queue outside the database (SQS). A send
    that fails leaves the job unconfirmed, and the sweeper sends it (pq_unsent_jobs)."""
    try:
        deps.queue.send([message])
    except Exception:  # the job is recorded; the sweeper will deliver it
        logger.exception("queue send failed; left for the sweeper", job_id=message.job_id)


def enqueue_refusal(
    outcome: EnqueueOutcome, row: dict[str, Any], method: str, whose: str = "user"
) -> DomainError | None:
    """What an intake statement's outcome refuses (pq_enqueue_job, pq_enqueue_gateway_job, pq_merchant_enqueue),
    or None for a job made or replayed. whose: who the order must belong to, as the message says."""
    if outcome is EnqueueOutcome.CHECKOUT_REQUIRED:
        return Conflict("checkout_required", f"open a checkout for this order first (POST /v1/checkouts, {method})")
    if outcome is EnqueueOutcome.GATEWAY_ORDER_MISMATCH:
        return Conflict("gateway_order_mismatch", "this gateway order was not created for this order and this shopper")
    if outcome is EnqueueOutcome.ORDER_NOT_FOUND:
        return order_not_found(whose)
    if outcome is EnqueueOutcome.ORDER_NOT_PAYABLE:
        return order_not_payable(row["reason"])
    if outcome is EnqueueOutcome.KEY_REUSED:
        return key_reused()
    if outcome is EnqueueOutcome.GATEWAY_REF_IN_USE:
        return Conflict(
            "gateway_payment_in_use", "this gateway payment already pays another job", job_id=str(row["job_id"])
        )
    if outcome is EnqueueOutcome.PAYMENT_IN_PROGRESS:
        return payment_in_progress(str(row["job_id"]))
    if outcome is EnqueueOutcome.SOLD_OUT:
        return sold_out([int(p) for p in row["sold_out"]])
    return None


def accept_payment(deps: IntakeDeps, user_id: str, idempotency_key: str, request: PaymentRequest) -> Accepted:
    """Record the job and its send in one round trip; on SQS, send it after commit.

    A queue in the jobs' database (PGMQ) gets the message in the recording transaction itself. SQS gets
    it after commit, and nothing is written back: if the send fails or this process dies first, the job
    stays unconfirmed and the sweeper sends it once the line has passed it or stalled (pq_unsent_jobs in
    shared/sql/intake.sql says why no job is lost and why a sent one is not sent twice).
    """
    job_id = str(uuid.uuid4())
    message = job_message(job_id, user_id, request.order_id, request.method)
    row, sent_in_transaction = _record(deps, user_id, idempotency_key, request, message)
    outcome = EnqueueOutcome(row["outcome"])
    if refusal := enqueue_refusal(outcome, row, request.method):
        raise refusal

    if outcome is EnqueueOutcome.CREATED and not sent_in_transaction:
        send_recorded(deps, message)
    body = job_view(deps, row | {"id": str(row["job_id"]), "user_id": user_id, "order_id": request.order_id})
    return Accepted(body=body, replayed=outcome is EnqueueOutcome.REPLAYED)

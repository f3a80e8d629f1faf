"""Gateway-funded payments (Razorpay, Cashfree): verify the payment belongs to the job's checkout,
capture it, complete in one DB transaction, refund what was captured for an order we cannot fulfil.

No DB transaction is open while a request is at the gateway: each DB step is one SQL function in
one round trip (shared/sql/gateway_payment.sql), committed before the next request leaves. Every
request takes a token of its endpoint's shared bucket first (shared/gateway_limits.py). Per delivery:

    begin (lock job, record the attempt, take the first token)
    Razorpay: fetch the payment; it must belong to the checkout's Razorpay order, for its amount, with
      nothing refunded (else the job fails and nothing is refunded: it is not our payment to refund)
      captured   -> complete (payment, order, stock, job, event)  [or refund if unfulfillable]
      authorized -> step (token, capture_sent_at) -> capture -> complete
      failed     -> fail (the checkout stays payable; a late authorisation gets a job of its own)
    Cashfree: fetch the checkout's order
      PAID       -> its SUCCESS payment -> complete  [or refund if unfulfillable]
      ACTIVE, or EXPIRED / TERMINATION_REQUESTED within the grace -> park: no message, the group free,
                    a webhook or the sweeper's reconciliation sends the job again
      TERMINATED, or EXPIRED past the grace -> fail

A job without a checkout (the old flow's bare reference) fails gateway_payment_unbound without a call.
A capture whose answer was lost is settled on the next delivery by the fetch that starts it. A 429 or
5xx hands the message back to the queue with a later visibility instead of sleeping. So does a token
not there within limiter_max_wait_ms: the job reserves the bucket's next free slot and its message
comes back then, once, to use it (_wait_for_token).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit

from shared.bootstrap import App
from shared.domain import (
    FailureReason,
    GatewayRejected,
    GatewayRetryable,
    PaymentOutcome,
    PoisonMessageError,
    RetryLater,
    build_event,
    full_jitter_backoff,
)
from shared.gateway_limits import Gateway, bucket
from shared.observability import logger, metrics
from shared.outcomes import GatewayBeginOutcome, GatewayEndOutcome
from shared.ports import GatewayPayment, GatewayRefund, PaymentGateway, RazorpayApi, RefundState
from shared.services.intake import job_message, send_jobs

# The endpoint of each step's request, per gateway (shared/gateway_limits.py names); the sweeper's refund
# requests use the same (shared/services/reconcile.py).
ENDPOINTS: dict[str, dict[str, str]] = {
    "razorpay": {
        "fetch": "fetch_payment",
        "capture": "capture",
        "refund": "refund",
        "find_refund": "fetch_refund",
        "refunds": "fetch_refund",
    },
    "cashfree": {
        "fetch": "get_order",
        "payments": "get_payments",
        "refund": "create_refund",
        "find_refund": "get_refund",
        "refunds": "get_refund",
    },
}

T = TypeVar("T")


def first_bucket(app: App, gateway: str) -> tuple[str, float, float]:
    """The bucket of a delivery's first request (taken by pq_gateway_begin)."""
    name: Gateway = "cashfree" if gateway == "cashfree" else "razorpay"
    return bucket(app.settings, name, ENDPOINTS[name]["fetch"])


@dataclass(frozen=True)
class _Job:
    job_id: str
    gateway: str
    ref: str
    amount_paise: int
    currency: str
    problem: str | None  # why the order cannot be fulfilled now (None: it can)
    refund_ref: str  # our idempotency reference for a refund, fixed per job (pq_gateway_begin)
    refund_sent: bool
    refund_reason: str | None
    # The binding: the checkout's gateway order and its amount (None: an old-flow job, unbound).
    checkout_id: str | None = None
    gateway_order_id: str | None = None
    checkout_amount_paise: int | None = None
    checkout_currency: str | None = None
    checkout_expires_at: datetime | None = None


class _Run:
    """One delivery of one gateway job."""

    def __init__(self, app: App, job: _Job, gateway: PaymentGateway) -> None:
        self.app = app
        self.job = job
        self.gateway = gateway

    def token(
        self, step: str, endpoint: str | None = None, reason: str | None = None, first: dict[str, Any] | None = None
    ) -> None:
        """A token of the endpoint's shared bucket, or the one this job reserved once its slot has come.
        A short wait is slept (limiter_max_wait_ms); a longer one reserves the slot, and the message is
        handed back until then (GatewayRetryable limited). step capture / refund also records that the
        request is about to leave (pq_gateway_step)."""
        name: Gateway = "cashfree" if self.job.gateway == "cashfree" else "razorpay"
        bucket_name, rate, burst = bucket(self.app.settings, name, ENDPOINTS[name][endpoint or step])
        reserve_ms = self.app.settings.limiter_max_reserve_s * 1000
        waited_ms = 0
        # pq_gateway_begin never reserves: without its token, pq_gateway_step is asked, which does.
        row = first if first is not None and first["granted"] else None
        while True:
            if row is None:
                row = self.app.db.fetch_one(
                    "SELECT * FROM pq_gateway_step(%s, %s, %s, %s, %s, %s, %s, %s)",
                    (uuid.UUID(self.job.job_id), step, bucket_name, rate, burst, 1, reason, reserve_ms),
                )
                assert row is not None
            if row["granted"]:
                if waited_ms:
                    metrics.add_metric(name="LimiterWaits", unit=MetricUnit.Count, value=1)
                    metrics.add_metric(name="LimiterWaitMs", unit=MetricUnit.Milliseconds, value=waited_ms)
                return
            wait_ms = int(row["wait_ms"])
            if waited_ms + wait_ms > self.app.settings.limiter_max_wait_ms:
                raise GatewayRetryable("limited", f"no {self.job.gateway} token for {wait_ms} ms", wait_ms / 1000)
            time.sleep(wait_ms / 1000)
            waited_ms += wait_ms
            row = None

    def settle(self, first_token: dict[str, Any]) -> PaymentOutcome:
        if self.job.checkout_id is None:
            # The old flow's bare reference: nothing binds it to this order or shopper. Never captured,
            # never refunded by us (Razorpay refunds an uncaptured payment by itself).
            return self.fail(FailureReason.GATEWAY_PAYMENT_UNBOUND)
        if self.job.gateway == "razorpay":
            return self.settle_razorpay(first_token)
        return self.settle_cashfree(first_token)

    def fetch(self, first_token: dict[str, Any], call: Callable[[], T]) -> T | None:
        """The first request of a delivery (its token taken by pq_gateway_begin): None when the gateway
        knows no such payment or order (400/404); other refusals and retryable errors propagate."""
        self.token("fetch", first=first_token)
        try:
            return call()
        except GatewayRejected as exc:
            if exc.status in (400, 404):
                return None
            raise

    def settle_razorpay(self, first_token: dict[str, Any]) -> PaymentOutcome:
        job, api = self.job, self.app.razorpay
        assert api is not None
        payment = self.fetch(first_token, lambda: api.fetch_payment(job.ref))
        if payment is None:
            return self.fail(FailureReason.GATEWAY_PAYMENT_NOT_FOUND)
        if payment.order_id is None or payment.order_id != job.gateway_order_id:
            return self.fail(FailureReason.GATEWAY_ORDER_MISMATCH)
        if job.refund_sent:  # an earlier delivery sent a refund: finish that, whatever the order's state now
            return self.refund(payment, job.refund_reason or FailureReason.OUT_OF_STOCK, payment.amount_paise)
        if payment.status == "refunded" or payment.amount_refunded_paise:
            # Refunded at the gateway (the merchant's dashboard, or Razorpay returning an authorisation
            # never captured): amount_refunded is free to read; which refunds, only by listing them.
            self.token("fetch", endpoint="refunds")
            return self.refunded_at_gateway(payment, self.gateway.refunds(job.ref))
        return self.razorpay_verdict(api, payment)

    def razorpay_verdict(self, api: RazorpayApi, payment: GatewayPayment) -> PaymentOutcome:
        """A payment of the checkout's own Razorpay order, nothing refunded: capture, complete or fail."""
        job = self.job
        if payment.status == "captured":
            if job.problem:
                return self.refund(payment, job.problem, payment.amount_paise)
            return self.complete(payment)
        if payment.status == "authorized":
            # The checkout's amount and the order's now (an order changed since its checkout): both, or
            # nothing is captured and the authorisation lapses (booked as released).
            amount = (payment.amount_paise, payment.currency)
            if amount != (job.checkout_amount_paise, job.checkout_currency) or amount != (
                job.amount_paise,
                job.currency,
            ):
                return self.fail(FailureReason.AMOUNT_MISMATCH, release=payment)
            if job.problem:
                return self.fail(job.problem, release=payment)
            self.token("capture")
            captured = api.capture(job.ref, payment.amount_paise, payment.currency)
            if captured.status != "captured":
                raise GatewayRetryable("unknown_outcome", f"capture answered {captured.status}", 0)
            metrics.add_metric(name="GatewayCaptures", unit=MetricUnit.Count, value=1)
            return self.complete(captured)
        if payment.status in ("created", "pending"):
            raise GatewayRetryable("pending", "payment not final at the gateway yet")
        return self.fail(FailureReason.GATEWAY_PAYMENT_FAILED)

    def refunded_at_gateway(self, payment: GatewayPayment, refunds: list[GatewayRefund]) -> PaymentOutcome:
        """Refunds made at the gateway before we decided: booked, and the order is never fulfilled with any
        of its money gone. What is left captured goes back to the shopper; never more than that (a refund
        above the refundable amount is refused by both gateways)."""
        job = self.job
        if not payment.captured:  # an authorisation the gateway returned by itself: no money held
            return self.fail(FailureReason.GATEWAY_PAYMENT_REFUNDED, checkout_status="refunded", release=payment)
        self.book_refunds(payment, refunds)
        returned = sum(r.amount_paise for r in refunds if r.state is not RefundState.FAILED)
        logger.warning(
            "gateway payment refunded at the gateway", job_id=job.job_id, gateway=job.gateway, refunded_paise=returned
        )
        if payment.amount_paise > returned:
            return self.refund(payment, FailureReason.GATEWAY_PAYMENT_REFUNDED, payment.amount_paise - returned)
        return self.fail(FailureReason.GATEWAY_PAYMENT_REFUNDED, checkout_status="refunded")

    def book_refunds(self, payment: GatewayPayment, refunds: list[GatewayRefund]) -> None:
        """The payment's refunds as the gateway listed them, each reported to the books (pq_refund_reported)."""
        self.app.db.fetch_one(
            "SELECT pq_gateway_refunds_seen(%s, %s, %s, %s)",
            (
                uuid.UUID(self.job.job_id),
                json.dumps(
                    [
                        {
                            "gateway_refund_id": r.refund_id,
                            "refund_ref": r.merchant_ref,
                            "amount_paise": r.amount_paise,
                            "currency": r.currency,
                            "state": r.state.value,
                            "gateway_status": r.gateway_status,
                        }
                        for r in refunds
                    ]
                ),
                payment.currency,
                payment.amount_paise,
            ),
        )

    def settle_cashfree(self, first_token: dict[str, Any]) -> PaymentOutcome:
        job, api = self.job, self.app.cashfree
        assert api is not None
        order = self.fetch(first_token, lambda: api.fetch_order(job.ref))
        if order is None:
            return self.fail(FailureReason.GATEWAY_PAYMENT_NOT_FOUND)
        if order.order_id != job.gateway_order_id:
            return self.fail(FailureReason.GATEWAY_ORDER_MISMATCH)
        if order.status == "PAID":
            self.token("payments")
            paid = next((p for p in api.order_payments(job.ref) if p.gateway_status == "SUCCESS"), None)
            if paid is None:  # PAID before its payment is listed: look again shortly
                raise GatewayRetryable("pending", "order paid, its payment not listed yet")
            # Refunds go by order at Cashfree: the job's reference is the order.
            payment = GatewayPayment(
                job.ref, "captured", paid.amount_paise, paid.currency, job.ref, 0, "SUCCESS", captured=True
            )
            if job.refund_sent:
                return self.refund(payment, job.refund_reason or FailureReason.OUT_OF_STOCK, payment.amount_paise)
            # Cashfree's order and payment say nothing of refunds made in its dashboard. Cashfree reports
            # every refund by REFUND_STATUS_WEBHOOK, which the books record (pq_refund_reported) and the
            # fulfilment then refuses; the webhook is sent when the refund is processed, so a payment completed
            # longer ago than cashfree_refunds_read_after_s may have one pending that nothing reported yet:
            # its refunds are read first (a Get Refund token each, 30 a minute published, which a flash sale
            # of fresh payments does not spend).
            if not self.fresh(paid, self.app.settings.cashfree_refunds_read_after_s):
                self.token("fetch", endpoint="refunds")
                refunds = self.gateway.refunds(job.ref)
                if any(r.state is not RefundState.FAILED for r in refunds):
                    return self.refunded_at_gateway(payment, refunds)
            if job.problem:
                return self.refund(payment, job.problem, payment.amount_paise)
            return self.complete(payment)
        if order.status == "TERMINATED":
            return self.fail(FailureReason.GATEWAY_PAYMENT_FAILED, checkout_status="failed")
        grace = timedelta(seconds=self.app.settings.checkout_settle_grace_s)
        expires_at = job.checkout_expires_at or datetime.now(UTC)
        if order.status in ("EXPIRED", "TERMINATION_REQUESTED") and datetime.now(UTC) > expires_at + grace:
            return self.fail(FailureReason.GATEWAY_CHECKOUT_EXPIRED, checkout_status="expired")
        # ACTIVE (attempts FAILED, USER_DROPPED, PENDING or none yet), or recently EXPIRED: not final.
        return self.park()

    def _outcome(self, row: dict[str, Any] | None) -> PaymentOutcome:
        assert row is not None
        return PaymentOutcome(
            job_id=self.job.job_id,
            outcome=GatewayEndOutcome(row["outcome"]),
            reason=row["reason"],
            payment_id=row["payment_id"],
            event=build_event(row["event"]) if row["event"] else None,
        )

    def fail(
        self, reason: str, checkout_status: str | None = None, release: GatewayPayment | None = None
    ) -> PaymentOutcome:
        """End the job unpaid; release: an authorisation of its checkout we will never capture."""
        return self._outcome(
            self.app.db.fetch_one(
                "SELECT * FROM pq_gateway_fail(%s, %s, %s, %s, %s)",
                (
                    uuid.UUID(self.job.job_id),
                    reason,
                    checkout_status,
                    None if release is None else release.amount_paise,
                    None if release is None else release.currency,
                ),
            )
        )

    def park(self) -> PaymentOutcome:
        row = self.app.db.fetch_one("SELECT * FROM pq_gateway_park(%s)", (uuid.UUID(self.job.job_id),))
        assert row is not None
        if row["resend"]:  # its success webhook came while we were fetching: look again at once
            send_jobs(
                self.app,
                [job_message(self.job.job_id, row["user_id"], row["order_id"], self.job.gateway, row["parks"])],
            )
        metrics.add_metric(name="GatewayJobsParked", unit=MetricUnit.Count, value=1)
        return PaymentOutcome(
            job_id=self.job.job_id,
            outcome=GatewayEndOutcome(row["outcome"]),
            reason=row["reason"],
            payment_id=row["payment_id"],
        )

    @staticmethod
    def fresh(payment: GatewayPayment, within_s: float) -> bool:
        """The gateway says the payment completed less than within_s ago (unknown: not fresh)."""
        if payment.completed_at is None:
            return False
        return datetime.now(UTC) - payment.completed_at < timedelta(seconds=within_s)

    def complete(self, payment: GatewayPayment, *, looked: bool = False) -> PaymentOutcome:
        row = self.app.db.fetch_one(
            "SELECT * FROM pq_complete_gateway_payment(%s, %s, %s)",
            (uuid.UUID(self.job.job_id), payment.amount_paise, payment.currency),
        )
        assert row is not None
        refund_required = row["outcome"] == GatewayEndOutcome.REFUND_REQUIRED
        if refund_required and row["reason"] == FailureReason.GATEWAY_PAYMENT_REFUNDED:
            # A refund made at the gateway, reported by webhook after the job read the payment: what is left
            # of the payment goes back (the refunds are read for the amounts, as before fulfilling).
            self.token("fetch", endpoint="refunds")
            refunds = self.gateway.refunds(self.job.ref)
            if any(r.state is not RefundState.FAILED for r in refunds):
                return self.refunded_at_gateway(payment, refunds)
            if looked:  # the gateway does not list the refund the webhook reported yet: look again later
                raise GatewayRetryable("pending", "a refund reported by webhook is not listed yet")
            self.book_refunds(payment, refunds)  # it failed since: the payment is whole again
            return self.complete(payment, looked=True)
        if refund_required:
            return self.refund(payment, row["reason"], payment.amount_paise)
        return self._outcome(row)

    def refund(self, payment: GatewayPayment, reason: str, amount_paise: int) -> PaymentOutcome:
        """Refund amount_paise of a payment of the job's own checkout (the only kind this is ever called for),
        booked before it leaves (pq_refund_request), with the gateway's idempotency: Razorpay
        X-Refund-Idempotency, Cashfree refund_id + x-idempotency-key. A refund the gateway refuses outright is
        owed at once; one it fails later is retried by the sweeper, then owed (pq_refund_settled)."""
        job = self.job
        request = self.app.db.fetch_one(
            "SELECT * FROM pq_refund_request(%s, %s, %s, %s, %s)",
            (uuid.UUID(job.job_id), amount_paise, payment.currency, reason, payment.amount_paise),
        )
        assert request is not None
        refund = None
        if job.refund_sent:  # a refund sent before whose answer was lost is looked up first
            self.token("fetch", endpoint="find_refund")
            refund = self.gateway.find_refund(job.ref, request["refund_ref"])
        if refund is None:
            self.token("refund", reason=reason)
            try:
                refund = self.gateway.refund(job.ref, request["amount_paise"], payment.currency, request["refund_ref"])
            except GatewayRejected as exc:
                # Refused -- unless an earlier send under this reference went through (its answer lost): the
                # gateway's word for that is a refusal too, so the reference is looked up before owing it.
                self.token("fetch", endpoint="find_refund")
                found = self.gateway.find_refund(job.ref, request["refund_ref"])
                if found is None:
                    self.app.db.execute("SELECT pq_refund_refused(%s, %s)", (request["refund_id"], str(exc)))
                    refund_failed(job.job_id, job.gateway, request["refund_id"], owed=True, error=str(exc))
                    return self.fail(reason, checkout_status="refunded")
                refund = found
        metrics.add_metric(name="GatewayRefunds", unit=MetricUnit.Count, value=1)
        logger.warning("gateway payment refunded", job_id=job.job_id, gateway=job.gateway, reason=reason)
        row = self.app.db.fetch_one(
            "SELECT * FROM pq_gateway_refunded(%s, %s, %s, %s, %s, %s)",
            (
                uuid.UUID(job.job_id),
                reason,
                request["refund_id"],
                refund.refund_id,
                refund.state.value,
                refund.gateway_status,
            ),
        )
        assert row is not None
        if row["refund_failed"]:
            refund_failed(job.job_id, job.gateway, request["refund_id"], owed=bool(row["refund_owed"]))
        return self._outcome(row)


def refund_failed(job_id: str, gateway: str, refund_id: int, *, owed: bool, error: str | None = None) -> None:
    """Every path that learns a refund failed (processor, webhook, sweeper) says so the same way. Owed (its
    attempts spent, or refused outright): the RefundsFailed metric, whose alarm calls an operator (POST
    /v1/refunds/{id}/retry), and an error line. Else a RefundRetries count and a warning: the sweeper sends
    it again with a fresh reference (pq_refund_policy)."""
    if owed:
        metrics.add_metric(name="RefundsFailed", unit=MetricUnit.Count, value=1)
        logger.error("gateway refund owed", job_id=job_id, gateway=gateway, refund_id=refund_id, error=error)
    else:
        metrics.add_metric(name="RefundRetries", unit=MetricUnit.Count, value=1)
        logger.warning("gateway refund failed; retried later", job_id=job_id, gateway=gateway, refund_id=refund_id)


def process_gateway_job(
    app: App, job_id: str, method: str, *, receipt_handle: str, receive_count: int
) -> PaymentOutcome:
    """One delivery of a gateway job. Raises RetryLater after handing the message back."""
    bucket_name, rate, burst = first_bucket(app, method)
    row = app.db.fetch_one(
        "SELECT * FROM pq_gateway_begin(%s, %s, %s, %s)", (uuid.UUID(job_id), rate, burst, bucket_name)
    )
    assert row is not None
    begin = GatewayBeginOutcome(row["outcome"])
    if begin in (GatewayBeginOutcome.JOB_NOT_FOUND, GatewayBeginOutcome.NOT_A_GATEWAY_JOB):
        raise PoisonMessageError(f"job {job_id}: {begin}")
    if begin is not GatewayBeginOutcome.PROCEED:
        return PaymentOutcome(
            job_id=job_id, outcome=GatewayEndOutcome(begin), reason=row["reason"], payment_id=row["payment_id"]
        )
    gateway = app.gateways.get(row["gateway"])
    if gateway is None:  # a deployment fault, not the shopper's: retried, then dead-lettered
        raise RuntimeError(f"gateway {row['gateway']} is not configured")
    job = _Job(
        job_id=job_id,
        gateway=row["gateway"],
        ref=row["gateway_ref"],
        amount_paise=row["amount_paise"],
        currency=row["currency"],
        problem=row["problem"],
        refund_ref=row["refund_ref"],
        refund_sent=row["refund_sent"],
        refund_reason=row["refund_reason"],
        checkout_id=str(row["checkout_id"]) if row["checkout_id"] else None,
        gateway_order_id=row["gateway_order_id"],
        checkout_amount_paise=row["checkout_amount_paise"],
        checkout_currency=row["checkout_currency"].strip() if row["checkout_currency"] else None,
        checkout_expires_at=row["checkout_expires_at"],
    )
    try:
        outcome = _Run(app, job, gateway).settle(row)
        # A gateway payment, which called out, gets its INFO line (a wallet payment only its batch's).
        logger.info(
            "payment processed",
            job_id=job_id,
            gateway=job.gateway,
            outcome=outcome.outcome,
            reason=outcome.reason,
            receive_count=receive_count,
        )
        return outcome
    except GatewayRetryable as exc:
        if exc.kind == "limited":
            return _wait_for_token(app, job, exc, receipt_handle=receipt_handle, receive_count=receive_count)
        delay = full_jitter_backoff(
            receive_count,
            exc.retry_after_s,
            base_s=app.settings.gateway_backoff_base_s,
            cap_s=app.settings.gateway_backoff_cap_s,
        )
        if exc.kind in ("throttled", "unavailable", "unknown_outcome"):
            app.db.execute(
                "SELECT pq_gateway_setback(%s, %s, %s)",
                (uuid.UUID(job_id), "throttled" if exc.kind == "throttled" else "unavailable", str(exc)),
            )
        app.queue.change_visibility(receipt_handle, delay)
        metrics.add_metric(name="GatewayBackoffs", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="GatewayBackoffSeconds", unit=MetricUnit.Seconds, value=delay)
        if exc.kind == "throttled":
            metrics.add_metric(name="GatewayThrottled", unit=MetricUnit.Count, value=1)
        logger.info(
            "gateway retry later",
            job_id=job_id,
            gateway=job.gateway,
            kind=exc.kind,
            delay_s=delay,
            receive_count=receive_count,
        )
        raise RetryLater(str(exc), delay) from exc


def _wait_for_token(
    app: App, job: _Job, exc: GatewayRetryable, *, receipt_handle: str, receive_count: int
) -> PaymentOutcome:
    """Hand the message back until the job's reserved slot (past limiter_max_reserve_s, until the bucket
    has a token): exactly then, no backoff or jitter, since the slot is the job's alone and each
    hand-back costs a receive. On the last receive maxReceiveCount allows, a message that only ever
    waited is consumed and the job sent again instead of going to the DLQ (pq_gateway_limited).
    Raises RetryLater after handing the message back."""
    row = app.db.fetch_one(
        "SELECT * FROM pq_gateway_limited(%s, %s, %s)",
        (uuid.UUID(job.job_id), receive_count, app.settings.max_receive_count),
    )
    assert row is not None
    if row["requeued"]:
        send_jobs(app, [job_message(job.job_id, row["user_id"], row["order_id"], job.gateway, row["parks"])])
        metrics.add_metric(name="LimiterRequeues", unit=MetricUnit.Count, value=1)
        logger.info(
            "gateway job sent again: its receives went to waiting for tokens",
            job_id=job.job_id,
            gateway=job.gateway,
            receive_count=receive_count,
        )
        return PaymentOutcome(job_id=job.job_id, outcome=GatewayEndOutcome.PARKED)
    # At most SQS's 12-hour visibility (ChangeMessageVisibility), also where the queue is PGMQ.
    delay = min(43_200, math.ceil(exc.retry_after_s or 0))
    app.queue.change_visibility(receipt_handle, delay)
    metrics.add_metric(name="LimiterHandBacks", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="LimiterHandBackSeconds", unit=MetricUnit.Seconds, value=delay)
    logger.info(
        "no gateway token yet; message back at its slot",
        job_id=job.job_id,
        gateway=job.gateway,
        delay_s=delay,
        receive_count=receive_count,
    )
    raise RetryLater(str(exc), delay) from exc

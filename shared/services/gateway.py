"""Gateway-funded payments (Razorpay, Cashfree): verify and capture at the gateway, complete in one
DB transaction, refund what was captured for an order we cannot fulfil.

No DB transaction is open while a request is at the gateway: each DB step is one SQL function in
one round trip (shared/sql/gateway_payment.sql), committed before the next request
leaves. Per delivery:

    begin (lock job, record the attempt, take the fetch token)  -> fetch the payment
      captured      -> complete (payment, order, stock, job, event)  [or refund if unfulfillable]
      authorized    -> step (token, capture_sent_at) -> capture -> complete
      pending       -> retry later
      failed / ...  -> fail the job

A capture whose answer was lost (timeout, 5xx after send) is settled on the next delivery by the
fetch that starts it: a payment shown captured is completed, never captured again; one still shown
authorized (the lost capture never took effect) gets another capture request. A 429 or 5xx hands
the message back to the queue with a later visibility (exponential backoff, full jitter,
Retry-After honoured) instead of sleeping.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

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
from shared.observability import logger, metrics
from shared.outcomes import GatewayBeginOutcome, GatewayEndOutcome
from shared.ports import GatewayPayment, PaymentGateway
from shared.settings import Settings


def limits(settings: Settings, gateway: str) -> tuple[float, float]:
    """The gateway's token bucket: (requests per second, burst)."""
    if gateway == "cashfree":
        return settings.cashfree_rate_per_s, settings.cashfree_burst
    return settings.razorpay_rate_per_s, settings.razorpay_burst


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


class _Run:
    """One delivery of one gateway job."""

    def __init__(self, app: App, job: _Job, gateway: PaymentGateway) -> None:
        self.app = app
        self.job = job
        self.gateway = gateway
        self.rate, self.burst = limits(app.settings, job.gateway)

    def token(self, step: str, n: int = 1, reason: str | None = None, first: dict[str, Any] | None = None) -> None:
        """Wait (briefly) for n tokens of the shared bucket; a long wait hands the message back."""
        waited_ms = 0
        row = first
        while True:
            if row is None:
                row = self.app.db.fetch_one(
                    "SELECT * FROM pq_gateway_step(%s, %s, %s, %s, %s, %s, %s)",
                    (uuid.UUID(self.job.job_id), step, self.job.gateway, self.rate, self.burst, n, reason),
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
        job = self.job
        self.token("fetch", first=first_token)
        try:
            payment = self.gateway.fetch(job.ref)
        except GatewayRejected as exc:
            if exc.status in (400, 404):
                return self.fail(FailureReason.GATEWAY_PAYMENT_NOT_FOUND)
            raise
        if job.refund_sent:  # an earlier delivery sent a refund: finish that, whatever the order's state now
            return self.refund(payment, job.refund_reason or FailureReason.OUT_OF_STOCK)
        if payment.status == "captured":
            if job.problem:
                return self.refund(payment, job.problem)
            return self.complete(payment)
        if payment.status == "authorized":
            if (payment.amount_paise, payment.currency) != (job.amount_paise, job.currency):
                return self.fail(FailureReason.AMOUNT_MISMATCH)
            if job.problem:  # not captured: the authorization lapses, no money moves
                return self.fail(job.problem)
            self.token("capture")
            captured = self.gateway.capture(job.ref, job.amount_paise, job.currency)
            if captured.status != "captured":
                raise GatewayRetryable("unknown_outcome", f"capture answered {captured.status}", 0)
            metrics.add_metric(name="GatewayCaptures", unit=MetricUnit.Count, value=1)
            return self.complete(captured)
        if payment.status == "pending":
            raise GatewayRetryable("pending", "payment not final at the gateway yet")
        if payment.status == "refunded":
            return self.fail(FailureReason.GATEWAY_PAYMENT_REFUNDED)
        return self.fail(FailureReason.GATEWAY_PAYMENT_FAILED)

    def _outcome(self, row: dict[str, Any] | None) -> PaymentOutcome:
        assert row is not None
        return PaymentOutcome(
            job_id=self.job.job_id,
            outcome=GatewayEndOutcome(row["outcome"]),
            reason=row["reason"],
            payment_id=row["payment_id"],
            event=build_event(row["event"]) if row["event"] else None,
        )

    def fail(self, reason: str) -> PaymentOutcome:
        return self._outcome(
            self.app.db.fetch_one("SELECT * FROM pq_gateway_fail(%s, %s)", (uuid.UUID(self.job.job_id), reason))
        )

    def complete(self, payment: GatewayPayment) -> PaymentOutcome:
        row = self.app.db.fetch_one(
            "SELECT * FROM pq_complete_gateway_payment(%s, %s, %s)",
            (uuid.UUID(self.job.job_id), payment.amount_paise, payment.currency),
        )
        assert row is not None
        if row["outcome"] == GatewayEndOutcome.REFUND_REQUIRED:
            return self.refund(payment, row["reason"])
        return self._outcome(row)

    def refund(self, payment: GatewayPayment, reason: str) -> PaymentOutcome:
        job = self.job
        # A refund sent before whose answer was lost is looked up first (one more request).
        self.token("refund", n=2 if job.refund_sent else 1, reason=reason)
        refund = self.gateway.find_refund(job.ref, job.refund_ref) if job.refund_sent else None
        if refund is None:
            refund = self.gateway.refund(job.ref, payment.amount_paise, payment.currency, job.refund_ref)
        metrics.add_metric(name="GatewayRefunds", unit=MetricUnit.Count, value=1)
        logger.warning("gateway payment refunded", job_id=job.job_id, gateway=job.gateway, reason=reason)
        return self._outcome(
            self.app.db.fetch_one(
                "SELECT * FROM pq_gateway_refunded(%s, %s, %s, %s, %s)",
                (uuid.UUID(job.job_id), reason, refund.refund_id, refund.amount_paise, refund.currency),
            )
        )


def process_gateway_job(
    app: App, job_id: str, method: str, *, receipt_handle: str, receive_count: int
) -> PaymentOutcome:
    """One delivery of a gateway job. Raises RetryLater after handing the message back."""
    rate, burst = limits(app.settings, method)
    row = app.db.fetch_one("SELECT * FROM pq_gateway_begin(%s, %s, %s)", (uuid.UUID(job_id), rate, burst))
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

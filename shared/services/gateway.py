"""Gateway-funded payments: the job's gateway reads its payment and gives a verdict (shared/gateways/
port.py); this driver acts on it -- capture, complete in one DB transaction, refund what was captured for
an order we cannot fulfil, fail, or park.

No DB transaction is open while a request is at the gateway: each DB step is one SQL function in
one round trip (shared/sql/gateway_payment.sql), committed before the next request leaves. Every
request takes a token of its endpoint's shared bucket first (shared/gateway_limits.py). Per delivery:

    begin (lock job, record the attempt, take the first request's token)
    verdict (the gateway's reads: its package says what it fetches and decides)
      Complete          -> complete (payment, order, stock, job, event)  [or refund if unfulfillable]
      Capture           -> step (token, capture_sent_at) -> capture -> complete
      Refund            -> book (pq_refund_request) -> refund -> pq_gateway_refunded
      RefundedAtGateway -> book the gateway's refunds -> refund what is left captured, or fail
      Fail              -> fail (release: an authorisation we will never capture)
      Park              -> no message, the group free: a webhook or the sweeper sends the job again

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
from shared.gateway_limits import bucket
from shared.gateways.port import PaymentGateway
from shared.gateways.verdicts import Capture, Complete, Fail, Job, Refund, RefundedAtGateway
from shared.observability import logger, metrics
from shared.outcomes import GatewayBeginOutcome, GatewayEndOutcome
from shared.ports import GatewayPayment, GatewayRefund, RefundState
from shared.services.intake import job_message, send_jobs

# Recorded for a refund of ours withdrawn before it is sent again: the refunds read first leave no room for it.
LEFT_LESS = "refunds made at the gateway leave less than it asks for"


def first_bucket(app: App, gateway: PaymentGateway) -> tuple[str, float, float]:
    """The bucket of a delivery's first request (taken by pq_gateway_begin)."""
    return bucket(app.settings, gateway.name, gateway.endpoints["fetch"])


class _Delivery:
    """One delivery of one gateway job: the gateway's verdict, acted on."""

    def __init__(self, app: App, job: Job, gateway: PaymentGateway, begin: dict[str, Any]) -> None:
        self.app = app
        self.job = job
        self.gateway = gateway
        # pq_gateway_begin's row: its token (when granted) is the first request's.
        self._begin: dict[str, Any] | None = begin

    def token(self, step: str, endpoint: str, reason: str | None = None) -> None:
        """A token of the endpoint's shared bucket, or the one this job reserved once its slot has come.
        A short wait is slept (limiter_max_wait_ms); a longer one reserves the slot, and the message is
        handed back until then (GatewayRetryable limited). step capture / refund also records that the
        request is about to leave (pq_gateway_step)."""
        bucket_name, rate, burst = bucket(self.app.settings, self.gateway.name, endpoint)
        reserve_ms = self.app.settings.limiter_max_reserve_s * 1000
        waited_ms = 0
        # The first request's token is pq_gateway_begin's, taken from the gateway's fetch bucket; begin never
        # reserves: without its token, pq_gateway_step is asked, which does.
        begin, self._begin = self._begin, None
        first = begin is not None and begin["granted"] and endpoint == self.gateway.endpoints["fetch"]
        row = begin if first else None
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
                raise GatewayRetryable("limited", f"no {self.gateway.name} token for {wait_ms} ms", wait_ms / 1000)
            time.sleep(wait_ms / 1000)
            waited_ms += wait_ms
            row = None

    def read(self, endpoint: str) -> None:
        """The token of one of the gateway's reads (the verdict's too)."""
        self.token("fetch", endpoint)

    def settle(self) -> PaymentOutcome:
        verdict = self.gateway.verdict(self.job, self.read)
        if isinstance(verdict, Complete):
            return self.complete(verdict.payment)
        if isinstance(verdict, Capture):
            return self.capture(verdict)
        if isinstance(verdict, Refund):
            return self.refund(verdict.payment, verdict.reason, verdict.amount_paise)
        if isinstance(verdict, RefundedAtGateway):
            return self.refunded_at_gateway(verdict.payment, verdict.refunds)
        if isinstance(verdict, Fail):
            return self.fail(verdict.reason, verdict.checkout_status, verdict.release)
        return self.park()

    def capture(self, verdict: Capture) -> PaymentOutcome:
        self.token("capture", verdict.endpoint)
        captured = verdict.capture()
        if captured.status != "captured":
            raise GatewayRetryable("unknown_outcome", f"capture answered {captured.status}", 0)
        metrics.add_metric(name="GatewayCaptures", unit=MetricUnit.Count, value=1)
        return self.complete(captured)

    def listed_refunds(self) -> list[GatewayRefund]:
        self.read(self.gateway.endpoints["refunds"])
        return self.gateway.refunds(self.job.ref)

    def refunded_at_gateway(self, payment: GatewayPayment, refunds: list[GatewayRefund]) -> PaymentOutcome:
        """Refunds made at the gateway before we decided: booked, and the order is never fulfilled with any
        of its money gone. What is left captured goes back to the shopper; never more than that (a refund
        above the refundable amount is refused by the gateways)."""
        job = self.job
        if not payment.captured:  # an authorisation the gateway returned by itself: no money held
            return self.fail(FailureReason.GATEWAY_PAYMENT_REFUNDED, checkout_status="refunded", release=payment)
        self.book_refunds(payment, refunds)
        returned = sum(r.amount_paise for r in refunds if r.state is not RefundState.FAILED)
        logger.warning(
            "gateway payment refunded at the gateway",
            job_id=job.job_id,
            gateway=self.gateway.name,
            refunded_paise=returned,
        )
        if payment.amount_paise > returned:
            return self.refund(
                payment, FailureReason.GATEWAY_PAYMENT_REFUNDED, payment.amount_paise - returned, listed=refunds
            )
        return self.fail(FailureReason.GATEWAY_PAYMENT_REFUNDED, checkout_status="refunded")

    def book_refunds(self, payment: GatewayPayment, refunds: list[GatewayRefund]) -> None:
        """The payment's refunds as the gateway listed them, each reported to the books (pq_refund_reported)."""
        self.app.db.fetch_one(
            "SELECT pq_gateway_refunds_seen(%s, %s, %s, %s)",
            (uuid.UUID(self.job.job_id), refunds_json(refunds), payment.currency, payment.amount_paise),
        )

    def _outcome(self, row: dict[str, Any] | None) -> PaymentOutcome:
        return _outcome(self.job.job_id, row)

    def fail(
        self, reason: str, checkout_status: str | None = None, release: GatewayPayment | None = None
    ) -> PaymentOutcome:
        return _fail(self.app, self.job.job_id, reason, checkout_status, release)

    def park(self) -> PaymentOutcome:
        row = self.app.db.fetch_one("SELECT * FROM pq_gateway_park(%s)", (uuid.UUID(self.job.job_id),))
        assert row is not None
        if row["resend"]:  # its success webhook came while we were fetching: look again at once
            send_jobs(
                self.app,
                [job_message(self.job.job_id, row["user_id"], row["order_id"], self.gateway.name, row["parks"])],
            )
        metrics.add_metric(name="GatewayJobsParked", unit=MetricUnit.Count, value=1)
        return PaymentOutcome(
            job_id=self.job.job_id,
            outcome=GatewayEndOutcome(row["outcome"]),
            reason=row["reason"],
            payment_id=row["payment_id"],
        )

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
            refunds = self.listed_refunds()
            if any(r.state is not RefundState.FAILED for r in refunds):
                return self.refunded_at_gateway(payment, refunds)
            if looked:  # the gateway does not list the refund the webhook reported yet: look again later
                raise GatewayRetryable("pending", "a refund reported by webhook is not listed yet")
            self.book_refunds(payment, refunds)  # it failed since: the payment is whole again
            return self.complete(payment, looked=True)
        if refund_required:
            return self.refund(payment, row["reason"], payment.amount_paise)
        return self._outcome(row)

    def withdrawn(self, request: dict[str, Any], refunds: list[GatewayRefund], error: str) -> bool:
        """Refunds made at the gateway left less than our request asks for, so the gateway holds nothing of
        it (it would not fit beside them): withdrawn, unless the books cannot -- one the gateway holds is
        owed, never asked for again and again. pq_refund_withdrawn decides, as it does for the sweeper."""
        row = self.app.db.fetch_one(
            "SELECT withdrawn FROM pq_refund_withdrawn(%s, %s, %s)",
            (request["refund_id"], refunds_json(refunds), error),
        )
        return row is not None and bool(row["withdrawn"])

    def refund(
        self, payment: GatewayPayment, reason: str, amount_paise: int, listed: list[GatewayRefund] | None = None
    ) -> PaymentOutcome:
        """Refund amount_paise of a payment of the job's own checkout (the only kind this is ever called for),
        booked before it leaves (pq_refund_request), with the gateway's idempotency (our refund_ref, the same
        on every retry: shared/gateways/<name>/client.py). A refund the gateway refuses outright is
        owed at once; one it fails later is retried by the sweeper, then owed (pq_refund_settled).

        Sent without reading the payment's refunds first (Cashfree's payment says nothing of them, and a read
        costs a Get Refund token, 30 a minute): a refusal is explained by the refunds, read then. listed: the
        refunds this delivery has just read (refunded_at_gateway)."""
        job = self.job
        request = self.app.db.fetch_one(
            "SELECT * FROM pq_refund_request(%s, %s, %s, %s, %s)",
            (uuid.UUID(job.job_id), amount_paise, payment.currency, reason, payment.amount_paise),
        )
        assert request is not None
        read_first = listed is None and job.refund_sent
        if read_first:
            # An earlier delivery sent this refund (its answer lost), or it was refused and the refunds that
            # say why were not read then (no token: the message came back for one): one read answers both,
            # before anything is sent again -- a refused refund sent by every delivery whose second Get
            # Refund token is not there at once would never be explained.
            listed = self.listed_refunds()
        refund = None if listed is None else ours_listed(listed, request["refund_ref"])
        if refund is None and listed is not None and self.withdrawn(request, listed, LEFT_LESS):
            return self.refunded_at_gateway(payment, listed)
        if refund is None:
            self.token("refund", self.gateway.endpoints["refund"], reason=reason)
            try:
                refund = self.gateway.refund(job.ref, request["amount_paise"], payment.currency, request["refund_ref"])
            except GatewayRejected as exc:
                # Refused: the payment's refunds say why (read again, unless just before this send). An
                # earlier send under this reference went through (its answer lost: the gateway's word for
                # that is a refusal too); or refunds made at the gateway (the merchant's dashboard) left less
                # than ours asks for: ours is withdrawn, theirs booked, and what is left goes back under the
                # next attempt's reference. Else it is owed.
                refunds = listed if read_first and listed is not None else self.listed_refunds()
                refund = ours_listed(refunds, request["refund_ref"])
                if refund is None:
                    if self.withdrawn(request, refunds, str(exc)):
                        return self.refunded_at_gateway(payment, refunds)
                    self.app.db.execute("SELECT pq_refund_refused(%s, %s)", (request["refund_id"], str(exc)))
                    refund_failed(job.job_id, self.gateway.name, request["refund_id"], owed=True, error=str(exc))
                    return self.fail(reason, checkout_status="refunded")
        metrics.add_metric(name="GatewayRefunds", unit=MetricUnit.Count, value=1)
        logger.warning("gateway payment refunded", job_id=job.job_id, gateway=self.gateway.name, reason=reason)
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
            refund_failed(job.job_id, self.gateway.name, request["refund_id"], owed=bool(row["refund_owed"]))
        return self._outcome(row)


def ours_listed(refunds: list[GatewayRefund], refund_ref: str) -> GatewayRefund | None:
    """Our refund under this reference, if the gateway lists it (a refusal of a send whose answer was lost:
    the processor's and the sweeper's)."""
    return next((r for r in refunds if r.merchant_ref == refund_ref), None)


def refunds_json(refunds: list[GatewayRefund]) -> str:
    """A payment's refunds as the gateway listed them, as the books take them (pq_gateway_refunds_seen,
    pq_refund_refusal_explained)."""
    return json.dumps(
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
    )


def _outcome(job_id: str, row: dict[str, Any] | None) -> PaymentOutcome:
    assert row is not None
    return PaymentOutcome(
        job_id=job_id,
        outcome=GatewayEndOutcome(row["outcome"]),
        reason=row["reason"],
        payment_id=row["payment_id"],
        event=build_event(row["event"]) if row["event"] else None,
    )


def _fail(
    app: App, job_id: str, reason: str, checkout_status: str | None = None, release: GatewayPayment | None = None
) -> PaymentOutcome:
    """End the job unpaid; release: an authorisation of its checkout we will never capture."""
    return _outcome(
        job_id,
        app.db.fetch_one(
            "SELECT * FROM pq_gateway_fail(%s, %s, %s, %s, %s)",
            (
                uuid.UUID(job_id),
                reason,
                checkout_status,
                None if release is None else release.amount_paise,
                None if release is None else release.currency,
            ),
        ),
    )


def _job(job_id: str, begun: dict[str, Any]) -> Job:
    """The job as pq_gateway_begin read it, bound to its checkout."""
    return Job(
        job_id=job_id,
        ref=begun["gateway_ref"],
        amount_paise=begun["amount_paise"],
        currency=begun["currency"],
        unfulfillable=begun["problem"],
        refund_sent=begun["refund_sent"],
        refund_reason=begun["refund_reason"],
        gateway_order_id=begun["gateway_order_id"],
        checkout_amount_paise=begun["checkout_amount_paise"],
        checkout_currency=begun["checkout_currency"].strip(),
        checkout_expires_at=begun["checkout_expires_at"],
    )


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
    named = app.gateways.get(method)
    if named is None:  # a deployment fault, not the shopper's: retried, then dead-lettered
        raise RuntimeError(f"gateway {method} is not configured")
    bucket_name, rate, burst = first_bucket(app, named)
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
    try:
        if row["checkout_id"] is None:
            # The old flow's bare reference: nothing binds it to this order or shopper. Never captured,
            # never refunded by us (the gateway returns an authorisation nobody captures).
            outcome = _fail(app, job_id, FailureReason.GATEWAY_PAYMENT_UNBOUND)
        else:
            outcome = _Delivery(app, _job(job_id, row), gateway, row).settle()
        # A gateway payment, which called out, gets its INFO line (a wallet payment only its batch's).
        logger.info(
            "payment processed",
            job_id=job_id,
            gateway=gateway.name,
            outcome=outcome.outcome,
            reason=outcome.reason,
            receive_count=receive_count,
        )
        return outcome
    except GatewayRetryable as exc:
        if exc.kind == "limited":
            return _wait_for_token(
                app, job_id, gateway.name, exc, receipt_handle=receipt_handle, receive_count=receive_count
            )
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
            gateway=gateway.name,
            kind=exc.kind,
            delay_s=delay,
            receive_count=receive_count,
        )
        raise RetryLater(str(exc), delay) from exc


def _wait_for_token(
    app: App, job_id: str, gateway: str, exc: GatewayRetryable, *, receipt_handle: str, receive_count: int
) -> PaymentOutcome:
    """Hand the message back until the job's reserved slot (past limiter_max_reserve_s, until the bucket
    has a token): exactly then, no backoff or jitter, since the slot is the job's alone and each
    hand-back costs a receive. On the last receive maxReceiveCount allows, a message that only ever
    waited is consumed and the job sent again instead of going to the DLQ (pq_gateway_limited).
    Raises RetryLater after handing the message back."""
    row = app.db.fetch_one(
        "SELECT * FROM pq_gateway_limited(%s, %s, %s)",
        (uuid.UUID(job_id), receive_count, app.settings.max_receive_count),
    )
    assert row is not None
    if row["requeued"]:
        send_jobs(app, [job_message(job_id, row["user_id"], row["order_id"], gateway, row["parks"])])
        metrics.add_metric(name="LimiterRequeues", unit=MetricUnit.Count, value=1)
        logger.info(
            "gateway job sent again: its receives went to waiting for tokens",
            job_id=job_id,
            gateway=gateway,
            receive_count=receive_count,
        )
        return PaymentOutcome(job_id=job_id, outcome=GatewayEndOutcome.PARKED)
    # At most SQS's 12-hour visibility (ChangeMessageVisibility), also where the queue is PGMQ.
    delay = min(43_200, math.ceil(exc.retry_after_s or 0))
    app.queue.change_visibility(receipt_handle, delay)
    metrics.add_metric(name="LimiterHandBacks", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="LimiterHandBackSeconds", unit=MetricUnit.Seconds, value=delay)
    logger.info(
        "no gateway token yet; message back at its slot",
        job_id=job_id,
        gateway=gateway,
        delay_s=delay,
        receive_count=receive_count,
    )
    raise RetryLater(str(exc), delay) from exc

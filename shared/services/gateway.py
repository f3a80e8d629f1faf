"""Gateway-funded payments, as named phases (shared/gateways/verdicts.py Phase) driven from one place:
_Delivery.drive. No DB transaction is open while a request is at the gateway: each phase's DB work is one
SQL function in one round trip (shared/sql/gateway_payment.sql), committed before the next request leaves.
Every request takes a token of its endpoint's shared bucket first (shared/gateway_limits.py). Per delivery:

    BEGIN                pq_gateway_begin: lock the job, count the delivery, the early answer, a token
    VERDICT              the gateway's reads (its package says what it fetches) name the next step:
                           Complete | Capture | Refund (a refund decided earlier) | RefundedAtGateway
                           | Fail | Park
    CAPTURE              pq_gateway_step (token, capture_sent_at) -> capture request     -> COMPLETE
    COMPLETE             pq_complete_gateway_payment decides whether the order is fulfilled:
                           succeeded                                                     -> end
                           refund_required, the refund booked with the decision          -> REFUND
                           refund_required, a refund made at the gateway on record       -> CHECK_REFUNDS
    CHECK_REFUNDS        the gateway's refunds: some hold money                          -> REFUNDED_AT_GATEWAY
                           none (all failed): booked, the payment whole again            -> COMPLETE (once)
    REFUNDED_AT_GATEWAY  pq_gateway_refunds_seen: what is left captured                  -> REFUND, or FAIL
    REFUND               pq_refund_request (unless COMPLETE booked it), refund request,
                           pq_gateway_refunded                                           -> end
                           refused, and the gateway's refunds explain it                 -> REFUNDED_AT_GATEWAY
    FAIL                 pq_gateway_fail (an authorisation never captured booked released) -> end
    PARK                 pq_gateway_park: no message, the group free; a webhook or the sweeper sends the
                           job again                                                     -> end

Whether the order can be fulfilled is pq_gateway_unfulfillable's answer alone: BEGIN's early answer
steers what happens before money moves (an authorisation released instead of captured; a payment whose
refunds were not read because it goes back anyway is refunded at once, never left for COMPLETE to fulfil
unread), and COMPLETE's, under the locks, is the one every other captured payment follows. Python only
acts on its answers.

A redelivery resumes at the phase the job recorded: a refund decided (pq_gateway_begin refund_sent) is
finished; a capture whose answer was lost is settled by the VERDICT's fetch, which reads it captured.
A job without a checkout (the old flow's bare reference) fails gateway_payment_unbound without a call.
A 429 or 5xx hands the message back to the queue with a later visibility instead of sleeping. So does a
token not there within limiter_max_wait_ms: the job reserves the bucket's next free slot and its message
comes back then, once, to use it (_wait_for_token).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any, Protocol, assert_never

from aws_lambda_powertools.metrics import MetricUnit

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
from shared.gateways.verdicts import (
    Capture,
    CheckRefunds,
    Complete,
    Fail,
    Job,
    Park,
    Refund,
    RefundBooked,
    RefundedAtGateway,
    Step,
)
from shared.observability import logger, metrics
from shared.outcomes import GatewayBeginOutcome, GatewayEndOutcome
from shared.ports import GatewayPayment, GatewayRefund, HasDb, HasGateways, HasSettings, RefundState
from shared.services.intake import SendDeps, job_message, send_jobs

# Recorded for a refund of ours withdrawn before it is sent again: the refunds read first leave no room for it.
LEFT_LESS = "refunds made at the gateway leave less than it asks for"


class DeliveryDeps(SendDeps, HasSettings, Protocol):
    """What one delivery's phases use: the books, the limits and waits (settings), and the queue to send a
    parked job again or hand its message back."""


class GatewayJobDeps(DeliveryDeps, HasGateways, Protocol):
    """What a gateway job's delivery uses: DeliveryDeps, and the gateways by name."""


def fetch_bucket(deps: HasSettings, gateway: PaymentGateway) -> tuple[str, float, float]:
    """The bucket of a delivery's first request, the VERDICT's fetch (its token taken by pq_gateway_begin)."""
    return bucket(deps.settings, gateway.name, gateway.endpoints["fetch"])


class _Delivery:
    """One delivery of one gateway job, past BEGIN: the phases, each its step (drive)."""

    def __init__(self, deps: DeliveryDeps, job: Job, gateway: PaymentGateway, begun: dict[str, Any]) -> None:
        self.deps = deps
        self.job = job
        self.gateway = gateway
        # pq_gateway_begin's row, until the first request: its token (when granted) is that request's.
        self._begun: dict[str, Any] | None = begun

    def drive(self) -> PaymentOutcome:
        """The whole path: from the gateway's verdict (VERDICT), each phase's step names the next, until one
        ends the delivery with the job's outcome."""
        step: Step | PaymentOutcome = self.gateway.verdict(self.job, self.read)
        while not isinstance(step, PaymentOutcome):
            logger.debug("gateway payment phase", job_id=self.job.job_id, phase=step.phase)
            match step:
                case Capture():
                    step = self.capture(step)
                case Complete():
                    step = self.complete(step)
                case CheckRefunds():
                    step = self.check_refunds(step)
                case RefundedAtGateway():
                    step = self.refunded_at_gateway(step)
                case Refund():
                    step = self.refund(step)
                case Fail():
                    step = self.fail(step)
                case Park():
                    step = self.park()
                case _:
                    assert_never(step)
        return step

    def token(self, request: str, endpoint: str, reason: str | None = None) -> None:
        """A token of the endpoint's shared bucket, or the one this job reserved once its slot has come.
        A short wait is slept (limiter_max_wait_ms); a longer one reserves the slot, and the message is
        handed back until then (GatewayRetryable limited). request capture / refund also records that the
        request is about to leave (pq_gateway_step)."""
        bucket_name, rate, burst = bucket(self.deps.settings, self.gateway.name, endpoint)
        reserve_ms = self.deps.settings.limiter_max_reserve_s * 1000
        waited_ms = 0
        # The first request's token is pq_gateway_begin's, taken from the gateway's fetch bucket; begin never
        # reserves: without its token, pq_gateway_step is asked, which does.
        begun, self._begun = self._begun, None
        first = begun is not None and begun["granted"] and endpoint == self.gateway.endpoints["fetch"]
        row = begun if first else None
        while True:
            if row is None:
                row = self.deps.db.fetch_one(
                    "SELECT * FROM pq_gateway_step(%s, %s, %s, %s, %s, %s, %s, %s)",
                    (uuid.UUID(self.job.job_id), request, bucket_name, rate, burst, 1, reason, reserve_ms),
                )
                assert row is not None
            if row["granted"]:
                if waited_ms:
                    metrics.add_metric(name="LimiterWaits", unit=MetricUnit.Count, value=1)
                    metrics.add_metric(name="LimiterWaitMs", unit=MetricUnit.Milliseconds, value=waited_ms)
                return
            wait_ms = int(row["wait_ms"])
            if waited_ms + wait_ms > self.deps.settings.limiter_max_wait_ms:
                raise GatewayRetryable("limited", f"no {self.gateway.name} token for {wait_ms} ms", wait_ms / 1000)
            time.sleep(wait_ms / 1000)
            waited_ms += wait_ms
            row = None

    def read(self, endpoint: str) -> None:
        """The token of one of the gateway's reads (the verdict's too)."""
        self.token("fetch", endpoint)

    def capture(self, step: Capture) -> Complete:
        """CAPTURE: the capture marked sent with its token, then the request; a lost answer is settled by the
        next delivery's fetch."""
        self.token("capture", step.endpoint)
        captured = step.capture()
        if captured.status != "captured":
            raise GatewayRetryable("unknown_outcome", f"capture answered {captured.status}", 0)
        metrics.add_metric(name="GatewayCaptures", unit=MetricUnit.Count, value=1)
        return Complete(captured)

    def complete(self, step: Complete) -> PaymentOutcome | Refund | CheckRefunds:
        """COMPLETE: the order fulfilled, or the refund booked with the decision (REFUND), or a refund made
        at the gateway on record, whose amounts the gateway's list gives (CHECK_REFUNDS)."""
        payment = step.payment
        row = self.deps.db.fetch_one(
            "SELECT * FROM pq_complete_gateway_payment(%s, %s, %s)",
            (uuid.UUID(self.job.job_id), payment.amount_paise, payment.currency),
        )
        assert row is not None
        if row["outcome"] != GatewayEndOutcome.REFUND_REQUIRED:
            return _outcome(self.job.job_id, row)
        if row["refund_id"] is None:  # nothing booked: a refund made at the gateway (gateway_payment_refunded)
            return CheckRefunds(payment, again=step.refunds_checked)
        booked = RefundBooked(row["refund_id"], row["refund_ref"], row["refund_amount_paise"])
        return Refund(payment, row["reason"], booked.amount_paise, booked=booked)

    def check_refunds(self, step: CheckRefunds) -> RefundedAtGateway | Complete:
        """CHECK_REFUNDS: a refund reported at the gateway (by webhook, after the VERDICT read the payment):
        the gateway's list says how much of the payment is gone. One that failed since leaves the payment
        whole: booked, and COMPLETE asked once more."""
        refunds = self.listed_refunds()
        if any(r.state is not RefundState.FAILED for r in refunds):
            return RefundedAtGateway(step.payment, refunds)
        if step.again:  # the gateway does not list the refund the webhook reported yet: look again later
            raise GatewayRetryable("pending", "a refund reported by webhook is not listed yet")
        self.book_refunds(step.payment, refunds)
        return Complete(step.payment, refunds_checked=True)

    def listed_refunds(self) -> list[GatewayRefund]:
        self.read(self.gateway.endpoints["refunds"])
        return self.gateway.refunds(self.job.gateway_ref)

    def refunded_at_gateway(self, step: RefundedAtGateway) -> Refund | Fail:
        """REFUNDED_AT_GATEWAY: refunds made at the gateway before we decided, booked, and the order never
        fulfilled with any of its money gone. What is left captured goes back to the shopper; never more
        than that (a refund above the refundable amount is refused by the gateways)."""
        payment, refunds = step.payment, step.refunds
        if not payment.captured:  # an authorisation the gateway returned by itself: no money held
            return Fail(FailureReason.GATEWAY_PAYMENT_REFUNDED, checkout_status="refunded", release=payment)
        self.book_refunds(payment, refunds)
        returned = sum(r.amount_paise for r in refunds if r.state is not RefundState.FAILED)
        logger.warning(
            "gateway payment refunded at the gateway",
            job_id=self.job.job_id,
            gateway=self.gateway.name,
            refunded_paise=returned,
        )
        if payment.amount_paise > returned:
            left = payment.amount_paise - returned
            return Refund(payment, FailureReason.GATEWAY_PAYMENT_REFUNDED, left, listed=refunds)
        return Fail(FailureReason.GATEWAY_PAYMENT_REFUNDED, checkout_status="refunded")

    def book_refunds(self, payment: GatewayPayment, refunds: list[GatewayRefund]) -> None:
        """The payment's refunds as the gateway listed them, each reported to the books (pq_refund_reported)."""
        self.deps.db.fetch_one(
            "SELECT pq_gateway_refunds_seen(%s, %s, %s, %s)",
            (uuid.UUID(self.job.job_id), refunds_json(refunds), payment.currency, payment.amount_paise),
        )

    def fail(self, step: Fail) -> PaymentOutcome:
        """FAIL: the job ends unpaid."""
        return _fail(self.deps, self.job.job_id, step.reason, step.checkout_status, step.release)

    def park(self) -> PaymentOutcome:
        """PARK: not final at the gateway; the job waits without a message."""
        row = self.deps.db.fetch_one("SELECT * FROM pq_gateway_park(%s)", (uuid.UUID(self.job.job_id),))
        assert row is not None
        if row["resend"]:  # its success webhook came while we were fetching: look again at once
            send_jobs(
                self.deps,
                [job_message(self.job.job_id, row["user_id"], row["order_id"], self.gateway.name, row["parks"])],
            )
        metrics.add_metric(name="GatewayJobsParked", unit=MetricUnit.Count, value=1)
        return PaymentOutcome(
            job_id=self.job.job_id,
            outcome=GatewayEndOutcome(row["outcome"]),
            reason=row["reason"],
            payment_id=row["payment_id"],
        )

    def withdrawn(self, booked: RefundBooked, refunds: list[GatewayRefund], error: str) -> bool:
        """Refunds made at the gateway left less than our request asks for, so the gateway holds nothing of
        it (it would not fit beside them): withdrawn, unless the books cannot -- one the gateway holds is
        owed, never asked for again and again. pq_refund_withdrawn decides, as it does for the sweeper."""
        row = self.deps.db.fetch_one(
            "SELECT withdrawn FROM pq_refund_withdrawn(%s, %s, %s)",
            (booked.refund_id, refunds_json(refunds), error),
        )
        return row is not None and bool(row["withdrawn"])

    def book_refund(self, step: Refund) -> RefundBooked:
        """The refund of ours on the books before it leaves: COMPLETE's, or booked now (pq_refund_request)."""
        if step.booked is not None:
            return step.booked
        payment = step.payment
        row = self.deps.db.fetch_one(
            "SELECT * FROM pq_refund_request(%s, %s, %s, %s, %s)",
            (uuid.UUID(self.job.job_id), step.amount_paise, payment.currency, step.reason, payment.amount_paise),
        )
        assert row is not None
        return RefundBooked(row["refund_id"], row["refund_ref"], row["amount_paise"])

    def refund(self, step: Refund) -> PaymentOutcome | RefundedAtGateway:
        """REFUND: amount_paise of a payment of the job's own checkout (the only kind this is ever called for)
        goes back, booked before it leaves, with the gateway's idempotency (our refund_ref, the same on every
        retry: shared/gateways/<name>/client.py). A refund the gateway refuses outright is owed at once; one
        it fails later is retried by the sweeper, then owed (pq_refund_settled).

        Sent without reading the payment's refunds first (Cashfree's payment says nothing of them, and a read
        costs a Get Refund token, 30 a minute): a refusal is explained by the refunds, read then. step.listed:
        the refunds this delivery has just read (REFUNDED_AT_GATEWAY)."""
        job, payment, reason, listed = self.job, step.payment, step.reason, step.listed
        booked = self.book_refund(step)
        read_first = listed is None and job.refund_sent
        if read_first:
            # An earlier delivery sent this refund (its answer lost), or it was refused and the refunds that
            # say why were not read then (no token: the message came back for one): one read answers both,
            # before anything is sent again -- a refused refund sent by every delivery whose second Get
            # Refund token is not there at once would never be explained.
            listed = self.listed_refunds()
        refund = None if listed is None else ours_listed(listed, booked.refund_ref)
        if refund is None and listed is not None and self.withdrawn(booked, listed, LEFT_LESS):
            return RefundedAtGateway(payment, listed)
        if refund is None:
            self.token("refund", self.gateway.endpoints["refund"], reason=reason)
            try:
                refund = self.gateway.refund(job.gateway_ref, booked.amount_paise, payment.currency, booked.refund_ref)
            except GatewayRejected as exc:
                # Refused: the payment's refunds say why (read again, unless just before this send). An
                # earlier send under this reference went through (its answer lost: the gateway's word for
                # that is a refusal too); or refunds made at the gateway (the merchant's dashboard) left less
                # than ours asks for: ours is withdrawn, theirs booked, and what is left goes back under the
                # next attempt's reference. Else it is owed.
                refunds = listed if read_first and listed is not None else self.listed_refunds()
                refund = ours_listed(refunds, booked.refund_ref)
                if refund is None:
                    if self.withdrawn(booked, refunds, str(exc)):
                        return RefundedAtGateway(payment, refunds)
                    self.deps.db.execute("SELECT pq_refund_refused(%s, %s)", (booked.refund_id, str(exc)))
                    refund_failed(job.job_id, self.gateway.name, booked.refund_id, owed=True, error=str(exc))
                    return self.fail(Fail(reason, checkout_status="refunded"))
        metrics.add_metric(name="GatewayRefunds", unit=MetricUnit.Count, value=1)
        logger.warning("gateway payment refunded", job_id=job.job_id, gateway=self.gateway.name, reason=reason)
        row = self.deps.db.fetch_one(
            "SELECT * FROM pq_gateway_refunded(%s, %s, %s, %s, %s, %s)",
            (
                uuid.UUID(job.job_id),
                reason,
                booked.refund_id,
                refund.refund_id,
                refund.state.value,
                refund.gateway_status,
            ),
        )
        assert row is not None
        if row["refund_failed"]:
            refund_failed(job.job_id, self.gateway.name, booked.refund_id, owed=bool(row["refund_owed"]))
        return _outcome(job.job_id, row)


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
    deps: HasDb, job_id: str, reason: str, checkout_status: str | None = None, release: GatewayPayment | None = None
) -> PaymentOutcome:
    """End the job unpaid; release: an authorisation of its checkout we will never capture."""
    return _outcome(
        job_id,
        deps.db.fetch_one(
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
        gateway_ref=begun["gateway_ref"],
        unfulfillable=begun["unfulfillable"],
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
    deps: GatewayJobDeps, job_id: str, method: str, *, receipt_handle: str, receive_count: int
) -> PaymentOutcome:
    """One delivery of a gateway job: BEGIN, then the phases its verdict leads to (_Delivery.drive). Raises
    RetryLater after handing the message back."""
    named = deps.gateways.get(method)
    if named is None:  # a deployment fault, not the shopper's: retried, then dead-lettered
        raise RuntimeError(f"gateway {method} is not configured")
    bucket_name, rate, burst = fetch_bucket(deps, named)
    begun = deps.db.fetch_one(
        "SELECT * FROM pq_gateway_begin(%s, %s, %s, %s)", (uuid.UUID(job_id), rate, burst, bucket_name)
    )
    assert begun is not None
    begin = GatewayBeginOutcome(begun["outcome"])
    if begin in (GatewayBeginOutcome.JOB_NOT_FOUND, GatewayBeginOutcome.NOT_A_GATEWAY_JOB):
        raise PoisonMessageError(f"job {job_id}: {begin}")
    if begin is not GatewayBeginOutcome.PROCEED:
        return PaymentOutcome(
            job_id=job_id, outcome=GatewayEndOutcome(begin), reason=begun["reason"], payment_id=begun["payment_id"]
        )
    gateway = deps.gateways.get(begun["gateway"])
    if gateway is None:  # a deployment fault, not the shopper's: retried, then dead-lettered
        raise RuntimeError(f"gateway {begun['gateway']} is not configured")
    try:
        if begun["checkout_id"] is None:
            # The old flow's bare reference: nothing binds it to this order or shopper. Never captured,
            # never refunded by us (the gateway returns an authorisation nobody captures).
            outcome = _fail(deps, job_id, FailureReason.GATEWAY_PAYMENT_UNBOUND)
        else:
            outcome = _Delivery(deps, _job(job_id, begun), gateway, begun).drive()
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
                deps, job_id, gateway.name, exc, receipt_handle=receipt_handle, receive_count=receive_count
            )
        delay = full_jitter_backoff(
            receive_count,
            exc.retry_after_s,
            base_s=deps.settings.gateway_backoff_base_s,
            cap_s=deps.settings.gateway_backoff_cap_s,
        )
        if exc.kind in ("throttled", "unavailable", "unknown_outcome"):
            deps.db.execute(
                "SELECT pq_gateway_setback(%s, %s, %s)",
                (uuid.UUID(job_id), "throttled" if exc.kind == "throttled" else "unavailable", str(exc)),
            )
        deps.queue.change_visibility(receipt_handle, delay)
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
    deps: DeliveryDeps, job_id: str, gateway: str, exc: GatewayRetryable, *, receipt_handle: str, receive_count: int
) -> PaymentOutcome:
    """Hand the message back until the job's reserved slot (past limiter_max_reserve_s, until the bucket
    has a token): exactly then, no backoff or jitter, since the slot is the job's alone and each
    hand-back costs a receive. On the last receive maxReceiveCount allows, a message that only ever
    waited is consumed and the job sent again instead of going to the DLQ (pq_gateway_limited).
    Raises RetryLater after handing the message back."""
    row = deps.db.fetch_one(
        "SELECT * FROM pq_gateway_limited(%s, %s, %s)",
        (uuid.UUID(job_id), receive_count, deps.settings.max_receive_count),
    )
    assert row is not None
    if row["requeued"]:
        send_jobs(deps, [job_message(job_id, row["user_id"], row["order_id"], gateway, row["parks"])])
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
    deps.queue.change_visibility(receipt_handle, delay)
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

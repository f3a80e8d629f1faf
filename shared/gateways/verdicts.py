"""The phases of a gateway payment, and the steps a delivery takes through them: a gateway's verdict on a
job's payment (PaymentGateway.verdict) names the first step after its reads; the driver in
shared/services/gateway.py takes each step, its DB work one SQL function in one transaction, and the step
names the next. The job as the gateway is told it, too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from shared.domain import FailureReason
from shared.ports import GatewayPayment, GatewayRefund


class Phase(StrEnum):
    """Where a delivery of a gateway job is (shared/services/gateway.py has the whole path). A redelivery
    resumes from what the job recorded: pq_gateway_begin's refund_sent (a refund was decided: REFUND), or
    the gateway's own word on the payment, which the VERDICT's reads fetch (a capture whose answer was
    lost reads as captured: COMPLETE)."""

    BEGIN = "begin"  # pq_gateway_begin: the job locked, the delivery counted, the early answer, a token
    VERDICT = "verdict"  # the gateway's reads: what its payment needs next
    CAPTURE = "capture"  # pq_gateway_step (token, capture_sent_at), then the capture request
    COMPLETE = "complete"  # pq_complete_gateway_payment: fulfilled, or the refund booked
    CHECK_REFUNDS = "check_refunds"  # a refund made at the gateway is on record: its list says how much
    REFUNDED_AT_GATEWAY = "refunded_at_gateway"  # pq_gateway_refunds_seen: the gateway's refunds booked
    REFUND = "refund"  # pq_refund_request, the refund request, pq_gateway_refunded
    FAIL = "fail"  # pq_gateway_fail: ended unpaid
    PARK = "park"  # pq_gateway_park: not final at the gateway, no queue message


@dataclass(frozen=True)
class Job:
    """A gateway job as pq_gateway_begin hands it to the gateway for a verdict."""

    job_id: str
    # The gateway's handle of the job's payment, as its reads and refunds take it: Razorpay's payment id,
    # Cashfree's order id (Cashfree refunds by order).
    gateway_ref: str
    # pq_gateway_unfulfillable's early answer for the checkout's amount (None: the order can be fulfilled
    # as far as can be known before COMPLETE). It steers only what happens before money moves: an
    # authorisation is released instead of captured, a payment that goes back anyway is not read for
    # refunds first. COMPLETE decides for every captured payment.
    unfulfillable: str | None
    refund_sent: bool  # an earlier delivery decided a refund: finish it, whatever the order's state now
    refund_reason: str | None
    gateway_order_id: str  # the checkout's gateway order, its amount and when it stops being payable
    checkout_amount_paise: int
    checkout_currency: str
    checkout_expires_at: datetime | None

    def resumed_refund(self, payment: GatewayPayment) -> Refund:
        """The refund an earlier delivery decided, to be finished."""
        return Refund(payment, self.refund_reason or FailureReason.OUT_OF_STOCK, payment.amount_paise)

    def settled(self, payment: GatewayPayment) -> Complete:
        """A captured payment of the job's own checkout, nothing of it refunded at the gateway: COMPLETE
        decides whether its order is fulfilled or the money goes back."""
        return Complete(payment)


@dataclass(frozen=True)
class Complete:
    """Fulfil the order with this captured payment, or book its refund when it cannot be (COMPLETE).
    refunds_checked: this delivery has read the payment's refunds (CHECK_REFUNDS) and found none holding
    money."""

    phase: ClassVar[Phase] = Phase.COMPLETE
    payment: GatewayPayment
    refunds_checked: bool = False


@dataclass(frozen=True)
class Capture:
    """Capture this authorised payment (take the endpoint's token, mark the capture sent), then complete."""

    phase: ClassVar[Phase] = Phase.CAPTURE
    payment: GatewayPayment
    endpoint: str
    capture: Callable[[], GatewayPayment]


@dataclass(frozen=True)
class RefundBooked:
    """A refund of ours on the books (pq_refund_request, or pq_complete_gateway_payment with its decision)."""

    refund_id: int
    refund_ref: str  # our idempotency reference at the gateway, the same on every send of this attempt
    amount_paise: int


@dataclass(frozen=True)
class Refund:
    """Give amount_paise of this captured payment back to the shopper; the job fails with reason (REFUND).
    booked: the refund COMPLETE booked with its decision (None: booked by this step); listed: the payment's
    refunds this delivery has just read (None: not read)."""

    phase: ClassVar[Phase] = Phase.REFUND
    payment: GatewayPayment
    reason: str
    amount_paise: int
    booked: RefundBooked | None = None
    listed: list[GatewayRefund] | None = None


@dataclass(frozen=True)
class Fail:
    """End the job unpaid; release: an authorisation of its checkout that will never be captured."""

    phase: ClassVar[Phase] = Phase.FAIL
    reason: str
    checkout_status: str | None = None
    release: GatewayPayment | None = None


@dataclass(frozen=True)
class RefundedAtGateway:
    """Refunds made at the gateway before we decided (its dashboard, or the gateway returning an
    authorisation): booked, the order never fulfilled, what is left captured given back."""

    phase: ClassVar[Phase] = Phase.REFUNDED_AT_GATEWAY
    payment: GatewayPayment
    refunds: list[GatewayRefund]


@dataclass(frozen=True)
class CheckRefunds:
    """A refund made at the gateway is on record for this captured payment (COMPLETE said so): the gateway's
    list of its refunds gives the amounts. again: the list was read once this delivery already."""

    phase: ClassVar[Phase] = Phase.CHECK_REFUNDS
    payment: GatewayPayment
    again: bool = False


@dataclass(frozen=True)
class Park:
    """Not final at the gateway: no message, the user's group free; a webhook or the sweeper wakes it."""

    phase: ClassVar[Phase] = Phase.PARK


# What a gateway's verdict names: the step after its reads.
Verdict = Complete | Capture | Refund | Fail | RefundedAtGateway | Park
# Every step of the driver's path (a verdict, or one only the driver takes).
Step = Verdict | CheckRefunds

"""A gateway's verdict on a job's payment, from what the gateway reports (PaymentGateway.verdict), which
the driver in shared/services/gateway.py acts on, each step its own transaction; and the job as the
gateway is told it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.domain import FailureReason
from shared.ports import GatewayPayment, GatewayRefund


@dataclass(frozen=True)
class Job:
    """A gateway job as pq_gateway_begin hands it to the gateway for a verdict."""

    job_id: str
    ref: str  # what the job pays with at the gateway (its payment, or the order that holds it)
    amount_paise: int  # the order's amount now
    currency: str
    unfulfillable: str | None  # why the order cannot be fulfilled now (None: it can)
    refund_sent: bool  # an earlier delivery sent a refund: finish it, whatever the order's state now
    refund_reason: str | None
    gateway_order_id: str  # the checkout's gateway order, its amount and when it stops being payable
    checkout_amount_paise: int
    checkout_currency: str
    checkout_expires_at: datetime | None

    def resumed_refund(self, payment: GatewayPayment) -> Refund:
        """The refund an earlier delivery sent, to be finished."""
        return Refund(payment, self.refund_reason or FailureReason.OUT_OF_STOCK, payment.amount_paise)

    def settled(self, payment: GatewayPayment) -> Complete | Refund:
        """A captured payment of the job's own checkout, nothing of it refunded at the gateway: the order is
        fulfilled, or the money goes back when it cannot be."""
        if self.unfulfillable:
            return Refund(payment, self.unfulfillable, payment.amount_paise)
        return Complete(payment)


@dataclass(frozen=True)
class Complete:
    """Fulfil the order with this captured payment (the books may still refuse: then it is refunded)."""

    payment: GatewayPayment


@dataclass(frozen=True)
class Capture:
    """Capture this authorised payment (take the endpoint's token, mark the capture sent), then complete."""

    payment: GatewayPayment
    endpoint: str
    capture: Callable[[], GatewayPayment]


@dataclass(frozen=True)
class Refund:
    """Give amount_paise of this captured payment back to the shopper; the job fails with reason."""

    payment: GatewayPayment
    reason: str
    amount_paise: int


@dataclass(frozen=True)
class Fail:
    """End the job unpaid; release: an authorisation of its checkout that will never be captured."""

    reason: str
    checkout_status: str | None = None
    release: GatewayPayment | None = None


@dataclass(frozen=True)
class RefundedAtGateway:
    """Refunds made at the gateway before we decided (its dashboard, or the gateway returning an
    authorisation): booked, the order never fulfilled, what is left captured given back."""

    payment: GatewayPayment
    refunds: list[GatewayRefund]


@dataclass(frozen=True)
class Park:
    """Not final at the gateway: no message, the user's group free; a webhook or the sweeper wakes it."""


Verdict = Complete | Capture | Refund | Fail | RefundedAtGateway | Park

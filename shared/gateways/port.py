"""The one port every gateway package implements, and the terms it speaks in.

A gateway (shared/gateways/<name>/) creates the gateway order for a checkout, says what the page opens
the gateway's checkout with, checks what the page hands back, reads a job's payment and gives its
verdict, refunds, follows refunds, reads and verifies its webhooks, and publishes its limits. The
services dispatch through the registry (App.gateways) and never name a gateway; the driver of a
gateway payment (shared/services/gateway.py) acts on the verdict, each step its own transaction.

Every request a gateway makes takes a token of its endpoint's shared bucket first: the gateway names
the endpoint (one of its published limits) to the Token it is handed, which waits, reserves or refuses
as the caller's path does. Requests raise GatewayRetryable (429, 5xx, timeouts; a write whose answer
was lost is "unknown_outcome") or GatewayRejected (other 4xx).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.gateways.verdicts import Job, Verdict
from shared.ports import GatewayOrder, GatewayRefund

if TYPE_CHECKING:
    from shared.domain import PaymentRequest
    from shared.settings import Settings

# Take a token of the named endpoint's bucket before a request (shared/gateway_limits.py names).
Token = Callable[[str], None]


@dataclass(frozen=True)
class CheckoutOrder:
    """What a checkout asks its gateway order to be: our reference at the gateway (fixed before the create
    call, so that a lost answer is settled by looking it up), the exact amount, the shopper as a customer id
    that is not their user id, and when it stops being payable."""

    checkout_id: str
    order_id: int
    merchant_ref: str
    amount_paise: int
    currency: str
    customer_id: str
    expires_at: datetime  # whole seconds: the same body on every retry


@dataclass(frozen=True)
class WebhookEvent:
    """What a verified webhook says, in the terms pq_webhook_record takes."""

    event_type: str
    gateway_order_id: str | None = None
    gateway_ref: str | None = None  # the job's reference (Job.gateway_ref)
    success: bool = False
    failure: bool = False
    refund_id: str | None = None
    refund_state: str | None = None
    refund_status: str | None = None
    refund_ref: str | None = None  # the merchant's reference: ours or the dashboard's
    refund_amount_paise: int | None = None
    refund_currency: str | None = None


@dataclass(frozen=True)
class OrderPaid:
    """A payment a gateway order holds, as reconciliation finds it: the job's reference (Job.gateway_ref),
    and whether its money is captured (False: authorised only, Razorpay's "authorized")."""

    ref: str
    captured: bool


@dataclass(frozen=True)
class OrderLook:
    """What reconciliation reads of a gateway order: the payments it holds, captured ones first, then authorised
    ones; and open: whether the gateway still says it can take a payment (Cashfree ACTIVE), so that it is not
    taken for ended unpaid by our clock, however late."""

    payments: list[OrderPaid]
    open: bool = False


class PaymentGateway(Protocol):
    """One gateway, as the services use it. Built by its package's build() from the settings."""

    name: str
    # The published limit each kind of request takes its token from: create (a checkout's create call, its
    # token taken by pq_checkout_route), fetch (the first request of a delivery, its token taken by
    # pq_gateway_begin), refund, find_refund, refunds.
    endpoints: Mapping[str, str]
    # The gateway's own, unsigned id of a webhook delivery: recorded to match its dashboard, never a key.
    webhook_event_id_header: str
    # False: the gateway order takes a payment after the checkout's expiry (it has no expiry of its own), so
    # reconciliation keeps looking at it, once a day, for Settings.checkout_late_watch_s past that expiry.
    # True: the gateway refuses payment of it past the expiry the checkout gave it.
    order_expires: bool

    def create_order(self, checkout: CheckoutOrder, retried: bool, token: Token) -> GatewayOrder:
        """The gateway order for the checkout. retried: an earlier create may have gone through, so it is
        looked up first, never made twice."""
        ...

    def page(self, gateway_order_id: str | None, payment_session_id: str | None) -> dict[str, Any]:
        """What the shopper's page opens the gateway's checkout with (the checkout view's <name> member)."""
        ...

    def handed(self, request: PaymentRequest) -> tuple[str | None, str | None]:
        """(gateway order id, payment reference) the page sent (None: the checkout's own)."""
        ...

    def checkout_signature_valid(self, request: PaymentRequest) -> bool:
        """The gateway's signature over what the page sent verifies (a gateway that signs none: True)."""
        ...

    def verdict(self, job: Job, token: Token) -> Verdict:
        """What to do with the job's payment, from what the gateway reports now. Raises GatewayRetryable
        ("pending") while the payment is not final."""
        ...

    def refund(self, ref: str, amount_paise: int, currency: str, refund_ref: str) -> GatewayRefund:
        """Refund amount_paise of ref; refund_ref is our idempotency reference, the same on every retry."""
        ...

    def find_refund(self, ref: str, refund_ref: str) -> GatewayRefund | None:
        """The refund sent earlier with refund_ref, if the gateway has it (settles a lost answer)."""
        ...

    def refunds(self, ref: str) -> list[GatewayRefund]:
        """Every refund of ref the gateway holds, whoever made it."""
        ...

    def follow_refund(self, ref: str, refund_ref: str, gateway_refund_id: str) -> GatewayRefund:
        """A refund the gateway has, as it reports it now (ours or one made at the gateway)."""
        ...

    def look_at_order(self, gateway_order_id: str, token: Token) -> OrderLook:
        """The gateway order as the sweeper's reconciliation reads it."""
        ...

    def webhook_signature_valid(self, raw: bytes, headers: Mapping[str, str]) -> bool:
        """The gateway's signature over exactly these bytes (headers: lower-cased names)."""
        ...

    def webhook_event(self, body: dict[str, Any]) -> WebhookEvent:
        """What a verified webhook body says."""
        ...

    def signed_at(self, headers: Mapping[str, str]) -> datetime | None:
        """When a verified webhook was signed, where the gateway signs a time (else None)."""
        ...


@dataclass(frozen=True)
class WebhookDoc:
    """POST /v1/webhooks/<name> in the OpenAPI document: its summary, and the headers that sign it."""

    summary: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class GatewayPackage:
    """A gateway package as the registry holds it: its name, whether the settings configure it, how to
    build it, its published limits (requests per minute of an endpoint; ValueError for an endpoint it
    does not have), and how its webhook route is documented."""

    name: str
    configured: Callable[[Settings], bool]
    build: Callable[[Settings], PaymentGateway]
    published_per_min: Callable[[Settings, str], float]
    webhook: WebhookDoc

"""Razorpay: Orders API checkouts, payments bound to their order (authorised, then captured by us), refunds
by payment, webhooks signed with the Dashboard's webhook secret.

A job's reference is the payment Razorpay Checkout handed the page, with its signature over
order_id|payment_id (verified before anything is recorded); the payment must belong to the checkout's
order, for its amount, with nothing refunded, or it is not ours to capture or refund.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from shared.domain import FailureReason, GatewayRetryable, PaymentRequest
from shared.gateway_signatures import verify_razorpay_checkout, verify_razorpay_webhook
from shared.gateways.base import RefundsThroughApi, unless_unknown
from shared.gateways.fields import RefundFields, member, refund_event, text
from shared.gateways.http import Credentials
from shared.gateways.port import (
    CheckoutOrder,
    GatewayPackage,
    OrderLook,
    OrderPaid,
    Token,
    WebhookDoc,
    WebhookEvent,
)
from shared.gateways.razorpay.client import REFUND_STATE, RazorpayApi, RazorpayGateway
from shared.gateways.razorpay.limits import STEP_ENDPOINTS, published_per_min
from shared.gateways.secrets import credentials, secret_field
from shared.gateways.verdicts import Capture, Fail, Job, RefundedAtGateway, Verdict
from shared.ports import GatewayOrder, GatewayRefund
from shared.settings import Settings

# Events that say money was taken for a payment of the order (razorpay.com/docs/webhooks/payments).
_SUCCESS = frozenset({"payment.authorized", "payment.captured", "order.paid"})
_FAILURE = frozenset({"payment.failed"})
_REFUND = frozenset({"refund.processed", "refund.failed", "refund.created"})
# The refund entity: amounts in paise; our reference is its receipt (RazorpayGateway.refund sends it).
_REFUND_FIELDS = RefundFields("payment_id", "id", "status", "receipt", "amount", "currency", rupees=False)
# What signs a webhook, for its route in the OpenAPI document.
_SIGNED_BY = {
    "X-Razorpay-Signature": "hex HMAC-SHA256 of the raw body with the webhook secret",
    "X-Razorpay-Event-Id": "the event's id (not signed: never the deduplication key)",
}


class Razorpay(RefundsThroughApi):
    name = "razorpay"
    api: RazorpayApi
    endpoints: Mapping[str, str] = STEP_ENDPOINTS
    # "use the x-razorpay-event-id header to check for duplicates" (razorpay.com/docs/webhooks/validate-test)
    # is only safe for deliveries nobody replays: it is not signed.
    webhook_event_id_header = "x-razorpay-event-id"
    # A Razorpay order is created, attempted or paid, nothing else: "No further payment requests are allowed
    # once the order moves to the paid state" (razorpay.com/docs/payments/orders), and none stops one before.
    # Our checkout's expiry is ours alone: what Checkout is opened with binds only the page that opens it.
    order_expires = False

    def __init__(
        self, api: RazorpayApi, keys: Credentials, webhook_secret: Callable[[], str], settings: Settings
    ) -> None:
        self.api = api
        self._keys = keys  # (key_id, key_secret): Checkout's key_id, its signatures
        self._webhook_secret = webhook_secret
        self._settings = settings

    def __repr__(self) -> str:
        return f"Razorpay({self.api!r})"

    def create_order(self, checkout: CheckoutOrder, retried: bool, token: Token) -> GatewayOrder:
        if retried:  # an earlier create may have gone through: its receipt finds it
            token("find_orders")
            found = self.api.find_order_by_receipt(checkout.merchant_ref)
            if found is not None:
                return found
        token("create_order")
        # notes carry our order and the shopper (as a customer id: no raw user id at the gateway).
        notes = {
            "pq_order_id": str(checkout.order_id),
            "pq_customer_id": checkout.customer_id,
            "pq_checkout_id": checkout.checkout_id,
        }
        return self.api.create_order(checkout.amount_paise, checkout.currency, checkout.merchant_ref, notes)

    def page(self, gateway_order_id: str | None, payment_session_id: str | None) -> dict[str, Any]:
        return {
            "key_id": self._keys()[0],
            "order_id": gateway_order_id,
            "script_url": self._settings.razorpay_checkout_script_url,
        }

    def handed(self, request: PaymentRequest) -> tuple[str | None, str | None]:
        return request.razorpay_order_id, request.razorpay_payment_id

    def checkout_signature_valid(self, request: PaymentRequest) -> bool:
        """Razorpay Checkout's signature over order_id|payment_id with the key secret, in constant time."""
        return verify_razorpay_checkout(
            request.razorpay_order_id, request.razorpay_payment_id, request.razorpay_signature, self._keys()[1]
        )

    def verdict(self, job: Job, token: Token) -> Verdict:
        token("fetch_payment")
        payment = unless_unknown(lambda: self.api.fetch_payment(job.gateway_ref))
        if payment is None:
            return Fail(FailureReason.GATEWAY_PAYMENT_NOT_FOUND)
        if payment.order_id is None or payment.order_id != job.gateway_order_id:
            return Fail(FailureReason.GATEWAY_ORDER_MISMATCH)
        if job.refund_sent:
            return job.resumed_refund(payment)
        if payment.status == "refunded" or payment.amount_refunded_paise:
            # Refunded at the gateway (the merchant's dashboard, or Razorpay returning an authorisation
            # never captured): amount_refunded is free to read; which refunds, only by listing them.
            token("fetch_refund")
            return RefundedAtGateway(payment, self.refunds(job.gateway_ref))
        if payment.status == "captured":
            return job.settled(payment)
        if payment.status == "authorized":
            # The checkout's amount, and an order that can still be fulfilled for it (pq_gateway_begin's
            # early answer: an order whose total changed since its checkout is amount_mismatch), or nothing
            # is captured and the authorisation lapses (booked as released).
            amount = (payment.amount_paise, payment.currency)
            if amount != (job.checkout_amount_paise, job.checkout_currency):
                return Fail(FailureReason.AMOUNT_MISMATCH, release=payment)
            if job.unfulfillable:
                return Fail(job.unfulfillable, release=payment)
            return Capture(payment, "capture", lambda: self.api.capture(job.gateway_ref, *amount))
        if payment.status in ("created", "pending"):
            raise GatewayRetryable("pending", "payment not final at the gateway yet")
        return Fail(FailureReason.GATEWAY_PAYMENT_FAILED)

    def follow_refund(self, ref: str, refund_ref: str, gateway_refund_id: str) -> GatewayRefund:
        return self.api.fetch_refund(ref, gateway_refund_id)

    def look_at_order(self, gateway_order_id: str, token: Token) -> OrderLook:
        """The order's captured payments, then its authorised ones: an order can hold more than one (a shopper
        who paid again; Razorpay refunds a payment made to an order already paid at once, and one never
        captured after 3 days), and one that a job of ours released must not hide the next. Never open: a
        Razorpay order always takes payment, and the late-payment watch (order_expires) looks after that."""
        token("fetch_order")
        if self.api.fetch_order(gateway_order_id).status not in ("paid", "attempted"):
            return OrderLook([])
        token("order_payments")
        payments = [p for p in self.api.order_payments(gateway_order_id) if p.order_id == gateway_order_id]
        return OrderLook(
            [
                OrderPaid(p.ref, captured=status == "captured")
                for status in ("captured", "authorized")
                for p in payments
                if p.status == status
            ]
        )

    def webhook_signature_valid(self, raw: bytes, headers: Mapping[str, str]) -> bool:
        return verify_razorpay_webhook(raw, headers.get("x-razorpay-signature"), self._webhook_secret())

    def webhook_event(self, body: dict[str, Any]) -> WebhookEvent:
        """The event envelope: {"event", "payload": {"payment": {"entity"}, "order": ..., "refund": ...}}."""
        kind = text(body.get("event")) or ""
        payload = member(body.get("payload"))
        payment = member(member(payload.get("payment")).get("entity"))
        order = member(member(payload.get("order")).get("entity"))
        refund = member(member(payload.get("refund")).get("entity"))
        if kind in _REFUND and refund:
            if payment.get("captured") is False:
                # An auto-refund: Razorpay returning an authorisation nobody captured ("check
                # payload.payment.entity.captured ... false for an auto-refund", razorpay.com/docs/webhooks/
                # refunds). No money was ours to book: the books hold the authorisation as released.
                return WebhookEvent(kind)
            return refund_event(kind, refund, _REFUND_FIELDS, REFUND_STATE)
        return WebhookEvent(
            kind,
            gateway_order_id=text(payment.get("order_id")) or text(order.get("id")),
            gateway_ref=text(payment.get("id")),
            success=kind in _SUCCESS,
            failure=kind in _FAILURE,
        )

    def signed_at(self, headers: Mapping[str, str]) -> datetime | None:
        return None  # Razorpay signs no timestamp: the body's digest alone stops its replays


def _configured(settings: Settings) -> bool:
    return bool(settings.razorpay_secret_arn or (settings.razorpay_key_id and settings.razorpay_key_secret))


def _build(settings: Settings) -> Razorpay:
    """In AWS one secret holds key_id, key_secret and webhook_secret; locally the settings' values.
    Credentials are read on first use, not here."""
    arn = settings.razorpay_secret_arn
    keys = credentials(arn, (settings.razorpay_key_id, settings.razorpay_key_secret), ("key_id", "key_secret"))
    return Razorpay(
        RazorpayGateway(settings.razorpay_base_url, keys, settings.gateway_timeout_s),
        keys,
        secret_field(arn, settings.razorpay_webhook_secret, "webhook_secret"),
        settings,
    )


PACKAGE = GatewayPackage(
    "razorpay",
    _configured,
    _build,
    published_per_min,
    WebhookDoc("Razorpay webhooks (X-Razorpay-Signature over the raw body; no JWT)", _SIGNED_BY),
)

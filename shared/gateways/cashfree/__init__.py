"""Cashfree PG: orders we name (our merchant_ref is the order_id), paid by attempts Cashfree captures
itself (a SUCCESS attempt is money taken), refunds by order, webhooks signed with the client secret over
their timestamp and body.

A job's reference is the checkout's order: the page sends only order_id and method, and the server knows
the order's checkout. An order still ACTIVE is not final: the job parks until a webhook or the sweeper.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain import FailureReason, GatewayRejected, GatewayRetryable, PaymentRequest
from shared.gateway_signatures import verify_cashfree_webhook
from shared.gateways.base import RefundsThroughApi, unless_unknown
from shared.gateways.cashfree.client import REFUND_STATE, CashfreeApi, CashfreeGateway
from shared.gateways.cashfree.limits import STEP_ENDPOINTS, environment, published_per_min
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
from shared.gateways.secrets import credentials
from shared.gateways.verdicts import Fail, Job, Park, Refund, RefundedAtGateway, Verdict
from shared.ports import GatewayOrder, GatewayPayment, GatewayRefund, RefundState
from shared.settings import Settings

_FAILURE = frozenset({"PAYMENT_FAILED_WEBHOOK", "PAYMENT_USER_DROPPED_WEBHOOK"})
# REFUND_STATUS_WEBHOOK's data.refund; refunds go by order, so its order_id is the job's reference.
_REFUND_FIELDS = RefundFields(
    "order_id", "cf_refund_id", "refund_status", "refund_id", "refund_amount", "refund_currency", rupees=True
)
# What signs a webhook, for its route in the OpenAPI document.
_SIGNED_BY = {
    "x-webhook-signature": "base64 HMAC-SHA256 of x-webhook-timestamp + the raw body with the client secret",
    "x-webhook-timestamp": "milliseconds since the epoch, signed with the body",
}


def _completed_within(payment: GatewayPayment, seconds: float) -> bool:
    """Cashfree says the payment completed less than `seconds` ago (unknown: not)."""
    if payment.completed_at is None:
        return False
    return datetime.now(UTC) - payment.completed_at < timedelta(seconds=seconds)


class Cashfree(RefundsThroughApi):
    name = "cashfree"
    api: CashfreeApi
    endpoints: Mapping[str, str] = STEP_ENDPOINTS
    # Cashfree names an event by its body ("x-idempotency-key ... hashed value will always be unique for
    # each unique webhook payload", cashfree.com/docs/payments/online/webhooks/overview): not signed.
    webhook_event_id_header = "x-idempotency-key"
    # Created with order_expiry_time = the checkout's expiry (client.py): Cashfree refuses payment past it,
    # but for an attempt begun before it (Settings.checkout_settle_grace_s).
    order_expires = True

    def __init__(self, api: CashfreeApi, keys: Credentials, settings: Settings) -> None:
        self.api = api
        self._keys = keys  # (client_id, client_secret): the client secret signs webhooks
        self._settings = settings

    def __repr__(self) -> str:
        return f"Cashfree({self.api!r})"

    def create_order(self, checkout: CheckoutOrder, retried: bool, token: Token) -> GatewayOrder:
        if retried:  # the order we named may exist: fetch it before creating
            token("get_order")
            try:
                return self.api.fetch_order(checkout.merchant_ref)
            except GatewayRejected as exc:
                if exc.status != 404:
                    raise
        token("create_order")
        return self.api.create_order(
            checkout.merchant_ref,
            checkout.amount_paise,
            checkout.currency,
            customer_id=checkout.customer_id,
            customer_phone=self._settings.cashfree_customer_phone,
            expires_at=checkout.expires_at,
            notify_url=self._settings.cashfree_notify_url,
            tags={"pq_order_id": str(checkout.order_id), "pq_checkout_id": checkout.checkout_id},
            idempotency_key=checkout.merchant_ref,
        )

    def page(self, gateway_order_id: str | None, payment_session_id: str | None) -> dict[str, Any]:
        return {
            "order_id": gateway_order_id,
            "payment_session_id": payment_session_id,
            # Cashfree({mode}) must name the environment the order was created in.
            "mode": environment(self._settings),
            "script_url": self._settings.cashfree_sdk_url,
        }

    def handed(self, request: PaymentRequest) -> tuple[str | None, str | None]:
        return None, None  # the checkout's order is the job's reference

    def checkout_signature_valid(self, request: PaymentRequest) -> bool:
        return True  # the page hands back nothing signed: the order is fetched before anything is applied

    def verdict(self, job: Job, token: Token) -> Verdict:
        token("get_order")
        order = unless_unknown(lambda: self.api.fetch_order(job.gateway_ref))
        if order is None:
            return Fail(FailureReason.GATEWAY_PAYMENT_NOT_FOUND)
        if order.order_id != job.gateway_order_id:
            return Fail(FailureReason.GATEWAY_ORDER_MISMATCH)
        if order.status == "PAID":
            token("get_payments")
            paid = next((p for p in self.api.order_payments(job.gateway_ref) if p.gateway_status == "SUCCESS"), None)
            if paid is None:  # PAID before its payment is listed: look again shortly
                raise GatewayRetryable("pending", "order paid, its payment not listed yet")
            # Refunds go by order at Cashfree: the job's reference is the order.
            payment = GatewayPayment(
                job.gateway_ref,
                "captured",
                paid.amount_paise,
                paid.currency,
                job.gateway_ref,
                0,
                "SUCCESS",
                captured=True,
            )
            if job.refund_sent:
                return job.resumed_refund(payment)
            # Cashfree's order and payment say nothing of refunds made in its dashboard. Cashfree reports
            # every refund by REFUND_STATUS_WEBHOOK, which the books record (pq_refund_reported) and the
            # fulfilment then refuses; the webhook is sent when the refund is processed, so a payment completed
            # longer ago than cashfree_refunds_read_after_s may have one pending that nothing reported yet:
            # its refunds are read first (a Get Refund token each, 30 a minute published, which a flash sale
            # of fresh payments does not spend). Not for a payment that goes back anyway: a refund of ours that
            # asks for more than is left is refused, and the refusal reads them (shared/services/gateway.py).
            old = not _completed_within(paid, self._settings.cashfree_refunds_read_after_s)
            if job.unfulfillable and old:  # its refunds not read: it must not be fulfilled by COMPLETE
                return Refund(payment, job.unfulfillable, payment.amount_paise)
            if old:
                token("get_refund")
                refunds = self.refunds(job.gateway_ref)
                if any(r.state is not RefundState.FAILED for r in refunds):
                    return RefundedAtGateway(payment, refunds)
            return job.settled(payment)
        if order.status == "TERMINATED":
            return Fail(FailureReason.GATEWAY_PAYMENT_FAILED, checkout_status="failed")
        if job.unfulfillable == FailureReason.CANCELLED:
            # Its shopper left the line before paying: nothing to give back, so it ends now instead of waiting
            # for the order to expire. The checkout is expired for the shopper, who may then open a new one
            # and pay; this Cashfree order stays payable until its expiry, and a payment made to it after all
            # (a tab left open) gets a job of its own, found by a webhook or the reconciliation's looks until
            # Cashfree confirms the order's end, which reads the request and refunds it.
            return Fail(FailureReason.CANCELLED, checkout_status="expired")
        # An EXPIRED (or TERMINATION_REQUESTED) order can still turn PAID within checkout_settle_grace_s.
        grace = timedelta(seconds=self._settings.checkout_settle_grace_s)
        expires_at = job.checkout_expires_at or datetime.now(UTC)
        if order.status in ("EXPIRED", "TERMINATION_REQUESTED") and datetime.now(UTC) > expires_at + grace:
            return Fail(FailureReason.GATEWAY_CHECKOUT_EXPIRED, checkout_status="expired")
        # ACTIVE (attempts FAILED, USER_DROPPED, PENDING or none yet), or recently EXPIRED: not final.
        return Park()

    def follow_refund(self, ref: str, refund_ref: str, gateway_refund_id: str) -> GatewayRefund:
        return self.api.fetch_refund(ref, refund_ref)  # looked up by the refund_id its maker chose

    def look_at_order(self, gateway_order_id: str, token: Token) -> OrderLook:
        """The order itself, once PAID (Cashfree captures a successful payment at once; an order is paid once).
        Open while ACTIVE (or TERMINATION_REQUESTED): Cashfree may still complete an attempt on it, whatever our
        clock says, so it is looked at again until Cashfree ends it."""
        token("get_order")
        status = self.api.fetch_order(gateway_order_id).status
        if status == "PAID":
            return OrderLook([OrderPaid(gateway_order_id, captured=True)])
        return OrderLook([], open=status in ("ACTIVE", "TERMINATION_REQUESTED"))

    def webhook_signature_valid(self, raw: bytes, headers: Mapping[str, str]) -> bool:
        return verify_cashfree_webhook(
            raw, headers.get("x-webhook-timestamp"), headers.get("x-webhook-signature"), self._keys()[1]
        )

    def webhook_event(self, body: dict[str, Any]) -> WebhookEvent:
        """PG webhooks: {"type", "data": {"order", "payment", ...} | {"refund"}, "event_time"}."""
        kind = text(body.get("type")) or ""
        data = member(body.get("data"))
        if kind == "REFUND_STATUS_WEBHOOK":
            return refund_event(kind, member(data.get("refund")), _REFUND_FIELDS, REFUND_STATE)
        order_id = text(member(data.get("order")).get("order_id"))
        status = text(member(data.get("payment")).get("payment_status"))
        return WebhookEvent(
            kind,
            gateway_order_id=order_id,
            gateway_ref=order_id,  # a job is the order: its SUCCESS attempt is found by fetching it
            success=kind == "PAYMENT_SUCCESS_WEBHOOK" and status == "SUCCESS",
            failure=kind in _FAILURE,
        )

    def signed_at(self, headers: Mapping[str, str]) -> datetime | None:
        """x-webhook-timestamp (milliseconds), verified with the body: when it was signed."""
        stamp = headers.get("x-webhook-timestamp")
        if stamp is None:
            return None
        try:
            return datetime.fromtimestamp(int(stamp) / 1000, UTC)
        except (ValueError, OverflowError, OSError):
            return datetime.fromtimestamp(0, UTC)  # signed, yet no time we can hold: as old as any


def _configured(settings: Settings) -> bool:
    return bool(settings.cashfree_secret_arn or (settings.cashfree_client_id and settings.cashfree_client_secret))


def _build(settings: Settings) -> Cashfree:
    """In AWS a secret {"client_id", "client_secret"}; locally the settings' values, read on first use."""
    keys = credentials(
        settings.cashfree_secret_arn,
        (settings.cashfree_client_id, settings.cashfree_client_secret),
        ("client_id", "client_secret"),
    )
    api = CashfreeGateway(settings.cashfree_base_url, keys, settings.cashfree_api_version, settings.gateway_timeout_s)
    return Cashfree(api, keys, settings)


PACKAGE = GatewayPackage(
    "cashfree",
    _configured,
    _build,
    published_per_min,
    WebhookDoc("Cashfree PG webhooks (x-webhook-signature over x-webhook-timestamp + raw body; no JWT)", _SIGNED_BY),
)

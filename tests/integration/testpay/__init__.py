"""TestPay: a gateway that exists only in the tests, to prove that adding one is its package alone.

It keeps its orders and refunds in memory. Like Cashfree, the job's reference is the checkout's order
(the page hands back nothing) and an order not paid yet parks the job; its refunds are pending until the
test settles them; its webhooks are {"event": "order.paid", "order_id"} signed with an HMAC-SHA256 of
the body in x-testpay-signature. Registered by the test (the registry, then bootstrap); nothing under
shared/services or functions names it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.domain import FailureReason, PaymentRequest
from shared.gateways.fields import member, text
from shared.gateways.port import CheckoutOrder, GatewayPackage, OrderLook, OrderPaid, Token, WebhookDoc, WebhookEvent
from shared.gateways.verdicts import Fail, Job, Park, Verdict
from shared.ports import GatewayOrder, GatewayPayment, GatewayRefund, RefundState
from shared.settings import Settings

NAME = "testpay"
WEBHOOK_SECRET = b"testpay-webhook-secret"
LIMITS_PER_MIN = {"read": 6_000.0, "write": 6_000.0}


@dataclass
class _Order:
    amount_paise: int
    currency: str
    paid: bool = False


class TestPay:
    name = NAME
    endpoints: Mapping[str, str] = {
        "create": "write",
        "fetch": "read",
        "refund": "write",
        "find_refund": "read",
        "refunds": "read",
    }
    webhook_event_id_header = "x-testpay-delivery"
    order_expires = True

    def __init__(self) -> None:
        self.orders: dict[str, _Order] = {}
        self.refunds_of: dict[str, list[GatewayRefund]] = {}

    # The shopper and the gateway's own doings, for the test.

    def pay(self, order_id: str) -> None:
        self.orders[order_id].paid = True

    def settle_refunds(self) -> None:
        for ref, refunds in self.refunds_of.items():
            self.refunds_of[ref] = [replace(r, state=RefundState.SUCCEEDED, gateway_status="done") for r in refunds]

    def signed(self, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        raw = json.dumps(body).encode()
        signature = hmac.new(WEBHOOK_SECRET, raw, hashlib.sha256).hexdigest()
        return raw, {"x-testpay-signature": signature, "x-testpay-delivery": "dlv-1"}

    # The port.

    def create_order(self, checkout: CheckoutOrder, retried: bool, token: Token) -> GatewayOrder:
        token("write")
        order = self.orders.setdefault(checkout.merchant_ref, _Order(checkout.amount_paise, checkout.currency))
        return GatewayOrder(checkout.merchant_ref, "open", order.amount_paise, order.currency)

    def page(self, gateway_order_id: str | None, payment_session_id: str | None) -> dict[str, Any]:
        return {"order_id": gateway_order_id}

    def handed(self, request: PaymentRequest) -> tuple[str | None, str | None]:
        return None, None

    def checkout_signature_valid(self, request: PaymentRequest) -> bool:
        return True

    def verdict(self, job: Job, token: Token) -> Verdict:
        token("read")
        order = self.orders.get(job.gateway_ref)
        if order is None:
            return Fail(FailureReason.GATEWAY_PAYMENT_NOT_FOUND)
        if not order.paid:
            return Park()
        payment = GatewayPayment(
            job.gateway_ref, "captured", order.amount_paise, order.currency, job.gateway_ref, captured=True
        )
        return job.resumed_refund(payment) if job.refund_sent else job.settled(payment)

    def refund(self, ref: str, amount_paise: int, currency: str, refund_ref: str) -> GatewayRefund:
        found = self.find_refund(ref, refund_ref)
        if found is not None:
            return found
        refunds = self.refunds_of.setdefault(ref, [])
        refunds.append(
            GatewayRefund(f"tp_rf_{len(refunds)}", amount_paise, currency, RefundState.PENDING, "new", refund_ref)
        )
        return refunds[-1]

    def find_refund(self, ref: str, refund_ref: str) -> GatewayRefund | None:
        return next((r for r in self.refunds(ref) if r.merchant_ref == refund_ref), None)

    def refunds(self, ref: str) -> list[GatewayRefund]:
        return list(self.refunds_of.get(ref, []))

    def follow_refund(self, ref: str, refund_ref: str, gateway_refund_id: str) -> GatewayRefund:
        return next(r for r in self.refunds(ref) if r.refund_id == gateway_refund_id)

    def look_at_order(self, gateway_order_id: str, token: Token) -> OrderLook:
        token("read")
        return OrderLook([OrderPaid(gateway_order_id, captured=True)] if self.orders[gateway_order_id].paid else [])

    def webhook_signature_valid(self, raw: bytes, headers: Mapping[str, str]) -> bool:
        expected = hmac.new(WEBHOOK_SECRET, raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, headers.get("x-testpay-signature", ""))

    def webhook_event(self, body: dict[str, Any]) -> WebhookEvent:
        kind = text(body.get("event")) or ""
        order_id = text(member(body).get("order_id"))
        return WebhookEvent(kind, gateway_order_id=order_id, gateway_ref=order_id, success=kind == "order.paid")

    def signed_at(self, headers: Mapping[str, str]) -> datetime | None:
        return None


def _published_per_min(settings: Settings, endpoint: str) -> float:
    if endpoint not in LIMITS_PER_MIN:
        raise ValueError(f"unknown TestPay endpoint {endpoint!r}")
    return LIMITS_PER_MIN[endpoint]


PACKAGE = GatewayPackage(
    NAME,
    configured=lambda settings: True,
    build=lambda settings: TestPay(),
    published_per_min=_published_per_min,
    webhook=WebhookDoc("TestPay webhooks (x-testpay-signature over the raw body)", {"x-testpay-signature": "hex HMAC"}),
)

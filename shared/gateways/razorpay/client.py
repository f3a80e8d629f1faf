"""Razorpay API v1 over HTTP: Orders, payments bound to orders (fetch, capture with amount + currency),
refunds; basic auth with the key id and secret.

Why not the official client: `razorpay` (2.0.1) takes a base URL and a timeout, but turns every non-2xx
answer into an exception carrying only the description (no HTTP status, no headers: a 429 and its
Retry-After look like any bad request), fails on a non-JSON error body, and retries connection errors by
sleeping in-process, POSTs included. The requests below are the ones it sends (paths, basic auth, JSON
bodies); the simulator in local/gateway_sim.py answers them, and a test drives it with the official client.
"""

from __future__ import annotations

from base64 import b64encode
from typing import Any, Protocol
from urllib.parse import urlencode

from shared.domain import GatewayRejected, GatewayRetryable
from shared.gateways.base import RefundApi
from shared.gateways.http import Credentials, Http, q, refund_of, string_map
from shared.ports import GatewayOrder, GatewayPayment, GatewayRefund, RefundState

_STATUS = {
    "created": "created",
    "authorized": "authorized",
    "captured": "captured",
    "refunded": "refunded",
    "failed": "failed",
}
# The refunds entity's status: pending, processed, failed.
REFUND_STATE = {"pending": RefundState.PENDING, "processed": RefundState.SUCCEEDED, "failed": RefundState.FAILED}


class RazorpayApi(RefundApi, Protocol):
    """The Razorpay calls the gateway makes (RazorpayGateway over HTTP; a fake in a test).

    Raises GatewayRetryable (429, 5xx, timeouts; a write whose answer was lost is "unknown_outcome")
    or GatewayRejected (other 4xx: Razorpay answers 400 BAD_REQUEST_ERROR for unknown ids too).
    """

    def create_order(self, amount_paise: int, currency: str, receipt: str, notes: dict[str, str]) -> GatewayOrder:
        """POST /v1/orders. receipt is ours, at most 40 characters; a lost answer is settled by
        find_order_by_receipt, never by creating again blindly."""
        ...

    def fetch_order(self, order_id: str) -> GatewayOrder: ...

    def find_order_by_receipt(self, receipt: str) -> GatewayOrder | None: ...

    def order_payments(self, order_id: str) -> list[GatewayPayment]: ...

    def fetch_payment(self, payment_id: str) -> GatewayPayment: ...

    def capture(self, ref: str, amount_paise: int, currency: str) -> GatewayPayment:
        """Capture an authorized payment; a refusal is reported as unknown_outcome (settle by fetch)."""
        ...

    def fetch_refund(self, payment_id: str, refund_id: str) -> GatewayRefund: ...


class RazorpayGateway:
    """Razorpay API v1: Orders, payments (fetch, capture with amount + currency), refunds; basic auth."""

    def __init__(self, base_url: str, credentials: Credentials, timeout_s: float) -> None:
        self._http = Http(base_url, timeout_s)
        self._credentials = credentials

    def __repr__(self) -> str:
        return f"RazorpayGateway({self._http.base_url!r})"

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        key_id, key_secret = self._credentials()
        return {"Authorization": "Basic " + b64encode(f"{key_id}:{key_secret}".encode()).decode(), **(extra or {})}

    @staticmethod
    def _payment(body: dict[str, Any]) -> GatewayPayment:
        return GatewayPayment(
            ref=str(body["id"]),
            status=_STATUS.get(str(body.get("status")), "failed"),
            amount_paise=int(body["amount"]),
            currency=str(body["currency"]),
            order_id=str(body["order_id"]) if body.get("order_id") else None,
            amount_refunded_paise=int(body.get("amount_refunded") or 0),
            gateway_status=str(body.get("status")),
            captured=body.get("captured") is True,
        )

    @staticmethod
    def _order(body: dict[str, Any]) -> GatewayOrder:
        return GatewayOrder(
            order_id=str(body["id"]),
            status=str(body["status"]),
            amount_paise=int(body["amount"]),
            currency=str(body["currency"]),
            receipt=str(body["receipt"]) if body.get("receipt") is not None else None,
            notes=string_map(body.get("notes")),
            attempts=int(body.get("attempts") or 0),
        )

    def create_order(self, amount_paise: int, currency: str, receipt: str, notes: dict[str, str]) -> GatewayOrder:
        if len(receipt) > 40:  # Orders API: "maximum length of 40 characters"
            raise ValueError("a Razorpay receipt has at most 40 characters")
        body = {"amount": amount_paise, "currency": currency, "receipt": receipt, "notes": notes}
        return self._order(self._http.request("POST", "/v1/orders", self._headers(), body))

    def fetch_order(self, order_id: str) -> GatewayOrder:
        return self._order(self._http.request("GET", f"/v1/orders/{q(order_id)}", self._headers()))

    def find_order_by_receipt(self, receipt: str) -> GatewayOrder | None:
        """The order created with this receipt: a paid or attempted one first, else the oldest."""
        query = urlencode({"receipt": receipt, "count": 100})
        items = [
            i
            for i in self._http.request("GET", f"/v1/orders?{query}", self._headers()).get("items", [])
            if i.get("receipt") == receipt
        ]
        if not items:
            return None
        rank = {"paid": 0, "attempted": 1}
        items.sort(key=lambda i: (rank.get(str(i.get("status")), 2), int(i.get("created_at") or 0)))
        return self._order(items[0])

    def order_payments(self, order_id: str) -> list[GatewayPayment]:
        body = self._http.request("GET", f"/v1/orders/{q(order_id)}/payments", self._headers())
        return [self._payment(p) for p in body.get("items", [])]

    def fetch_payment(self, payment_id: str) -> GatewayPayment:
        return self._payment(self._http.request("GET", f"/v1/payments/{q(payment_id)}", self._headers()))

    def capture(self, ref: str, amount_paise: int, currency: str) -> GatewayPayment:
        try:
            body = self._http.request(
                "POST",
                f"/v1/payments/{q(ref)}/capture",
                self._headers(),
                {"amount": amount_paise, "currency": currency},
            )
        except GatewayRejected as exc:
            # "already captured", a state that changed since the fetch, or a payment without an order:
            # Razorpay answers them all 400 BAD_REQUEST_ERROR, told apart only by text. Settle by fetching.
            raise GatewayRetryable("unknown_outcome", f"capture refused: {exc.code}", 0) from None
        return self._payment(body)

    def refund(self, ref: str, amount_paise: int, currency: str, refund_ref: str) -> GatewayRefund:
        # X-Refund-Idempotency (refunds/normal-refunds-idempotent): a retry with the same key and body
        # returns the same refund; refund_ref ("pq" + job id) fits its 10+ letters, digits, - and _. A retry
        # while the first request is still being processed is answered 409 Conflict, to be retried: the
        # outcome is unknown, never a refusal.
        try:
            body = self._http.request(
                "POST",
                f"/v1/payments/{q(ref)}/refund",
                self._headers({"X-Refund-Idempotency": refund_ref}),
                {
                    "amount": amount_paise,
                    "speed": "normal",
                    "receipt": refund_ref,
                    "notes": {"pq_refund_ref": refund_ref},
                },
            )
        except GatewayRejected as exc:
            if exc.status == 409:
                raise GatewayRetryable("unknown_outcome", "refund with this key still being processed", 1) from None
            raise
        return refund_of(
            body, currency, REFUND_STATE, amount_paise=int(body["amount"]), merchant_ref=body.get("receipt")
        )

    def fetch_refund(self, payment_id: str, refund_id: str) -> GatewayRefund:
        body = self._http.request("GET", f"/v1/payments/{q(payment_id)}/refunds/{q(refund_id)}", self._headers())
        return refund_of(body, "INR", REFUND_STATE, amount_paise=int(body["amount"]), merchant_ref=body.get("receipt"))

    def refunds(self, ref: str) -> list[GatewayRefund]:
        """Every refund of the payment, ours (receipt = our reference) and the dashboard's (count: the list is
        paginated, 10 by default, at most 100 a page: api/refunds/fetch-multiple-refund-payment)."""
        body = self._http.request("GET", f"/v1/payments/{q(ref)}/refunds?count=100", self._headers())
        return [
            refund_of(i, "INR", REFUND_STATE, amount_paise=int(i["amount"]), merchant_ref=i.get("receipt") or None)
            for i in body.get("items", [])
        ]

    def find_refund(self, ref: str, refund_ref: str) -> GatewayRefund | None:
        return next((r for r in self.refunds(ref) if r.merchant_ref == refund_ref), None)

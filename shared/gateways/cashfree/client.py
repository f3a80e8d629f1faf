"""Cashfree PG over HTTP: orders we name, their attempts (SUCCESS means captured), order refunds; the
x-client-id / x-client-secret / x-api-version headers.

Why not the official client: `cashfree-pg` (6.0.1) hard-codes its two hosts (no base URL, so no
simulator) and pins urllib3 below what boto3 needs. The requests below are the ones it sends; the
simulator in local/gateway_sim.py answers them, and tests/contract drives it with the official SDK.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from shared.domain import GatewayRejected, GatewayRetryable
from shared.gateways.base import RefundApi
from shared.gateways.http import Credentials, Http, q, refund_of, string_map
from shared.ports import GatewayOrder, GatewayPayment, GatewayRefund, RefundState

# Payment (attempt) statuses in our terms; VOID and CANCELLED attempts took no money.
_STATUS = {
    "SUCCESS": "captured",
    "PENDING": "pending",
    "NOT_ATTEMPTED": "created",
    "FAILED": "failed",
    "USER_DROPPED": "failed",
    "VOID": "failed",
    "CANCELLED": "failed",
}
# RefundEntity.refund_status: PENDING, ONHOLD (not final), SUCCESS, CANCELLED; FAILED listed in the docs too.
REFUND_STATE = {
    "PENDING": RefundState.PENDING,
    "ONHOLD": RefundState.PENDING,
    "SUCCESS": RefundState.SUCCEEDED,
    "CANCELLED": RefundState.FAILED,
    "FAILED": RefundState.FAILED,
}


class CashfreeApi(RefundApi, Protocol):
    """The Cashfree PG calls the gateway makes (CashfreeGateway over HTTP; a fake in a test). Raises
    GatewayRetryable (429, 5xx, timeouts; a lost write's answer is "unknown_outcome") or GatewayRejected."""

    def create_order(
        self,
        order_id: str,
        amount_paise: int,
        currency: str,
        *,
        customer_id: str,
        customer_phone: str,
        expires_at: datetime,
        notify_url: str | None,
        tags: dict[str, str],
        idempotency_key: str,
    ) -> GatewayOrder:
        """POST /pg/orders with our order_id; the same idempotency key and body replay the first answer."""
        ...

    def fetch_order(self, order_id: str) -> GatewayOrder: ...

    def order_payments(self, order_id: str) -> list[GatewayPayment]:
        """Every attempt at the order (SUCCESS, FAILED, USER_DROPPED, PENDING, NOT_ATTEMPTED, ...)."""
        ...

    def fetch_refund(self, order_id: str, refund_id: str) -> GatewayRefund: ...


def _to_paise(amount: Any) -> int:
    """Cashfree speaks rupees as JSON numbers (123.45); we keep integer paise."""
    paise = Decimal(str(amount)) * 100
    if paise != paise.to_integral_value():
        raise ValueError("amount has fractions of a paisa")
    return int(paise)


def _instant(value: Any) -> datetime | None:
    """Cashfree's ISO 8601 times with their offset ("2024-01-15T11:45:56+05:30"); None if absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        return None
    return instant if instant.tzinfo is not None else None


def _to_rupees(paise: int) -> float:
    return float(Decimal(paise) / 100)


class CashfreeGateway:
    """Cashfree PG: orders we name, their attempts (SUCCESS means captured), order refunds."""

    def __init__(self, base_url: str, credentials: Credentials, api_version: str, timeout_s: float) -> None:
        self._http = Http(base_url, timeout_s)
        self._credentials = credentials
        self._api_version = api_version

    def __repr__(self) -> str:
        return f"CashfreeGateway({self._http.base_url!r})"

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        client_id, client_secret = self._credentials()
        headers = {"x-client-id": client_id, "x-client-secret": client_secret, "x-api-version": self._api_version}
        if idempotency_key:
            headers["x-idempotency-key"] = idempotency_key
        return headers

    @staticmethod
    def _order(body: dict[str, Any]) -> GatewayOrder:
        customer = body.get("customer_details") or {}
        return GatewayOrder(
            order_id=str(body["order_id"]),
            status=str(body["order_status"]),
            amount_paise=_to_paise(body["order_amount"]),
            currency=str(body["order_currency"]),
            notes=string_map(body.get("order_tags")),
            payment_session_id=body.get("payment_session_id"),
            customer_id=customer.get("customer_id"),
        )

    @staticmethod
    def _attempt(body: dict[str, Any]) -> GatewayPayment:
        status = str(body.get("payment_status"))
        return GatewayPayment(
            ref=str(body["cf_payment_id"]),  # a string since API version 2023-08-01
            status=_STATUS.get(status, "failed"),
            amount_paise=_to_paise(body.get("payment_amount") or 0),
            currency=str(body.get("payment_currency") or "INR"),
            order_id=str(body["order_id"]) if body.get("order_id") else None,
            gateway_status=status,
            completed_at=_instant(body.get("payment_completion_time")),
        )

    def create_order(
        self,
        order_id: str,
        amount_paise: int,
        currency: str,
        *,
        customer_id: str,
        customer_phone: str,
        expires_at: datetime,
        notify_url: str | None,
        tags: dict[str, str],
        idempotency_key: str,
    ) -> GatewayOrder:
        """POST /pg/orders. The same idempotency key and body replay the first answer (a lost answer is
        settled by sending it again); an order_id taken by another body is GatewayRejected(409)."""
        if expires_at.tzinfo is None:
            raise ValueError("order_expiry_time needs a time zone")
        body: dict[str, Any] = {
            "order_id": order_id,
            "order_amount": _to_rupees(amount_paise),
            "order_currency": currency,
            "customer_details": {"customer_id": customer_id, "customer_phone": customer_phone},
            "order_expiry_time": expires_at.isoformat(timespec="seconds"),
            "order_tags": tags,
        }
        if notify_url:
            body["order_meta"] = {"notify_url": notify_url}
        return self._order(self._http.request("POST", "/orders", self._headers(idempotency_key), body))

    def fetch_order(self, order_id: str) -> GatewayOrder:
        return self._order(self._http.request("GET", f"/orders/{q(order_id)}", self._headers()))

    def order_payments(self, order_id: str) -> list[GatewayPayment]:
        payments = self._http.request("GET", f"/orders/{q(order_id)}/payments", self._headers())
        if not isinstance(payments, list):
            raise GatewayRetryable("unavailable", "unexpected answer to Get Payments")
        return [self._attempt(p) for p in payments]

    def refund(self, ref: str, amount_paise: int, currency: str, refund_ref: str) -> GatewayRefund:
        try:
            body = self._http.request(
                "POST",
                f"/orders/{q(ref)}/refunds",
                self._headers(idempotency_key=refund_ref),
                {"refund_amount": _to_rupees(amount_paise), "refund_id": refund_ref, "refund_note": "unfulfillable"},
            )
        except GatewayRejected as exc:
            if exc.status != 409:  # 409: this refund_id exists already -- the earlier attempt went through
                raise
            found = self.find_refund(ref, refund_ref)
            if found is None:
                raise
            return found
        return self._refund(body, currency)

    def fetch_refund(self, order_id: str, refund_id: str) -> GatewayRefund:
        body = self._http.request("GET", f"/orders/{q(order_id)}/refunds/{q(refund_id)}", self._headers())
        return self._refund(body, "INR")

    def refunds(self, ref: str) -> list[GatewayRefund]:
        """Every refund of the order (Get All Refunds for an Order), ours and the dashboard's."""
        body = self._http.request("GET", f"/orders/{q(ref)}/refunds", self._headers())
        if not isinstance(body, list):
            raise GatewayRetryable("unavailable", "unexpected answer to Get All Refunds for an Order")
        return [self._refund(r, "INR") for r in body]

    def find_refund(self, ref: str, refund_ref: str) -> GatewayRefund | None:
        try:
            return self.fetch_refund(ref, refund_ref)
        except GatewayRejected as exc:
            if exc.status == 404:
                return None
            raise

    @staticmethod
    def _refund(body: dict[str, Any], currency: str) -> GatewayRefund:
        return refund_of(
            body,
            currency,
            REFUND_STATE,
            amount_paise=_to_paise(body["refund_amount"]),
            merchant_ref=body.get("refund_id"),
        )

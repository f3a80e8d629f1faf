"""Razorpay and Cashfree PG adapters: thin HTTP clients over the standard library.

The checkout flow (issue 12) uses RazorpayGateway's create_order / fetch_order / find_order_by_receipt /
order_payments / fetch_payment / capture / refund / fetch_refund and CashfreeGateway's create_order /
fetch_order / order_payments / refund / fetch_refund (shared/ports.py: RazorpayApi, CashfreeApi). The
old flow's fetch (a bare payment reference) and find_refund still work; fetch_payment and order_payments
replace fetch, fetch_refund replaces find_refund once a refund id is known.

Why not the official clients: `razorpay` (2.0.1) takes a base URL and a timeout, but turns every
non-2xx answer into an exception carrying only the description (no HTTP status, no headers: a 429
and its Retry-After look like any bad request), fails on a non-JSON error body, and retries
connection errors by sleeping in-process, POSTs included; `cashfree-pg` (6.0.1) hard-codes its
two hosts (no base URL, so no simulator) and pins urllib3 below what boto3 needs. The requests
below are the ones those clients send (paths, basic auth, x-client-id / x-client-secret /
x-api-version headers, JSON bodies); the simulator in local/gateway_sim.py answers both, and a
test drives it with the official Razorpay client.

Credentials come from a callable (settings locally, Secrets Manager in AWS) and never appear in a
log line, an exception message or a repr.
"""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from http.client import HTTPException
from typing import Any
from urllib.parse import quote, urlencode

from shared.domain import GatewayRejected, GatewayRetryable
from shared.ports import GatewayOrder, GatewayPayment, GatewayRefund, RefundState

Credentials = Callable[[], tuple[str, str]]

_RAZORPAY_STATUS = {
    "created": "created",
    "authorized": "authorized",
    "captured": "captured",
    "refunded": "refunded",
    "failed": "failed",
}


# Cashfree PG payment (attempt) statuses in our terms; VOID and CANCELLED attempts took no money.
_CASHFREE_STATUS = {
    "SUCCESS": "captured",
    "PENDING": "pending",
    "NOT_ATTEMPTED": "created",
    "FAILED": "failed",
    "USER_DROPPED": "failed",
    "VOID": "failed",
    "CANCELLED": "failed",
}
# Refund statuses: Razorpay pending/processed/failed (refunds entity); Cashfree PENDING, ONHOLD (not
# final), SUCCESS, CANCELLED (RefundEntity.refund_status), FAILED listed in the docs too.
_REFUND_STATE = {
    "pending": RefundState.PENDING,
    "processed": RefundState.SUCCEEDED,
    "failed": RefundState.FAILED,
    "PENDING": RefundState.PENDING,
    "ONHOLD": RefundState.PENDING,
    "SUCCESS": RefundState.SUCCEEDED,
    "CANCELLED": RefundState.FAILED,
    "FAILED": RefundState.FAILED,
}


def _seconds(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if "," in value else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


def _retry_after(headers: Any) -> float | None:
    """The longer of Retry-After (seconds or an HTTP date) and Cashfree's x-ratelimit-retry (seconds
    until the next call is allowed, payments/online/resources/rate-limits); None when neither is sent.
    A 429 whose x-ratelimit-remaining is 0 and that names no wait gets a minute: Cashfree's windows
    are per minute."""
    if headers is None:
        return None
    waits = [
        w
        for name in ("Retry-After", "x-ratelimit-retry")
        if (v := headers.get(name)) and (w := _seconds(v)) is not None
    ]
    if waits and max(waits) > 0:
        return max(waits)
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-limit"):
        return 60.0
    return max(waits) if waits else None


def _error_code(body: Any) -> str:
    """Razorpay: {"error": {"code", "description"}}; Cashfree: {"code", "message", "type"}."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("code") or "")
        return str(body.get("code") or body.get("type") or "")
    return ""


class _Http:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ValueError("gateway base URL must be http(s)")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, headers: dict[str, str], body: dict[str, Any] | None = None) -> Any:
        """The decoded JSON answer of a 2xx; raises GatewayRetryable or GatewayRejected otherwise."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)  # noqa: S310 (checked)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in headers.items():
            request.add_header(name, value)
        # A write whose answer is lost may have happened: the caller settles it by fetching.
        lost = "unknown_outcome" if method != "GET" else "unavailable"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = None
            if err.code == 429:
                raise GatewayRetryable("throttled", f"HTTP 429 on {method}", _retry_after(err.headers)) from None
            if err.code >= 500:
                raise GatewayRetryable(lost, f"HTTP {err.code} on {method}", _retry_after(err.headers)) from None
            raise GatewayRejected(err.code, _error_code(payload)) from None
        except TimeoutError as err:
            raise GatewayRetryable(lost, f"timeout on {method}: {type(err).__name__}") from None
        except (urllib.error.URLError, HTTPException, OSError) as err:
            raise GatewayRetryable(lost, f"connection failed on {method}: {type(err).__name__}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise GatewayRetryable(lost, f"unreadable answer to {method}") from None


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


def _refund_of(body: dict[str, Any], currency: str, *, amount_paise: int, merchant_ref: str | None) -> GatewayRefund:
    status = str(body.get("status") or body.get("refund_status") or "")
    return GatewayRefund(
        str(body.get("id") or body.get("cf_refund_id") or body.get("refund_id")),
        amount_paise,
        str(body.get("currency") or body.get("refund_currency") or currency),
        _REFUND_STATE.get(status, RefundState.PENDING),
        status or None,
        merchant_ref,
    )


def _q(value: str) -> str:
    return quote(value, safe="")


class RazorpayGateway:
    """Razorpay API v1: Orders, payments (fetch, capture with amount + currency), refunds; basic auth."""

    name = "razorpay"

    def __init__(self, base_url: str, credentials: Credentials, timeout_s: float) -> None:
        self._http = _Http(base_url, timeout_s)
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
            status=_RAZORPAY_STATUS.get(str(body.get("status")), "failed"),
            amount_paise=int(body["amount"]),
            currency=str(body["currency"]),
            order_id=str(body["order_id"]) if body.get("order_id") else None,
            amount_refunded_paise=int(body.get("amount_refunded") or 0),
            gateway_status=str(body.get("status")),
            captured=body.get("captured") is True,
        )

    @staticmethod
    def _order(body: dict[str, Any]) -> GatewayOrder:
        notes = body.get("notes")  # Razorpay answers [] when there are none
        return GatewayOrder(
            gateway="razorpay",
            order_id=str(body["id"]),
            status=str(body["status"]),
            amount_paise=int(body["amount"]),
            currency=str(body["currency"]),
            receipt=str(body["receipt"]) if body.get("receipt") is not None else None,
            notes={str(k): str(v) for k, v in notes.items()} if isinstance(notes, dict) else {},
            attempts=int(body.get("attempts") or 0),
        )

    def create_order(self, amount_paise: int, currency: str, receipt: str, notes: dict[str, str]) -> GatewayOrder:
        if len(receipt) > 40:  # Orders API: "maximum length of 40 characters"
            raise ValueError("a Razorpay receipt has at most 40 characters")
        body = {"amount": amount_paise, "currency": currency, "receipt": receipt, "notes": notes}
        return self._order(self._http.request("POST", "/v1/orders", self._headers(), body))

    def fetch_order(self, order_id: str) -> GatewayOrder:
        return self._order(self._http.request("GET", f"/v1/orders/{_q(order_id)}", self._headers()))

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
        body = self._http.request("GET", f"/v1/orders/{_q(order_id)}/payments", self._headers())
        return [self._payment(p) for p in body.get("items", [])]

    def fetch_payment(self, payment_id: str) -> GatewayPayment:
        return self._payment(self._http.request("GET", f"/v1/payments/{_q(payment_id)}", self._headers()))

    def fetch(self, ref: str) -> GatewayPayment:
        """The old flow's name for fetch_payment."""
        return self.fetch_payment(ref)

    def capture(self, ref: str, amount_paise: int, currency: str) -> GatewayPayment:
        try:
            body = self._http.request(
                "POST",
                f"/v1/payments/{_q(ref)}/capture",
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
                f"/v1/payments/{_q(ref)}/refund",
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
        return _refund_of(body, currency, amount_paise=int(body["amount"]), merchant_ref=body.get("receipt"))

    def fetch_refund(self, payment_id: str, refund_id: str) -> GatewayRefund:
        body = self._http.request("GET", f"/v1/payments/{_q(payment_id)}/refunds/{_q(refund_id)}", self._headers())
        return _refund_of(body, "INR", amount_paise=int(body["amount"]), merchant_ref=body.get("receipt"))

    def refunds(self, ref: str) -> list[GatewayRefund]:
        """Every refund of the payment, ours (receipt = our reference) and the dashboard's (count: the list is
        paginated, 10 by default, at most 100 a page: api/refunds/fetch-multiple-refund-payment)."""
        body = self._http.request("GET", f"/v1/payments/{_q(ref)}/refunds?count=100", self._headers())
        return [
            _refund_of(i, "INR", amount_paise=int(i["amount"]), merchant_ref=i.get("receipt") or None)
            for i in body.get("items", [])
        ]

    def find_refund(self, ref: str, refund_ref: str) -> GatewayRefund | None:
        return next((r for r in self.refunds(ref) if r.merchant_ref == refund_ref), None)


class CashfreeGateway:
    """Cashfree PG: orders we name, their attempts (SUCCESS means captured), order refunds."""

    name = "cashfree"

    def __init__(self, base_url: str, credentials: Credentials, api_version: str, timeout_s: float) -> None:
        self._http = _Http(base_url, timeout_s)
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
        tags = body.get("order_tags")
        customer = body.get("customer_details") or {}
        return GatewayOrder(
            gateway="cashfree",
            order_id=str(body["order_id"]),
            status=str(body["order_status"]),
            amount_paise=_to_paise(body["order_amount"]),
            currency=str(body["order_currency"]),
            notes={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {},
            payment_session_id=body.get("payment_session_id"),
            customer_id=customer.get("customer_id"),
        )

    @staticmethod
    def _attempt(body: dict[str, Any]) -> GatewayPayment:
        status = str(body.get("payment_status"))
        return GatewayPayment(
            ref=str(body["cf_payment_id"]),  # a string since API version 2023-08-01
            status=_CASHFREE_STATUS.get(status, "failed"),
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
        return self._order(self._http.request("GET", f"/orders/{_q(order_id)}", self._headers()))

    def order_payments(self, order_id: str) -> list[GatewayPayment]:
        payments = self._http.request("GET", f"/orders/{_q(order_id)}/payments", self._headers())
        if not isinstance(payments, list):
            raise GatewayRetryable("unavailable", "unexpected answer to Get Payments")
        return [self._attempt(p) for p in payments]

    def fetch(self, ref: str) -> GatewayPayment:
        """The old flow: the order's money in one payment (SUCCESS first, then PENDING, else failed)."""
        attempts = self.order_payments(ref)
        for cashfree_status in ("SUCCESS", "PENDING"):
            for p in attempts:
                if p.gateway_status == cashfree_status:
                    return GatewayPayment(ref, p.status, p.amount_paise, p.currency, ref, 0, cashfree_status)
        return GatewayPayment(ref, "failed", 0, "INR")

    def capture(self, ref: str, amount_paise: int, currency: str) -> GatewayPayment:
        raise NotImplementedError("Cashfree PG captures at checkout; a fetched SUCCESS payment is captured")

    def refund(self, ref: str, amount_paise: int, currency: str, refund_ref: str) -> GatewayRefund:
        try:
            body = self._http.request(
                "POST",
                f"/orders/{_q(ref)}/refunds",
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
        body = self._http.request("GET", f"/orders/{_q(order_id)}/refunds/{_q(refund_id)}", self._headers())
        return self._refund(body, "INR")

    def refunds(self, ref: str) -> list[GatewayRefund]:
        """Every refund of the order (Get All Refunds for an Order), ours and the dashboard's."""
        body = self._http.request("GET", f"/orders/{_q(ref)}/refunds", self._headers())
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
        return _refund_of(
            body, currency, amount_paise=_to_paise(body["refund_amount"]), merchant_ref=body.get("refund_id")
        )

"""Razorpay and Cashfree PG adapters: thin HTTP clients over the standard library.

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
from decimal import Decimal
from http.client import HTTPException
from typing import Any
from urllib.parse import quote

from shared.domain import GatewayRejected, GatewayRetryable
from shared.ports import GatewayPayment, GatewayRefund

Credentials = Callable[[], tuple[str, str]]

_RAZORPAY_STATUS = {
    "created": "created",
    "authorized": "authorized",
    "captured": "captured",
    "refunded": "refunded",
    "failed": "failed",
}


def _retry_after(headers: Any) -> float | None:
    """Retry-After (seconds or an HTTP date) or Cashfree's x-ratelimit-retry (seconds)."""
    for name in ("Retry-After", "x-ratelimit-retry"):
        value = headers.get(name) if headers is not None else None
        if not value:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if "," in value else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    return None


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


def _to_rupees(paise: int) -> float:
    return float(Decimal(paise) / 100)


class RazorpayGateway:
    """Razorpay Payments API v1: fetch, capture (amount + currency), refund; basic auth key_id:key_secret."""

    name = "razorpay"

    def __init__(self, base_url: str, credentials: Credentials, timeout_s: float) -> None:
        self._http = _Http(base_url, timeout_s)
        self._credentials = credentials

    def __repr__(self) -> str:
        return f"RazorpayGateway({self._http.base_url!r})"

    def _headers(self) -> dict[str, str]:
        key_id, key_secret = self._credentials()
        return {"Authorization": "Basic " + b64encode(f"{key_id}:{key_secret}".encode()).decode()}

    @staticmethod
    def _payment(body: dict[str, Any]) -> GatewayPayment:
        return GatewayPayment(
            ref=str(body["id"]),
            status=_RAZORPAY_STATUS.get(str(body.get("status")), "failed"),
            amount_paise=int(body["amount"]),
            currency=str(body["currency"]),
        )

    def fetch(self, ref: str) -> GatewayPayment:
        return self._payment(self._http.request("GET", f"/v1/payments/{quote(ref, safe='')}", self._headers()))

    def capture(self, ref: str, amount_paise: int, currency: str) -> GatewayPayment:
        try:
            body = self._http.request(
                "POST",
                f"/v1/payments/{quote(ref, safe='')}/capture",
                self._headers(),
                {"amount": amount_paise, "currency": currency},
            )
        except GatewayRejected as exc:
            # "already captured" or a state that changed since the fetch: settle it by fetching.
            raise GatewayRetryable("unknown_outcome", f"capture refused: {exc.code}", 0) from None
        return self._payment(body)

    def refund(self, ref: str, amount_paise: int, currency: str, refund_ref: str) -> GatewayRefund:
        body = self._http.request(
            "POST",
            f"/v1/payments/{quote(ref, safe='')}/refund",
            self._headers(),
            {"amount": amount_paise, "speed": "normal", "receipt": refund_ref, "notes": {"pq_refund_ref": refund_ref}},
        )
        return GatewayRefund(str(body["id"]), int(body["amount"]), str(body.get("currency", currency)))

    def find_refund(self, ref: str, refund_ref: str) -> GatewayRefund | None:
        body = self._http.request("GET", f"/v1/payments/{quote(ref, safe='')}/refunds", self._headers())
        for item in body.get("items", []):
            if item.get("receipt") == refund_ref:
                return GatewayRefund(str(item["id"]), int(item["amount"]), str(item.get("currency", "INR")))
        return None


class CashfreeGateway:
    """Cashfree PG: the order's payments (auto-captured: SUCCESS means captured) and order refunds."""

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

    def fetch(self, ref: str) -> GatewayPayment:
        payments = self._http.request("GET", f"/orders/{quote(ref, safe='')}/payments", self._headers())
        if not isinstance(payments, list):
            raise GatewayRetryable("unavailable", "unexpected answer to Get Payments")
        by_status: dict[str, dict[str, Any]] = {}
        for p in payments:
            by_status.setdefault(str(p.get("payment_status")), p)
        for cashfree_status, ours in (("SUCCESS", "captured"), ("PENDING", "pending")):
            if cashfree_status in by_status:
                p = by_status[cashfree_status]
                return GatewayPayment(ref, ours, _to_paise(p["payment_amount"]), str(p["payment_currency"]))
        return GatewayPayment(ref, "failed", 0, "INR")

    def capture(self, ref: str, amount_paise: int, currency: str) -> GatewayPayment:
        raise NotImplementedError("Cashfree PG captures at checkout; a fetched SUCCESS payment is captured")

    def refund(self, ref: str, amount_paise: int, currency: str, refund_ref: str) -> GatewayRefund:
        try:
            body = self._http.request(
                "POST",
                f"/orders/{quote(ref, safe='')}/refunds",
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

    def find_refund(self, ref: str, refund_ref: str) -> GatewayRefund | None:
        try:
            body = self._http.request(
                "GET", f"/orders/{quote(ref, safe='')}/refunds/{quote(refund_ref, safe='')}", self._headers()
            )
        except GatewayRejected as exc:
            if exc.status == 404:
                return None
            raise
        return self._refund(body, "INR")

    @staticmethod
    def _refund(body: dict[str, Any], currency: str) -> GatewayRefund:
        return GatewayRefund(
            str(body.get("cf_refund_id") or body["refund_id"]),
            _to_paise(body["refund_amount"]),
            str(body.get("refund_currency") or currency),
        )

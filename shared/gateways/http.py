"""What the gateway packages' HTTP clients share: requests over the standard library, the gateways' errors
as GatewayRetryable / GatewayRejected, their waits, and a refund entity in our terms.

Credentials come from a callable (settings locally, Secrets Manager in AWS: shared/gateways/secrets.py)
and never appear in a log line, an exception message or a repr.
"""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from http.client import HTTPException
from typing import Any
from urllib.parse import quote

from shared.domain import GatewayRejected, GatewayRetryable
from shared.ports import GatewayRefund, RefundState

Credentials = Callable[[], tuple[str, str]]


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


class Http:
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


def refund_of(
    body: dict[str, Any],
    currency: str,
    states: Mapping[str, RefundState],
    *,
    amount_paise: int,
    merchant_ref: str | None,
) -> GatewayRefund:
    """A refund entity in our terms; states: the gateway's refund statuses (not listed: pending)."""
    status = str(body.get("status") or body.get("refund_status") or "")
    return GatewayRefund(
        str(body.get("id") or body.get("cf_refund_id") or body.get("refund_id")),
        amount_paise,
        str(body.get("currency") or body.get("refund_currency") or currency),
        states.get(status, RefundState.PENDING),
        status or None,
        merchant_ref,
    )


def string_map(value: Any) -> dict[str, str]:
    """An object of string values (Razorpay notes, Cashfree order_tags) as such; anything else (Razorpay answers
    [] when there are none) as empty."""
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def q(value: str) -> str:
    """A path segment: every reserved character escaped."""
    return quote(value, safe="")

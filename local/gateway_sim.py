"""A Razorpay + Cashfree PG simulator on loopback, for the local runtime, the tests and the benchmark.

It answers the endpoints the project calls, with the real paths, auth, JSON shapes, refusals and
rate-limit headers (the official SDKs are driven against it in tests/contract):

    Razorpay  (basic auth key_id:key_secret; local/gateway_sim_razorpay.py)
      POST /v1/orders   GET /v1/orders?receipt=   GET /v1/orders/{id}   GET /v1/orders/{id}/payments
      GET  /v1/payments/{id}   POST /v1/payments/{id}/capture   POST /v1/payments/{id}/refund
      GET  /v1/payments/{id}/refunds[/{refund_id}]   GET /v1/refunds/{id}
    Cashfree PG  (x-client-id, x-client-secret, x-api-version; local/gateway_sim_cashfree.py)
      POST /pg/orders   GET /pg/orders/{order_id}   GET /pg/orders/{order_id}/payments
      POST /pg/orders/{order_id}/refunds   GET /pg/orders/{order_id}/refunds[/{refund_id}]

What the shopper does at the gateway, and what only time or the bank does, is played through /_sim:

    POST /_sim/razorpay/checkout {"order_id", "outcome": "success"|"failed"}
         -> {"razorpay_payment_id", "razorpay_order_id", "razorpay_signature"} (+ payment.* webhooks)
    POST /_sim/cashfree/checkout {"order_id", "outcome": "success"|"failed"|"user_dropped"|"pending"|
         "not_attempted"} -> {"order_id", "cf_payment_id", "payment_status"} (+ PAYMENT_*_WEBHOOK)
    POST /_sim/razorpay/late_authorize {"payment_id"}   a failed payment authorised late
    POST /_sim/cashfree/late_success {"order_id"}       an EXPIRED / TERMINATION_REQUESTED order turns PAID
    POST /_sim/cashfree/order_status {"order_id", "order_status": "EXPIRED"|"TERMINATED"|...}
    POST /_sim/refund_status {"gateway", "refund_id", "order_id"?, "status"}   settle a refund by hand
    POST /_sim/razorpay/merchant_refund {"payment_id", "amount": paise}   a refund made on the Dashboard
    POST /_sim/cashfree/merchant_refund {"order_id", "amount": paise}     (refund_id "dashboard_<hex>")
         -> the gateway's refund entity; it settles and sends webhooks like any refund
    POST /_sim/razorpay/payments {"amount"}   an order-less payment (exists at Razorpay; cannot be captured)
    POST /_sim/cashfree/orders {"order_amount", "payment_status"?}   an order created and attempted once
    GET  /_sim/ledger     the gateways' own record, in integer paise: {"payments": [{"gateway",
         "payment_ref" (Razorpay pay_ id | Cashfree order_id), "gateway_order_id", "currency",
         "authorized_paise", "captured_paise", "refunded_paise" (processed | SUCCESS), "refunding_paise"
         (pending | PENDING, ONHOLD), "released" (an authorisation Razorpay refunded uncaptured)}]}, one
         row per payment ever authorised (Cashfree: per order with a SUCCESS payment)
    GET  /_sim/webhooks   POST /_sim/webhooks/replay {"event_id"}   the deliveries; send one again
    GET  /_sim/stats      calls, peak_rps, captures, double_captures, refunds, ... (per gateway too)
    GET  /_sim/js/razorpay-checkout.js, /_sim/js/cashfree.js   stand-ins for Razorpay's checkout.js and
         Cashfree's JS SDK, with their calling shapes: they open /_sim/checkout.html (the gateway's own
         checkout page) in a frame, where the person running the demo chooses success or failure
    GET  /_sim/checkout-summary?gateway=razorpay&order_id=&key= | gateway=cashfree&payment_session_id=
         what that page shows: {"order_id", "amount_paise", "currency"} (400/404 as the gateway refuses)
    GET  /_sim/calls      POST /_sim/reset      POST /_sim/config {knob: value} (400, nothing set, on a bad one)

Knobs (SimConfig; PQ_SIM_<KNOB> at start, POST /_sim/config at run time): latency, a 429 rate with
Retry-After / x-ratelimit-retry, a 5xx rate, a gateway's outage (503 to everything), a hard limit in requests
per second, a 429 storm, writes
applied but answered 502 or only after the client gave up, Cashfree's published per-minute limits
(production | sandbox | off), auto-capture, Razorpay's capture timeout (razorpay_auth_release_s), refund
outcomes (standing, and scripted lists consumed one per refund we request: razorpay_refund_outcomes,
cashfree_refund_outcomes; PQ_SIM_ takes them comma-separated) and delay, webhook URLs, retries and copies.

With PQ_GATEWAY_SIM_STATE naming a file (`make run`: .data/gateway-sim.json), the gateways' orders,
payments and refunds are written there (within a second of a change, and when stopped) and read back
at start: a checkout opened before a restart is still payable after it.

Run alone: python -m local.gateway_sim (port PQ_GATEWAY_SIM_PORT, 8100 by default; credentials from
PQ_RAZORPAY_KEY_ID, PQ_RAZORPAY_KEY_SECRET, PQ_RAZORPAY_WEBHOOK_SECRET, PQ_CASHFREE_CLIENT_ID, ...).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from local.gateway_sim_browser import asset, asset_headers, checkout_summary
from local.gateway_sim_cashfree import LIMITS, CashfreeSim, cf_error
from local.gateway_sim_cashfree import REFUND_OUTCOMES as CASHFREE_REFUND_OUTCOMES
from local.gateway_sim_razorpay import ACCOUNT_ID, RazorpaySim, rzp_error
from local.gateway_sim_razorpay import REFUND_OUTCOMES as RAZORPAY_REFUND_OUTCOMES
from local.gateway_sim_state import StateFile, restore, snapshot
from local.gateway_sim_webhooks import WebhookSender

_rng = random.Random()  # noqa: S311 (fault injection, not security)

Answer = tuple[int, Any, dict[str, str]]


@dataclass
class SimConfig:
    latency_ms: float = 0.0  # added to every gateway request
    latency_jitter_ms: float = 0.0  # uniform extra on top
    rate_429: float = 0.0  # share of requests answered 429 before doing anything
    retry_after_s: float = 1.0  # sent with every 429 (Retry-After, x-ratelimit-retry)
    rate_5xx: float = 0.0  # share of requests answered 503 before doing anything
    hard_limit_rps: float = 0.0  # server-side limit over any 1 s window (0: none); beyond it, 429
    storm_until: float = 0.0  # unix time until which every request is answered 429
    # An outage: until outage_until (unix time), every request to a gateway named in outage_gateways is
    # answered 503 in that gateway's error shape before anything is done, credentials unread (its front door
    # is down). The shopper's side (/_sim) stays up: a checkout paid before it settles once it is over.
    outage_until: float = 0.0
    outage_gateways: list[str] = field(default_factory=list)
    fail_after_send: int = 0  # the next N writes are applied, then answered 502
    timeout_after_send: int = 0  # the next N writes are applied, then answered only after hang_s
    hang_s: float = 3.0
    # Cashfree's published per-endpoint limits per minute: production | sandbox | off.
    cashfree_limits: str = "production"
    # Razorpay's account capture setting: payments captured automatically when authorised.
    razorpay_auto_capture: bool = False
    refund_settle_s: float = 0.2  # a refund stays pending this long
    # How refunds we request end: the next value of the list (consumed, one per new refund), else the
    # standing outcome. Dashboard refunds take the standing outcome; gateway auto-refunds are processed.
    razorpay_refund_outcome: str = "processed"  # processed | failed
    razorpay_refund_outcomes: list[str] = field(default_factory=list)
    # ONHOLD: listed, the refund is held for refund_settle_s, then SUCCESS; standing, it stays held until
    # POST /_sim/refund_status settles it.
    cashfree_refund_outcome: str = "SUCCESS"  # SUCCESS | CANCELLED | ONHOLD
    cashfree_refund_outcomes: list[str] = field(default_factory=list)
    # Razorpay refunds an authorised payment not captured within the capture timeout, 3 days by default
    # (payments/refunds/auto-refunds). 0 here: never. No local run lasts 3 days, and each authorised
    # payment would hold a sleeping timer thread that long; a scenario sets a few seconds instead.
    razorpay_auth_release_s: float = 0.0
    # Webhook URLs as configured in each gateway's dashboard (Cashfree: order_meta.notify_url wins).
    razorpay_webhook_url: str = ""
    cashfree_webhook_url: str = ""
    webhook_retries: int = 2  # a non-2xx delivery is tried again this many times, backing off
    webhook_retry_s: float = 0.2
    webhook_delay_s: float = 0.0  # before each delivery
    webhook_copies: int = 1  # deliveries per event (gateways deliver at least once)


@dataclass(frozen=True)
class Call:
    t: float
    gateway: str
    method: str
    path: str
    status: int


@dataclass
class _Counters:
    responses_429: int = 0
    responses_5xx: int = 0
    hard_limited: int = 0
    applied_then_failed: int = 0
    webhooks_sent: int = 0
    webhooks_failed: int = 0


def peak_rps(times: list[float], window_s: float = 1.0) -> float:
    """Most requests inside any window_s-long interval, per second."""
    best, start = 0, 0
    ordered = sorted(times)
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best / window_s


def _paise(rupees: Any) -> int:
    return int(Decimal(str(rupees)) * 100)


def _rupees(paise: int) -> float:
    return float(Decimal(paise) / 100)


def _unavailable(gateway: str) -> Answer:
    """503 as each gateway answers a server-side failure: Razorpay's error object with code SERVER_ERROR (the
    official client raises ServerError for it: razorpay/constants/error_code.py), Cashfree's api_error."""
    if gateway == "razorpay":
        return 503, rzp_error("Service temporarily unavailable", code="SERVER_ERROR"), {}
    return 503, cf_error("Service temporarily unavailable", "internal_error", "api_error"), {}


def _endpoint_key(method: str, path: str) -> str:
    """ "GET /v1/payments/{id}/refunds" for "GET /v1/payments/pay_X/refunds": ids folded for the stats."""
    parts = path.split("/")
    out = [
        "{id}"
        if i and parts[i - 1] in ("orders", "payments", "refunds") and p and p not in ("payments", "refunds")
        else p
        for i, p in enumerate(parts)
    ]
    return f"{method} {'/'.join(out)}"


# Knobs that take one of a few values (each value of a list knob too).
_CHOICES: dict[str, tuple[str, ...]] = {
    "cashfree_limits": (*LIMITS, "off"),
    "razorpay_refund_outcome": RAZORPAY_REFUND_OUTCOMES,
    "razorpay_refund_outcomes": RAZORPAY_REFUND_OUTCOMES,
    "cashfree_refund_outcome": CASHFREE_REFUND_OUTCOMES,
    "cashfree_refund_outcomes": CASHFREE_REFUND_OUTCOMES,
    "outage_gateways": ("razorpay", "cashfree"),
}


def _knob(current: Any, value: Any) -> Any:
    """A knob's new value in the knob's own type ("false" is False, not a true non-empty string; a list
    from JSON, or from the environment as a JSON array or comma-separated: "failed,processed")."""
    if isinstance(current, bool):
        return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
    if isinstance(current, list):
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ValueError("expected a list")
        return [str(v).strip() for v in value]
    return type(current)(value)


def apply_knobs(config: SimConfig, values: dict[str, Any]) -> str | None:
    """Set knobs from names and raw values; on any bad one, set none and say which."""
    current = asdict(config)
    parsed: dict[str, Any] = {}
    for name, value in values.items():
        if name not in current:
            return f"unknown knob {name}"
        try:
            parsed[name] = _knob(current[name], value)
        except (TypeError, ValueError) as err:
            return f"{name}: {err}"
        allowed = _CHOICES.get(name)
        chosen = parsed[name] if isinstance(parsed[name], list) else [parsed[name]]
        if allowed is not None and any(v not in allowed for v in chosen):
            return f"{name}: each value one of {', '.join(allowed)}"
    for name, value in parsed.items():
        setattr(config, name, value)
    return None


class Simulator:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        razorpay: tuple[str, str] = ("rzp_test_local", "local_razorpay_secret"),
        cashfree: tuple[str, str] = ("cf_test_local", "local_cashfree_secret"),
        razorpay_webhook_secret: str = "local_razorpay_webhook_secret",  # noqa: S107 (loopback only)
        config: SimConfig | None = None,
        state_path: Path | None = None,
    ) -> None:
        self.config = config or SimConfig()
        self.razorpay_credentials = razorpay
        self.cashfree_credentials = cashfree
        self.razorpay_webhook_secret = razorpay_webhook_secret
        self.cashfree_api_version = "2025-01-01"  # the last x-api-version seen; sent as x-webhook-version
        self.calls: list[Call] = []
        self.counters = _Counters()
        self._admitted: dict[str, deque[float]] = {"razorpay": deque(), "cashfree": deque()}
        self._lock = threading.RLock()
        self._timers: set[threading.Timer] = set()
        self._stopping = threading.Lock()
        self._stopped = False
        cfg = self.config
        self.webhooks = WebhookSender(
            razorpay_secret=razorpay_webhook_secret,
            cashfree_secret=cashfree[1],
            cashfree_version=lambda: self.cashfree_api_version,
            knobs=lambda: (cfg.webhook_retries, cfg.webhook_retry_s, cfg.webhook_delay_s),
            on_result=self._webhook_result,
        )
        self.razorpay = RazorpaySim(razorpay[1], self._emit_razorpay, self._schedule)
        self.cashfree = CashfreeSim(self._emit_cashfree, self._schedule)
        # Kept across restarts when a file is named (make run): see local/gateway_sim_state.py.
        self._state: StateFile | None = None
        if state_path is not None:
            self._state = StateFile(state_path, lambda: snapshot(self.razorpay, self.cashfree), self._lock)
            saved = self._state.load()
            if saved is not None:
                with self._lock:
                    self._sync_knobs()
                    restore(self.razorpay, self.cashfree, saved)
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Simulator:
        if self._state is not None:
            self._state.start()
        self._thread = threading.Thread(target=self._server.serve_forever, name="gateway-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and save the state; a second call returns once the first one has finished."""
        with self._stopping:
            if self._stopped:
                return
            with self._lock:
                for timer in self._timers:
                    timer.cancel()
                self._timers.clear()
            self.webhooks.stop()
            self._server.shutdown()
            self._server.server_close()
            if self._state is not None:
                self._state.stop()
            self._stopped = True

    def serve_forever(self) -> None:
        if self._state is not None:
            self._state.start()
        self._server.serve_forever()

    # --- time and webhooks ------------------------------------------------------------------

    def _schedule(self, delay_s: float, action: Callable[[], object]) -> None:
        """Run action later with the lock held (a refund settling); never inside the request."""

        def run() -> None:
            with self._lock:
                self._timers.discard(timer)
                action()

        timer = threading.Timer(max(0.0, delay_s), run)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    def _webhook_result(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self.counters.webhooks_sent += 1
            else:
                self.counters.webhooks_failed += 1

    def _emit_razorpay(self, event: str, entities: dict[str, Any]) -> None:
        # The event envelope of razorpay.com/docs/webhooks/payments (sample payloads).
        body = {
            "entity": "event",
            "account_id": ACCOUNT_ID,
            "event": event,
            "contains": list(entities),
            "payload": {name: {"entity": entity} for name, entity in entities.items()},
            "created_at": int(time.time()),
        }
        self.webhooks.send("razorpay", event, self.config.razorpay_webhook_url, body, self.config.webhook_copies)

    def _emit_cashfree(self, kind: str, data: dict[str, Any], notify_url: str | None) -> None:
        # {"data", "event_time", "type"}: PaymentWebhook / RefundWebhook in cashfree-pg's models.
        body = {
            "data": data,
            "event_time": time.strftime("%Y-%m-%dT%H:%M:%S+05:30", time.gmtime(time.time() + 19800)),
            "type": kind,
        }
        url = notify_url or self.config.cashfree_webhook_url
        self.webhooks.send("cashfree", kind, url, body, self.config.webhook_copies)

    def wait_webhooks(self, timeout_s: float = 10.0) -> bool:
        """True once every webhook sent so far has been tried."""
        return self.webhooks.wait_idle(timeout_s)

    # --- fixtures: what shoppers do at the gateways' checkouts ------------------------------

    def create_razorpay_payment(self, amount_paise: int, currency: str = "INR", status: str = "authorized") -> str:
        """A payment made without an order (Razorpay has them; they cannot be captured)."""
        with self._lock:
            self._sync_knobs()
            return str(self.razorpay.new_payment(amount_paise, currency, None, status)["id"])

    def create_razorpay_order(self, amount_paise: int, currency: str = "INR", receipt: str | None = None) -> str:
        with self._lock:
            self._sync_knobs()
            status, body, _ = self.razorpay.create_order(
                {"amount": amount_paise, "currency": currency, "receipt": receipt}
            )
        if status != 200:
            raise ValueError(body)
        return str(body["id"])

    def razorpay_checkout(self, order_id: str, outcome: str = "success") -> dict[str, Any]:
        with self._lock:
            self._sync_knobs()
            status, body, _ = self.razorpay.checkout(order_id, outcome)
        if status != 200:
            raise ValueError(body)
        return dict(body)

    def create_cashfree_order(
        self, amount_paise: int, currency: str = "INR", payment_status: str = "SUCCESS", order_id: str | None = None
    ) -> str:
        """A Cashfree order created as POST /pg/orders does, then attempted once with payment_status."""
        body: dict[str, Any] = {
            "order_amount": _rupees(amount_paise),
            "order_currency": currency,
            "customer_details": {"customer_id": "simshopper01", "customer_phone": "9999999999"},
        }
        if order_id:
            body["order_id"] = order_id
        with self._lock:
            self._sync_knobs()
            status, order, _ = self.cashfree.create_order(body)
            if status != 200:
                raise ValueError(order)
            self.cashfree_checkout(order["order_id"], payment_status.lower())
        return str(order["order_id"])

    def cashfree_checkout(self, order_id: str, outcome: str = "success") -> dict[str, Any]:
        with self._lock:
            self._sync_knobs()
            status, body, _ = self.cashfree.checkout(order_id, outcome)
        if status != 200:
            raise ValueError(body)
        return dict(body)

    def merchant_refund(self, gateway: str, ref: str, amount_paise: int) -> dict[str, Any]:
        """A partial (or full) refund the merchant makes on the gateway's dashboard, not through our API:
        ref is the Razorpay payment id or the Cashfree order id. Returns the gateway's refund entity."""
        with self._lock:
            status, body, _ = self._merchant_refund(gateway, ref, amount_paise)
        if status != 200:
            raise ValueError(body)
        return dict(body)

    def _merchant_refund(self, gateway: str, ref: str, amount_paise: Any) -> Answer:
        self._sync_knobs()
        if gateway == "razorpay":
            return self.razorpay.merchant_refund(ref, amount_paise)
        if gateway == "cashfree":
            return self.cashfree.merchant_refund(ref, amount_paise)
        return 400, {"error": "gateway must be razorpay or cashfree"}, {}

    def ledger(self) -> dict[str, Any]:
        """The gateways' own record of the money, in integer paise: one row per payment ever authorised
        (Razorpay: per pay_ id; Cashfree: per order with a SUCCESS payment, payment_ref the order id)."""
        with self._lock:
            return {"payments": self.razorpay.ledger() + self.cashfree.ledger()}

    # --- measurements -----------------------------------------------------------------------

    def stats(self, gateway: str | None = None) -> dict[str, Any]:
        with self._lock:
            calls = [c for c in self.calls if gateway is None or c.gateway == gateway]
            rzp, cf = asdict(self.razorpay.counters), asdict(self.cashfree.counters)
            result: dict[str, Any] = {
                "calls": len(calls),
                "peak_rps": peak_rps([c.t for c in calls]),
                "by_endpoint": {},
                **asdict(self.counters),
                "captures": rzp["captures"],
                "double_captures": rzp["double_captures"],
                "refunds": rzp["refunds"] + cf["refunds"],
                "razorpay": rzp,
                "cashfree": cf,
            }
        for c in calls:
            key = _endpoint_key(c.method, c.path)
            result["by_endpoint"][key] = result["by_endpoint"].get(key, 0) + 1
        if calls:
            span = calls[-1].t - calls[0].t
            result["mean_rps"] = round(len(calls) / span, 2) if span > 0 else float(len(calls))
        if gateway is None:
            result["gateways"] = {g: sum(1 for c in calls if c.gateway == g) for g in ("razorpay", "cashfree")}
        return result

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.counters = _Counters()
            for admitted in self._admitted.values():
                admitted.clear()
            self.cashfree.reset_limits()
            self.razorpay.counters = type(self.razorpay.counters)()
            self.cashfree.counters = type(self.cashfree.counters)()
        self.webhooks.clear()

    # --- the HTTP side ----------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:  # noqa: C901 (one small method per verb)
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    return json.loads(raw) if raw else {}
                except ValueError:
                    return None

            def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout-after-send scenario)

            def _send_asset(self, route: str) -> bool:
                found = asset(route)
                if found is None:
                    return False
                data, content_type = found
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in asset_headers(route).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                return True

            def _dispatch(self, method: str) -> None:
                if method == "GET" and self._send_asset(urlsplit(self.path).path):
                    return
                body = self._body() if method in ("POST", "PATCH") else {}
                if self.path.startswith("/_sim/"):
                    self._send(*sim._admin(method, self.path, body))
                    return
                status, payload, headers, hang = sim._gateway(method, self.path, dict(self.headers), body)
                if hang:
                    time.sleep(hang)
                self._send(status, payload, headers)

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_PATCH(self) -> None:
                self._dispatch("PATCH")

        return Handler

    def _admin(self, method: str, path: str, body: Any) -> Answer:  # noqa: C901, PLR0912 (one route each)
        body = body if isinstance(body, dict) else {}
        route = urlsplit(path).path
        if method == "GET":
            if route == "/_sim/stats":
                gateway = urlsplit(path).query.partition("gateway=")[2] or None
                return 200, self.stats(gateway), {}
            if route == "/_sim/calls":
                with self._lock:
                    return 200, [asdict(c) for c in self.calls], {}
            if route == "/_sim/webhooks":
                return 200, self.webhooks.log(), {}
            if route == "/_sim/ledger":
                return 200, self.ledger(), {}
            if route == "/_sim/checkout-summary":
                query = dict(parse_qsl(urlsplit(path).query))
                with self._lock:
                    return *checkout_summary(self.razorpay, self.cashfree, self.razorpay_credentials[0], query), {}
            return 404, {"error": "unknown simulator route"}, {}
        if route == "/_sim/reset":
            self.reset()
            return 200, {"reset": True}, {}
        if route == "/_sim/config":
            with self._lock:
                refused = apply_knobs(self.config, body)
                if refused is not None:
                    return 400, {"error": refused}, {}
                return 200, asdict(self.config), {}
        if route == "/_sim/webhooks/replay":
            found = self.webhooks.replay(str(body.get("event_id", "")))
            return (200, {"replayed": True}, {}) if found else (404, {"error": "unknown event_id"}, {})
        with self._lock:
            self._sync_knobs()
            if route == "/_sim/razorpay/checkout":
                return self.razorpay.checkout(str(body.get("order_id", "")), str(body.get("outcome", "success")))
            if route == "/_sim/cashfree/checkout":
                # By order id, or as Cashfree's checkout is opened: by the order's payment_session_id.
                order_id = str(body.get("order_id", ""))
                if "payment_session_id" in body:
                    by_session = self.cashfree.order_by_session(str(body["payment_session_id"]))
                    order_id = by_session["order_id"] if by_session is not None else ""
                return self.cashfree.checkout(order_id, str(body.get("outcome", "success")))
            if route == "/_sim/razorpay/late_authorize":
                return self.razorpay.late_authorize(str(body.get("payment_id", "")))
            if route == "/_sim/cashfree/late_success":
                return self.cashfree.late_success(str(body.get("order_id", "")))
            if route == "/_sim/cashfree/order_status":
                return self.cashfree.set_status(str(body.get("order_id", "")), str(body.get("order_status", "")))
            if route == "/_sim/refund_status":
                return self._refund_status(body)
            if route == "/_sim/razorpay/merchant_refund":
                return self._merchant_refund("razorpay", str(body.get("payment_id", "")), body.get("amount"))
            if route == "/_sim/cashfree/merchant_refund":
                return self._merchant_refund("cashfree", str(body.get("order_id", "")), body.get("amount"))
            if route == "/_sim/razorpay/payments":
                pid = self.create_razorpay_payment(
                    int(body["amount"]), body.get("currency", "INR"), body.get("status", "authorized")
                )
                return 200, self.razorpay.payments[pid], {}
            if route == "/_sim/cashfree/orders":
                oid = self.create_cashfree_order(
                    _paise(body["order_amount"]),
                    body.get("order_currency", "INR"),
                    body.get("payment_status", "SUCCESS"),
                    body.get("order_id"),
                )
                return 200, {"order_id": oid, "payments": self.cashfree.orders[oid]["_payments"]}, {}
        return 404, {"error": "unknown simulator route"}, {}

    def _refund_status(self, body: dict[str, Any]) -> Answer:
        refund_id, status = str(body.get("refund_id", "")), str(body.get("status", ""))
        if body.get("gateway") == "razorpay":
            done = self.razorpay.settle_refund(refund_id, status)
        else:
            done = self.cashfree.settle_refund(str(body.get("order_id", "")), refund_id, status)
        return (200, {"settled": True}, {}) if done else (400, {"error": "no such pending refund or status"}, {})

    def _sync_knobs(self) -> None:
        cfg = self.config
        self.razorpay.auto_capture = cfg.razorpay_auto_capture
        self.razorpay.refund_outcome = cfg.razorpay_refund_outcome
        self.razorpay.refund_outcomes = cfg.razorpay_refund_outcomes  # the same list: consuming updates the knob
        self.razorpay.refund_settle_s = cfg.refund_settle_s
        self.razorpay.auth_release_s = cfg.razorpay_auth_release_s
        self.cashfree.limits = cfg.cashfree_limits
        self.cashfree.refund_outcome = cfg.cashfree_refund_outcome
        self.cashfree.refund_outcomes = cfg.cashfree_refund_outcomes
        self.cashfree.refund_settle_s = cfg.refund_settle_s

    def _gateway(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str], float]:
        split = urlsplit(path)
        route = split.path
        gateway = "cashfree" if route == "/pg" or route.startswith("/pg/") else "razorpay"
        cfg = self.config
        if cfg.latency_ms or cfg.latency_jitter_ms:
            time.sleep((cfg.latency_ms + _rng.uniform(0, cfg.latency_jitter_ms)) / 1000)
        with self._lock:
            now = time.time()
            self._sync_knobs()
            status, payload, extra, hang = self._answer(
                gateway, method, route, query=split.query, headers=headers, body=body, now=now
            )
            self.calls.append(Call(now, gateway, method, route, status))
            if status == 429:
                self.counters.responses_429 += 1
            elif status >= 500:
                self.counters.responses_5xx += 1
        return status, payload, extra, hang

    def _throttle(self, gateway: str, now: float) -> Answer | None:
        """Storm, random 429 and the hard limit, checked before anything is done (lock held)."""
        cfg = self.config
        # Razorpay documents only the 429 (api/pagination); Cashfree names its wait x-ratelimit-retry.
        retry = (
            {"Retry-After": str(max(1, round(cfg.retry_after_s)))}
            if gateway == "razorpay"
            else {"x-ratelimit-retry": str(max(1, round(cfg.retry_after_s)))}
        )
        too_many = (
            (rzp_error("Too many requests"), retry)
            if gateway == "razorpay"
            else (cf_error("Too many requests", "request_failed", "rate_limit_error"), retry)
        )
        if now < cfg.storm_until or (cfg.rate_429 and _rng.random() < cfg.rate_429):
            return 429, *too_many
        admitted = self._admitted[gateway]
        while admitted and now - admitted[0] >= 1.0:
            admitted.popleft()
        if cfg.hard_limit_rps and len(admitted) >= cfg.hard_limit_rps:
            self.counters.hard_limited += 1
            return 429, too_many[0], {"Retry-After": "1"} if gateway == "razorpay" else {"x-ratelimit-retry": "1"}
        admitted.append(now)
        if cfg.rate_5xx and _rng.random() < cfg.rate_5xx:
            return _unavailable(gateway)
        return None

    def _answer(
        self, gateway: str, method: str, route: str, *, query: str, headers: dict[str, str], body: Any, now: float
    ) -> tuple[int, Any, dict[str, str], float]:
        if gateway in self.config.outage_gateways and now < self.config.outage_until:
            return *_unavailable(gateway), 0.0
        lower = {k.lower(): v for k, v in headers.items()}
        refused = self._authenticate(gateway, lower)
        if refused is not None:
            return *refused, 0.0
        limit_headers: dict[str, str] = {}
        parts = route.strip("/").split("/")[1:]  # after "pg"
        if gateway == "cashfree":
            self.cashfree_api_version = lower["x-api-version"]
            admitted, limit_headers = self.cashfree.admit(CashfreeSim.endpoint(method, parts), now)
            if not admitted:
                return 429, cf_error("Too many requests", "request_failed", "rate_limit_error"), limit_headers, 0.0
        refused = self._throttle(gateway, now)
        if refused is not None:
            return refused[0], refused[1], {**limit_headers, **refused[2]}, 0.0
        if body is None:
            bad = (
                rzp_error("The request body is not valid JSON")
                if gateway == "razorpay"
                else cf_error("invalid JSON", "request_invalid")
            )
            return 400, bad, limit_headers, 0.0
        if gateway == "razorpay":
            status, payload, extra = self.razorpay.handle(method, route, query, lower, body)
        else:
            status, payload, extra = self.cashfree.handle(method, parts, lower, body)
        extra = {**limit_headers, **extra}
        is_write = method == "POST" and status < 300
        if is_write and self.config.fail_after_send > 0:
            self.config.fail_after_send -= 1
            self.counters.applied_then_failed += 1
            if gateway == "razorpay":
                return 502, rzp_error("We are facing some trouble completing your request"), extra, 0.0
            return 502, cf_error("bad gateway", "internal_error", "api_error"), extra, 0.0
        if is_write and self.config.timeout_after_send > 0:
            self.config.timeout_after_send -= 1
            self.counters.applied_then_failed += 1
            return status, payload, extra, self.config.hang_s
        return status, payload, extra, 0.0

    def _authenticate(self, gateway: str, headers: dict[str, str]) -> Answer | None:
        if gateway == "razorpay":
            auth = headers.get("authorization", "")
            expected = "Basic " + base64.b64encode(":".join(self.razorpay_credentials).encode()).decode()
            if not secrets.compare_digest(auth, expected):
                return 401, rzp_error("The api key provided is invalid"), {}
            return None
        if not headers.get("x-api-version"):
            return (
                400,
                cf_error("x-api-version missing in the request header", "request_failed"),
                {"x-ratelimit-type": "app_id"},
            )
        client_id, client_secret = self.cashfree_credentials
        if not (
            secrets.compare_digest(headers.get("x-client-id", ""), client_id)
            and secrets.compare_digest(headers.get("x-client-secret", ""), client_secret)
        ):
            return (
                401,
                cf_error("authentication Failed", "request_failed", "authentication_error"),
                {"x-ratelimit-type": "app_id"},
            )
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description="Razorpay + Cashfree PG simulator on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PQ_GATEWAY_SIM_PORT", "8100")))
    args = parser.parse_args()
    config = SimConfig()
    # Knobs from PQ_SIM_<NAME> (for example PQ_SIM_RATE_429=0.05, PQ_SIM_RAZORPAY_REFUND_OUTCOMES=failed,processed).
    from_env = {
        f.name: os.environ[f"PQ_SIM_{f.name.upper()}"]
        for f in fields(SimConfig)
        if f"PQ_SIM_{f.name.upper()}" in os.environ
    }
    refused = apply_knobs(config, from_env)
    if refused is not None:
        parser.error(f"PQ_SIM_ knob {refused}")
    sim = Simulator(
        host=args.host,
        port=args.port,
        razorpay=(os.environ.get("PQ_RAZORPAY_KEY_ID", ""), os.environ.get("PQ_RAZORPAY_KEY_SECRET", "")),
        cashfree=(os.environ.get("PQ_CASHFREE_CLIENT_ID", ""), os.environ.get("PQ_CASHFREE_CLIENT_SECRET", "")),
        razorpay_webhook_secret=os.environ.get("PQ_RAZORPAY_WEBHOOK_SECRET", ""),
        config=config,
        state_path=Path(os.environ["PQ_GATEWAY_SIM_STATE"]) if os.environ.get("PQ_GATEWAY_SIM_STATE") else None,
    )
    # shutdown() must not run in the thread that serves, so SIGTERM stops from a thread of its own; the
    # process then waits for that stop (a daemon thread dies with the interpreter, and the state it was
    # saving with it), and Ctrl-C, which stops serving by itself, saves the state the same way.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=sim.stop, daemon=True).start())
    print(f"gateway simulator on {sim.url}", flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            sim.serve_forever()
    finally:
        sim.stop()


if __name__ == "__main__":
    main()

"""A Razorpay + Cashfree PG simulator on loopback, for the local runtime, the tests and the benchmark.

It answers the endpoints the processor calls, with the real paths, auth and JSON shapes:

    Razorpay  (basic auth key_id:key_secret; errors {"error": {"code", "description", ...}})
      GET  /v1/payments/{id}            POST /v1/payments/{id}/capture {amount, currency}
      POST /v1/payments/{id}/refund     GET  /v1/payments/{id}/refunds
    Cashfree PG  (x-client-id, x-client-secret, x-api-version; errors {"message", "code", "type"})
      GET  /pg/orders/{order_id}/payments
      POST /pg/orders/{order_id}/refunds {refund_amount, refund_id, refund_note}
      GET  /pg/orders/{order_id}/refunds/{refund_id}

Knobs (SimConfig; POST /_sim/config at run time): latency, a 429 rate with Retry-After /
x-ratelimit-retry, a 5xx rate, a hard server-side limit in requests per second, a 429 storm, and
writes that are applied but answered with a 502 or only after the client gave up. Every request
is logged, so a test or the benchmark can measure the rate we really sent:

    GET  /_sim/stats   calls, peak_rps (most requests in any 1 s), captures, double_captures,
                       refunds, responses_429, responses_5xx, per gateway too
    GET  /_sim/calls   the call log (t, gateway, method, path, status)
    POST /_sim/reset   clear the log and counters (payments stay)
    POST /_sim/razorpay/payments   {"amount", "currency"?, "status"?} -> a Razorpay payment
    POST /_sim/cashfree/orders     {"order_amount", "order_currency"?, "payment_status"?, "order_id"?}

Run alone: python -m local.gateway_sim --port 8100 (credentials from PQ_RAZORPAY_KEY_ID, ... as
the workers read them).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import re
import secrets
import signal
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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
    fail_after_send: int = 0  # the next N writes are applied, then answered 502
    timeout_after_send: int = 0  # the next N writes are applied, then answered only after hang_s
    hang_s: float = 3.0


@dataclass(frozen=True)
class Call:
    t: float
    gateway: str
    method: str
    path: str
    status: int


@dataclass
class _Counters:
    captures: int = 0
    double_captures: int = 0
    refunds: int = 0
    responses_429: int = 0
    responses_5xx: int = 0
    hard_limited: int = 0
    applied_then_failed: int = 0


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


def _rzp_error(code: str, description: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "description": description,
            "source": "NA",
            "step": "NA",
            "reason": "NA",
            "metadata": {},
        }
    }


def _cf_error(message: str, code: str, kind: str) -> dict[str, Any]:
    return {"message": message, "code": code, "type": kind}


class Simulator:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        razorpay: tuple[str, str] = ("rzp_test_local", "local_razorpay_secret"),
        cashfree: tuple[str, str] = ("cf_test_local", "local_cashfree_secret"),
        config: SimConfig | None = None,
    ) -> None:
        self.config = config or SimConfig()
        self.razorpay_credentials = razorpay
        self.cashfree_credentials = cashfree
        self.payments: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.counters = _Counters()
        self._admitted: dict[str, deque[float]] = {"razorpay": deque(), "cashfree": deque()}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Simulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="gateway-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    # --- fixtures: what the shopper did at the gateway's checkout ---------------------------

    def create_razorpay_payment(self, amount_paise: int, currency: str = "INR", status: str = "authorized") -> str:
        payment_id = "pay_" + secrets.token_hex(7)
        with self._lock:
            self.payments[payment_id] = {
                "id": payment_id,
                "entity": "payment",
                "amount": amount_paise,
                "currency": currency,
                "status": status,
                "order_id": None,
                "invoice_id": None,
                "international": False,
                "method": "upi",
                "amount_refunded": 0,
                "refund_status": None,
                "captured": status == "captured",
                "description": None,
                "email": "shopper@example.com",
                "contact": "+919999999999",
                "notes": {},
                "fee": None,
                "tax": None,
                "error_code": None,
                "error_description": None,
                "created_at": int(time.time()),
                "_refunds": [],
            }
        return payment_id

    def create_cashfree_order(
        self, amount_paise: int, currency: str = "INR", payment_status: str = "SUCCESS", order_id: str | None = None
    ) -> str:
        order_id = order_id or "order_" + secrets.token_hex(8)
        now = time.strftime("%Y-%m-%dT%H:%M:%S+05:30")
        payment = {
            "cf_payment_id": _rng.randrange(10**9, 10**10),
            "order_id": order_id,
            "entity": "payment",
            "is_captured": payment_status == "SUCCESS",
            "order_amount": _rupees(amount_paise),
            "payment_group": "upi",
            "payment_currency": currency,
            "payment_amount": _rupees(amount_paise),
            "payment_time": now,
            "payment_completion_time": now,
            "payment_status": payment_status,
            "payment_message": "Simulated payment",
            "bank_reference": secrets.token_hex(6),
            "auth_id": None,
            "payment_method": {"upi": {"channel": "collect", "upi_id": "shopper@upi"}},
        }
        with self._lock:
            self.orders[order_id] = {"currency": currency, "payments": [payment], "refunds": {}}
        return order_id

    # --- measurements -----------------------------------------------------------------------

    def stats(self, gateway: str | None = None) -> dict[str, Any]:
        with self._lock:
            calls = [c for c in self.calls if gateway is None or c.gateway == gateway]
            counters = asdict(self.counters)
        result: dict[str, Any] = {
            "calls": len(calls),
            "peak_rps": peak_rps([c.t for c in calls]),
            "by_endpoint": {},
            **counters,
        }
        for c in calls:
            key = f"{c.method} {re.sub(r'/(pay|order)_[A-Za-z0-9_-]+|/pq[0-9a-f]{32}', '/{id}', c.path)}"
            result["by_endpoint"][key] = result["by_endpoint"].get(key, 0) + 1
        if calls:
            span = calls[-1].t - calls[0].t
            result["mean_rps"] = round(len(calls) / span, 2) if span > 0 else float(len(calls))
        if gateway is None:
            result["gateways"] = {g: self.stats(g)["calls"] for g in ("razorpay", "cashfree")}
        return result

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.counters = _Counters()
            for admitted in self._admitted.values():
                admitted.clear()

    # --- the HTTP side ----------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
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

            def _dispatch(self, method: str) -> None:
                body = self._body() if method == "POST" else {}
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

        return Handler

    def _admin(self, method: str, path: str, body: Any) -> Answer:
        body = body if isinstance(body, dict) else {}
        if method == "GET" and path.startswith("/_sim/stats"):
            gateway = path.partition("gateway=")[2] or None
            return 200, self.stats(gateway), {}
        if method == "GET" and path == "/_sim/calls":
            with self._lock:
                return 200, [asdict(c) for c in self.calls], {}
        if method == "POST" and path == "/_sim/reset":
            self.reset()
            return 200, {"reset": True}, {}
        if method == "POST" and path == "/_sim/config":
            known = {f.name for f in fields(SimConfig)}
            for name, value in body.items():
                if name in known:
                    setattr(self.config, name, type(getattr(self.config, name))(value))
            return 200, asdict(self.config), {}
        if method == "POST" and path == "/_sim/razorpay/payments":
            pid = self.create_razorpay_payment(
                int(body["amount"]), body.get("currency", "INR"), body.get("status", "authorized")
            )
            return 200, self._public(self.payments[pid]), {}
        if method == "POST" and path == "/_sim/cashfree/orders":
            oid = self.create_cashfree_order(
                _paise(body["order_amount"]),
                body.get("order_currency", "INR"),
                body.get("payment_status", "SUCCESS"),
                body.get("order_id"),
            )
            return 200, {"order_id": oid, "payments": self.orders[oid]["payments"]}, {}
        return 404, {"error": "unknown simulator route"}, {}

    @staticmethod
    def _public(payment: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in payment.items() if not k.startswith("_")}

    def _gateway(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str], float]:
        gateway = "cashfree" if path.startswith("/pg/") else "razorpay"
        cfg = self.config
        if cfg.latency_ms or cfg.latency_jitter_ms:
            time.sleep((cfg.latency_ms + _rng.uniform(0, cfg.latency_jitter_ms)) / 1000)
        with self._lock:
            now = time.time()
            status, payload, extra, hang = self._answer(gateway, method, path, headers, body, now=now)
            self.calls.append(Call(now, gateway, method, path, status))
            if status == 429:
                self.counters.responses_429 += 1
            elif status >= 500:
                self.counters.responses_5xx += 1
        if gateway == "cashfree":
            extra = {"x-ratelimit-type": "app_id", **extra}
        return status, payload, extra, hang

    def _throttle(self, gateway: str, now: float) -> Answer | None:
        """Storm, random 429 and the hard limit, checked before anything is done (lock held)."""
        cfg = self.config
        retry = {"Retry-After": str(max(1, round(cfg.retry_after_s))), "x-ratelimit-retry": str(cfg.retry_after_s)}
        too_many = (
            (_rzp_error("BAD_REQUEST_ERROR", "Too many requests"), retry)
            if gateway == "razorpay"
            else (_cf_error("Too many requests", "request_failed", "rate_limit_error"), retry)
        )
        if now < cfg.storm_until or (cfg.rate_429 and _rng.random() < cfg.rate_429):
            return 429, *too_many
        admitted = self._admitted[gateway]
        while admitted and now - admitted[0] >= 1.0:
            admitted.popleft()
        if cfg.hard_limit_rps and len(admitted) >= cfg.hard_limit_rps:
            self.counters.hard_limited += 1
            return 429, too_many[0], {"Retry-After": "1", "x-ratelimit-retry": "1"}
        admitted.append(now)
        if cfg.rate_5xx and _rng.random() < cfg.rate_5xx:
            if gateway == "razorpay":
                return 503, _rzp_error("SERVER_ERROR", "Service temporarily unavailable"), {}
            return 503, _cf_error("Service temporarily unavailable", "internal_error", "api_error"), {}
        return None

    def _answer(
        self, gateway: str, method: str, path: str, headers: dict[str, str], body: Any, *, now: float
    ) -> tuple[int, Any, dict[str, str], float]:
        lower = {k.lower(): v for k, v in headers.items()}
        refused = self._authenticate(gateway, lower)
        if refused is None:
            refused = self._throttle(gateway, now)
        if refused is not None:
            return *refused, 0.0
        if body is None:
            bad = (
                _rzp_error("BAD_REQUEST_ERROR", "The request body is not valid JSON")
                if gateway == "razorpay"
                else _cf_error("invalid JSON", "request_invalid", "invalid_request_error")
            )
            return 400, bad, {}, 0.0
        if gateway == "razorpay":
            status, payload, extra = self._razorpay(method, path, body)
        else:
            status, payload, extra = self._cashfree(method, path, body)
        is_write = method == "POST" and status < 300
        if is_write and self.config.fail_after_send > 0:
            self.config.fail_after_send -= 1
            self.counters.applied_then_failed += 1
            if gateway == "razorpay":
                return 502, _rzp_error("SERVER_ERROR", "We are facing some trouble completing your request"), {}, 0.0
            return 502, _cf_error("bad gateway", "internal_error", "api_error"), {}, 0.0
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
                return 401, _rzp_error("BAD_REQUEST_ERROR", "The api key provided is invalid"), {}
            return None
        if not headers.get("x-api-version"):
            return (
                400,
                _cf_error("x-api-version missing in the request header", "request_failed", "invalid_request_error"),
                {},
            )
        client_id, client_secret = self.cashfree_credentials
        if not (
            secrets.compare_digest(headers.get("x-client-id", ""), client_id)
            and secrets.compare_digest(headers.get("x-client-secret", ""), client_secret)
        ):
            return 401, _cf_error("authentication Failed", "request_failed", "authentication_error"), {}
        return None

    def _razorpay(self, method: str, path: str, body: dict[str, Any]) -> Answer:
        match = re.fullmatch(r"/v1/payments/([^/]+)(?:/(capture|refund|refunds))?", path.split("?", maxsplit=1)[0])
        payment = self.payments.get(match.group(1)) if match else None
        if match is None or payment is None:
            return 400, _rzp_error("BAD_REQUEST_ERROR", "The id provided does not exist"), {}
        action = match.group(2)
        if method == "GET" and action is None:
            return 200, self._public(payment), {}
        if method == "GET" and action == "refunds":
            items = payment["_refunds"]
            return 200, {"entity": "collection", "count": len(items), "items": items}, {}
        if method == "POST" and action == "capture":
            if payment["status"] == "captured":
                self.counters.double_captures += 1
                return 400, _rzp_error("BAD_REQUEST_ERROR", "This payment has already been captured"), {}
            if payment["status"] != "authorized":
                return (
                    400,
                    _rzp_error(
                        "BAD_REQUEST_ERROR",
                        "Only payments which have been authorized and not yet captured can be captured",
                    ),
                    {},
                )
            if body.get("amount") != payment["amount"] or body.get("currency", "INR") != payment["currency"]:
                return 400, _rzp_error("BAD_REQUEST_ERROR", "Capture amount must be equal to the amount authorized"), {}
            payment.update(status="captured", captured=True)
            self.counters.captures += 1
            return 200, self._public(payment), {}
        if method == "POST" and action == "refund":
            amount = int(body.get("amount") or payment["amount"] - payment["amount_refunded"])
            if (
                payment["status"] not in ("captured", "refunded")
                or amount > payment["amount"] - payment["amount_refunded"]
            ):
                return 400, _rzp_error("BAD_REQUEST_ERROR", "The refund amount is greater than the amount left"), {}
            refund = {
                "id": "rfnd_" + secrets.token_hex(7),
                "entity": "refund",
                "amount": amount,
                "currency": payment["currency"],
                "payment_id": payment["id"],
                "notes": body.get("notes") or {},
                "receipt": body.get("receipt"),
                "acquirer_data": {"arn": None},
                "created_at": int(time.time()),
                "batch_id": None,
                "status": "processed",
                "speed_processed": "normal",
                "speed_requested": body.get("speed", "normal"),
            }
            payment["_refunds"].append(refund)
            payment["amount_refunded"] += amount
            full = payment["amount_refunded"] == payment["amount"]
            payment.update(status="refunded" if full else "captured", refund_status="full" if full else "partial")
            self.counters.refunds += 1
            return 200, refund, {}
        return 400, _rzp_error("BAD_REQUEST_ERROR", "The requested URL was not found on the server."), {}

    def _cashfree(self, method: str, path: str, body: dict[str, Any]) -> Answer:
        match = re.fullmatch(r"/pg/orders/([^/]+)/(payments|refunds)(?:/([^/]+))?", path.split("?", maxsplit=1)[0])
        order = self.orders.get(match.group(1)) if match else None
        rate_headers = {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "99", "x-ratelimit-retry": "0"}
        if match is None or order is None:
            return 404, _cf_error("order not found", "order_not_found", "invalid_request_error"), rate_headers
        order_id, kind, refund_id = match.groups()
        if method == "GET" and kind == "payments" and refund_id is None:
            return 200, order["payments"], rate_headers
        if method == "GET" and kind == "refunds" and refund_id:
            found = order["refunds"].get(refund_id)
            if found is None:
                return 404, _cf_error("refund not found", "refund_not_found", "invalid_request_error"), rate_headers
            return 200, found, rate_headers
        if method == "POST" and kind == "refunds" and refund_id is None:
            paid = [p for p in order["payments"] if p["payment_status"] == "SUCCESS"]
            if not paid:
                return 400, _cf_error("order is not paid", "refund_invalid", "invalid_request_error"), rate_headers
            if body.get("refund_id") in order["refunds"]:
                return 409, _cf_error("refund_id already exists", "refund_already_exists", "invalid_request_error"), {}
            refund = {
                "cf_payment_id": paid[0]["cf_payment_id"],
                "cf_refund_id": str(_rng.randrange(10**9, 10**10)),
                "refund_id": body.get("refund_id"),
                "order_id": order_id,
                "entity": "refund",
                "refund_amount": body.get("refund_amount"),
                "refund_currency": order["currency"],
                "refund_note": body.get("refund_note"),
                "refund_status": "PENDING",
                "refund_type": "MERCHANT_INITIATED",
                "refund_speed": {"requested": "STANDARD", "accepted": "STANDARD"},
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S+05:30"),
            }
            order["refunds"][str(body.get("refund_id"))] = refund
            self.counters.refunds += 1
            return 200, refund, rate_headers
        return 404, _cf_error("route not found", "request_invalid", "invalid_request_error"), rate_headers


def main() -> None:
    parser = argparse.ArgumentParser(description="Razorpay + Cashfree PG simulator on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PQ_GATEWAY_SIM_PORT", "8100")))
    args = parser.parse_args()
    config = SimConfig()
    # Knobs from PQ_SIM_<NAME> (for example PQ_SIM_RATE_429=0.05, PQ_SIM_HARD_LIMIT_RPS=25).
    for f in fields(SimConfig):
        if (value := os.environ.get(f"PQ_SIM_{f.name.upper()}")) is not None:
            setattr(config, f.name, type(getattr(config, f.name))(value))
    sim = Simulator(
        host=args.host,
        port=args.port,
        razorpay=(os.environ.get("PQ_RAZORPAY_KEY_ID", ""), os.environ.get("PQ_RAZORPAY_KEY_SECRET", "")),
        cashfree=(os.environ.get("PQ_CASHFREE_CLIENT_ID", ""), os.environ.get("PQ_CASHFREE_CLIENT_SECRET", "")),
        config=config,
    )
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=sim.stop, daemon=True).start())
    print(f"gateway simulator on {sim.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sim.serve_forever()


if __name__ == "__main__":
    main()

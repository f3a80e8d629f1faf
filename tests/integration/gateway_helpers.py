"""Steps the gateway tests share: a simulator, gateway-enabled settings, the checkout flow, webhooks
and draining."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from functions.enqueue.handler import handler as enqueue_handler
from functions.status.handler import handler as status_handler
from local.gateway_sim import Simulator
from local.invariants import check
from local.lambda_shim import LocalContext, http_api_event
from local.workers import read_fifo
from shared.bootstrap import App
from shared.db import Database
from shared.domain import CheckoutRequest, PaymentRequest
from shared.errors import DomainError
from shared.services.checkout import open_checkout
from shared.services.gateway import process_gateway_job
from shared.services.intake import Accepted, accept_payment
from shared.settings import Settings
from tests.integration.helpers import deliver

RAZORPAY = ("rzp_test_k1", "rzp_secret_s1")
CASHFREE = ("cf_app_k1", "cf_secret_s1")
RAZORPAY_WEBHOOK_SECRET = "rzp_webhook_secret_w1"


def gateway_settings(sim: Simulator) -> dict[str, Any]:
    """Settings fields that point both gateways at the simulator, with test-sized backoffs."""
    return {
        "razorpay_base_url": sim.url,
        "razorpay_key_id": RAZORPAY[0],
        "razorpay_key_secret": RAZORPAY[1],
        "razorpay_webhook_secret": RAZORPAY_WEBHOOK_SECRET,
        "cashfree_base_url": sim.url + "/pg",
        "cashfree_client_id": CASHFREE[0],
        "cashfree_client_secret": CASHFREE[1],
        "cashfree_environment": "production",
        "gateway_timeout_s": 0.5,
        "gateway_backoff_base_s": 0.5,
        "gateway_backoff_cap_s": 2,
    }


def pgmq_gateway_settings(database_url: str, sim: Simulator, **overrides: Any) -> Settings:
    """The local stand-ins (PGMQ for SQS and the bus), both gateways at the simulator, sweeps due at once,
    ten deliveries a job: the settings of the gateway tests, with each file's own overrides."""
    fields: dict[str, Any] = {
        "queue_backend": "pgmq",
        "event_bus_backend": "pgmq",
        "sweep_after_s": 0,
        "max_receive_count": 10,
        **gateway_settings(sim),
    }
    return Settings(database_url=database_url, **(fields | overrides))


def no_violations(app: App) -> None:
    found = check(app.db)
    assert found == dict.fromkeys(found, 0)


def ledger_violations(app: App, sim: Simulator) -> dict[str, int]:
    """The invariants that do not hold, the books against the gateway's own record included."""
    found = check(app.db, gateway_ledger=sim.ledger()["payments"])
    return {k: v for k, v in found.items() if v}


def set_stock_of_order(app: App, order_id: int, stock: int) -> None:
    """Every product of the order at this stock (0: sold out)."""
    app.db.execute(
        """UPDATE products SET stock = %s
            WHERE id IN (SELECT (e->>'product_id')::bigint FROM orders, jsonb_array_elements(items) e
                          WHERE orders.id = %s)""",
        (stock, order_id),
    )


def paid_job(app: App, sim: Simulator, method: str, user_id: str = "demo-user-1") -> tuple[dict[str, Any], str]:
    """A checkout of the shopper's order paid at the gateway, and the job that asks us to complete it."""
    view = open_for(app, user_id, method)
    pay_at_gateway(sim, view)
    return view, accept_payment(app, user_id, "key-1", payment_request(view)).body["job_id"]


def cancelled_and_lost_at_its_refund(app: App, sim: Simulator, *, sent: bool) -> tuple[dict[str, Any], str]:
    """A paid Cashfree job whose order was cancelled, and a first delivery that dies (a Lambda timeout) at
    its refund: after the refund reached Cashfree (sent), or after COMPLETE booked it, before it left."""
    view, job_id = paid_job(app, sim, "cashfree")
    app.db.execute("UPDATE orders SET order_status = 'cancelled' WHERE id = %s", (view["order_id"],))
    cashfree = app.gateways["cashfree"]
    real_refund = cashfree.refund

    def dies(ref: str, amount_paise: int, currency: str, refund_ref: str) -> Any:
        if sent:
            real_refund(ref, amount_paise, currency, refund_ref)
        raise RuntimeError("the invocation timed out")

    cashfree.refund = dies  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError):
            process_gateway_job(app, job_id, "cashfree", receipt_handle="payments:0:1", receive_count=1)
    finally:
        cashfree.refund = real_refund  # type: ignore[method-assign]
    return view, job_id


def order_status(app: App, order_id: int) -> str:
    row = app.db.fetch_one("SELECT order_status FROM orders WHERE id = %s", (order_id,))
    assert row is not None
    return str(row["order_status"])


def refused(call: object, *args: object) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


def order_of(db: Database, user_id: str) -> dict[str, Any]:
    row = db.fetch_one(
        "SELECT id, total_paise FROM orders WHERE user_id = %s AND order_status = 'pending' ORDER BY id", (user_id,)
    )
    assert row is not None
    return row


def open_for(app: App, user_id: str, method: str, order_id: int | None = None) -> dict[str, Any]:
    """The shopper opens a checkout of their pending order (or order_id); returns its view."""
    order = order_of(app.db, user_id)["id"] if order_id is None else order_id
    _, view = open_checkout(app, user_id, CheckoutRequest(order_id=order, method=method))  # type: ignore[arg-type]
    return view


def gateway_order(view: dict[str, Any]) -> str:
    return str(view[view["method"]]["order_id"])


def pay_at_gateway(sim: Simulator, view: dict[str, Any], outcome: str = "success") -> dict[str, Any]:
    """What the shopper does in the gateway's checkout page; returns what the page is handed."""
    if view["method"] == "razorpay":
        return sim.razorpay_checkout(gateway_order(view), outcome)
    return sim.cashfree_checkout(gateway_order(view), outcome)


def payment_request(view: dict[str, Any], handed: dict[str, Any] | None = None) -> PaymentRequest:
    """The POST /v1/payments body the page sends after the gateway's checkout."""
    if view["method"] == "razorpay":
        assert handed is not None
        return PaymentRequest(
            order_id=view["order_id"],
            method="razorpay",
            razorpay_order_id=handed["razorpay_order_id"],
            razorpay_payment_id=handed["razorpay_payment_id"],
            razorpay_signature=handed["razorpay_signature"],
        )
    return PaymentRequest(order_id=view["order_id"], method="cashfree")


def pay_gateway(app: App, sim: Simulator, user_id: str, method: str, outcome: str = "success") -> Accepted:
    """The whole shopper's flow: checkout, pay at the gateway, ask us to complete it."""
    view = open_for(app, user_id, method)
    handed = pay_at_gateway(sim, view, outcome)
    return accept_payment(app, user_id, f"key-{user_id}-{view['order_id']}", payment_request(view, handed))


def drain(app: App, timeout_s: float = 30.0) -> int:
    """Play the event source mapping until the queue is empty; return the deliveries made."""
    deadline = time.monotonic() + timeout_s
    deliveries = 0
    while time.monotonic() < deadline:
        messages = read_fifo(app.db, "payments", visibility_timeout_s=30, qty=10)
        if messages:
            deliveries += len(messages)
            deliver(app, messages)
            continue
        if app.db.fetch_one("SELECT count(*) AS n FROM pgmq.q_payments") == {"n": 0}:
            return deliveries
        time.sleep(0.1)
    raise AssertionError("queue not drained in time")


def jobs(db: Database) -> list[dict[str, Any]]:
    return db.fetch_all("SELECT id::text, status, reason, method FROM payment_jobs ORDER BY queue_seq")


@dataclass(frozen=True)
class Received:
    gateway: str
    body: bytes
    headers: dict[str, str]


class WebhookInbox:
    """Where the simulator sends its signed webhooks: each request kept as received (bytes and
    headers), answered 200, and handed to our real handler by the test's own thread (the App's
    database connection is the test's)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.received: list[Received] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                gateway = self.path.rsplit("/", 1)[-1]
                inbox.received.append(Received(gateway, body, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        host, port = self._server.server_address[:2]
        sim.config.razorpay_webhook_url = f"http://{host!s}:{port}/v1/webhooks/razorpay"
        sim.config.cashfree_webhook_url = f"http://{host!s}:{port}/v1/webhooks/cashfree"
        self._handed = 0

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def pending(self) -> list[Received]:
        """Every webhook the simulator sent since the last call."""
        assert self.sim.wait_webhooks(10)
        fresh, self._handed = self.received[self._handed :], len(self.received)
        return fresh

    def deliver(self, items: list[Received] | None = None) -> list[int]:
        """Hand the webhooks to POST /v1/webhooks/<gateway> (the real handler); their statuses."""
        return [
            post_webhook(r.gateway, r.body, r.headers)["statusCode"]
            for r in (self.pending() if items is None else items)
        ]


def call_api(function: str, method: str, path: str, user: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A checkout route as API Gateway hands it to its function (enqueue or status), with the shopper's JWT
    claims: POST /v1/checkouts, or GET /v1/checkouts/{checkout_id}."""
    event = http_api_event(
        method=method,
        path=path,
        route_key=f"{method} {path}",
        query="",
        headers={"content-type": "application/json"},
        body=json.dumps(body).encode() if body is not None else b"",
        claims={"sub": user, "scope": "payments/pay"},
        scopes=["payments/pay"],
        path_parameters={"checkout_id": path.rsplit("/", 1)[-1]} if method == "GET" else None,
        source_ip="127.0.0.1",
    )
    if method == "GET":
        event["routeKey"] = "GET /v1/checkouts/{checkout_id}"
    handler = enqueue_handler if function == "enqueue" else status_handler
    result: dict[str, Any] = handler(event, LocalContext(f"payment-queue-{function}"))
    return result


def post_webhook(gateway: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """POST /v1/webhooks/<gateway> as API Gateway hands it to the function: no JWT."""
    event = http_api_event(
        method="POST",
        path=f"/v1/webhooks/{gateway}",
        route_key=f"POST /v1/webhooks/{gateway}",
        query="",
        headers=headers,
        body=body,
        claims=None,
        scopes=None,
        path_parameters=None,
        source_ip="127.0.0.1",
    )
    result: dict[str, Any] = enqueue_handler(event, LocalContext("payment-queue-enqueue"))
    return result


def paid_long_ago(sim: Simulator, view: dict[str, Any], minutes: int = 60) -> None:
    """Cashfree says the checkout's payment completed `minutes` ago, as it does for a job that runs long
    after the shopper paid (a redrive, a webhook-created job): its refunds are read before fulfilment
    (cashfree_refunds_read_after_s)."""
    order = sim.cashfree.orders[gateway_order(view)]
    then = datetime.now(UTC) - timedelta(minutes=minutes)
    for payment in order["_payments"]:
        if payment.get("payment_completion_time"):
            payment["payment_completion_time"] = then.isoformat(timespec="seconds")

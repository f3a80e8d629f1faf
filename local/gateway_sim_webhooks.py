"""The simulator's webhook deliveries: signed as each gateway signs them, retried, logged, replayable.

Razorpay sends `X-Razorpay-Signature` (hex HMAC-SHA256 of the raw body, webhook secret) and
`X-Razorpay-Event-Id` (the same on every retry of one event: "use the x-razorpay-event-id header to
check for duplicates", razorpay.com/docs/webhooks/validate-test); it retries non-2xx answers with
exponential backoff for 24 h (razorpay markdown-docs webhooks/best-practices).
Cashfree sends `x-webhook-signature` (base64 HMAC-SHA256 of x-webhook-timestamp + raw body, client
secret), `x-webhook-timestamp` (ms), `x-webhook-version`, `x-webhook-attempt` and `x-idempotency-key`
(cashfree.com/docs/api-reference/payments/latest/payments/webhooks, "Webhook signature" header table).
Here a delivery is retried a few times (knobs) so tests stay short.
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.gateway_signatures import cashfree_webhook_signature, razorpay_webhook_signature


@dataclass
class Delivery:
    gateway: str
    event_id: str
    type: str
    url: str
    body: bytes = field(repr=False)
    attempts: int = 0
    status: int | None = None  # the last HTTP status, None before the first answer or on a network error
    delivered: bool = False

    def public(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "event_id": self.event_id,
            "type": self.type,
            "url": self.url,
            "attempts": self.attempts,
            "status": self.status,
            "delivered": self.delivered,
            "body": self.body.decode(),
        }


class WebhookSender:
    """One thread that posts queued events in order; the simulator's lock is never held while sending."""

    def __init__(
        self,
        *,
        razorpay_secret: str,
        cashfree_secret: str,
        cashfree_version: Callable[[], str],
        knobs: Callable[[], tuple[int, float, float]],
        on_result: Callable[[bool], None],
    ) -> None:
        self._razorpay_secret = razorpay_secret
        self._cashfree_secret = cashfree_secret
        self._cashfree_version = cashfree_version
        self._knobs = knobs  # (retries, retry_s, delay_s)
        self._on_result = on_result
        self.deliveries: list[Delivery] = []
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="gateway-sim-webhooks", daemon=True)
        self._thread.start()

    def send(self, gateway: str, event_type: str, url: str, payload: dict[str, Any], copies: int = 1) -> str:
        body = json.dumps(payload, separators=(",", ":")).encode()
        prefix = "evt_" if gateway == "razorpay" else ""
        event_id = prefix + secrets.token_urlsafe(16)
        for _ in range(max(1, copies)):
            delivery = Delivery(gateway, event_id, event_type, url, body)
            with self._lock:
                self.deliveries.append(delivery)
            if url.startswith(("http://", "https://")):  # no URL configured: logged, not sent
                self._queue.put(delivery)
        return event_id

    def replay(self, event_id: str) -> bool:
        """Deliver an event again (what a gateway's retry or a dashboard 'resend' does)."""
        with self._lock:
            found = next((d for d in self.deliveries if d.event_id == event_id), None)
            if found is None:
                return False
            again = Delivery(found.gateway, found.event_id, found.type, found.url, found.body)
            self.deliveries.append(again)
        if again.url.startswith(("http://", "https://")):
            self._queue.put(again)
        return True

    def log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [d.public() for d in self.deliveries]

    def clear(self) -> None:
        with self._lock:
            self.deliveries.clear()

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """True once every queued delivery has been tried (tests use it instead of sleeping)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        self._queue.put(None)

    def _headers(self, delivery: Delivery) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if delivery.gateway == "razorpay":
            headers["X-Razorpay-Signature"] = razorpay_webhook_signature(delivery.body, self._razorpay_secret)
            headers["X-Razorpay-Event-Id"] = delivery.event_id
            return headers
        timestamp = str(int(time.time() * 1000))
        headers["x-webhook-timestamp"] = timestamp
        headers["x-webhook-signature"] = cashfree_webhook_signature(timestamp, delivery.body, self._cashfree_secret)
        headers["x-webhook-version"] = self._cashfree_version()
        headers["x-webhook-attempt"] = str(delivery.attempts)
        headers["x-idempotency-key"] = delivery.event_id
        return headers

    def _post(self, delivery: Delivery) -> bool:
        delivery.attempts += 1
        request = urllib.request.Request(  # noqa: S310 (the configured webhook URL, http(s) only)
            delivery.url, data=delivery.body, method="POST", headers=self._headers(delivery)
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                delivery.status = response.status
        except urllib.error.HTTPError as err:
            delivery.status = err.code
        except (urllib.error.URLError, OSError):
            delivery.status = None
        return delivery.status is not None and 200 <= delivery.status < 300

    def _run(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None:
                self._queue.task_done()
                return
            try:
                retries, retry_s, delay_s = self._knobs()
                if delay_s:
                    time.sleep(delay_s)
                ok = False
                for attempt in range(1 + max(0, retries)):
                    if attempt:
                        time.sleep(retry_s * 2 ** (attempt - 1))
                    ok = self._post(delivery)
                    if ok:
                        break
                delivery.delivered = ok
                self._on_result(ok)
            finally:
                self._queue.task_done()

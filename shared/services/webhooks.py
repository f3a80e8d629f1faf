"""Gateway webhooks (POST /v1/webhooks/razorpay, /v1/webhooks/cashfree): verify, record once, enqueue.

The HMAC is checked first, over the raw bytes, in constant time (shared/gateway_signatures.py); a bad
one is 401 webhook_signature_invalid and nothing is recorded. A verified event is recorded once
(deduplicated by Razorpay's X-Razorpay-Event-Id, Cashfree's x-idempotency-key or else the payment and
type), never refused for its age: Razorpay signs no timestamp and retries for 24 hours, Cashfree
retries too. No money moves in the request: recording wakes the checkout's parked job or creates the
job nobody asked for (the shopper closed the tab after paying), and the queue does the rest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shared.bootstrap import App
from shared.domain import ApiError
from shared.gateway_signatures import verify_cashfree_webhook, verify_razorpay_webhook
from shared.observability import logger
from shared.outcomes import WebhookOutcome
from shared.services.gateway import refund_failed
from shared.services.intake import job_message, send_jobs

# Razorpay events that say money was taken for a payment of the order (razorpay.com/docs/webhooks/payments).
_RAZORPAY_SUCCESS = frozenset({"payment.authorized", "payment.captured", "order.paid"})
_RAZORPAY_FAILURE = frozenset({"payment.failed"})
_RAZORPAY_REFUND = frozenset({"refund.processed", "refund.failed", "refund.created"})
_CASHFREE_FAILURE = frozenset({"PAYMENT_FAILED_WEBHOOK", "PAYMENT_USER_DROPPED_WEBHOOK"})
# A refund's state in our terms (Razorpay refund entity status; Cashfree refund_status).
_REFUND_STATES = {
    "processed": "succeeded",
    "failed": "failed",
    "pending": "pending",
    "SUCCESS": "succeeded",
    "CANCELLED": "failed",
    "FAILED": "failed",
    "PENDING": "pending",
    "ONHOLD": "pending",
}


@dataclass(frozen=True)
class WebhookEvent:
    """What a verified webhook says, in the terms pq_webhook_record takes."""

    event_id: str
    event_type: str
    gateway_order_id: str | None = None
    gateway_ref: str | None = None  # the job's reference: Razorpay payment id, Cashfree order id
    success: bool = False
    failure: bool = False
    refund_id: str | None = None
    refund_state: str | None = None
    refund_status: str | None = None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) and str(value) else None


def razorpay_event(body: dict[str, Any], headers: dict[str, str], raw: bytes) -> WebhookEvent:
    """The Razorpay event envelope: {"event", "payload": {"payment": {"entity"}, "order": ..., "refund": ...}}."""
    kind = str(body.get("event") or "")
    payload = _dict(body.get("payload"))
    payment = _dict(_dict(payload.get("payment")).get("entity"))
    order = _dict(_dict(payload.get("order")).get("entity"))
    refund = _dict(_dict(payload.get("refund")).get("entity"))
    # "use the x-razorpay-event-id header to check for duplicates" (razorpay.com/docs/webhooks/validate-test)
    event_id = headers.get("x-razorpay-event-id") or "sha256:" + hashlib.sha256(raw).hexdigest()
    if kind in _RAZORPAY_REFUND and refund:
        status = _text(refund.get("status"))
        return WebhookEvent(
            event_id,
            kind,
            refund_id=_text(refund.get("id")),
            refund_state=_REFUND_STATES.get(status or "", "pending"),
            refund_status=status,
        )
    return WebhookEvent(
        event_id,
        kind,
        gateway_order_id=_text(payment.get("order_id")) or _text(order.get("id")),
        gateway_ref=_text(payment.get("id")),
        success=kind in _RAZORPAY_SUCCESS,
        failure=kind in _RAZORPAY_FAILURE,
    )


def cashfree_event(body: dict[str, Any], headers: dict[str, str]) -> WebhookEvent:
    """Cashfree PG webhooks: {"type", "data": {"order", "payment", ...} | {"refund"}, "event_time"}."""
    kind = str(body.get("type") or "")
    data = _dict(body.get("data"))
    order = _dict(data.get("order"))
    payment = _dict(data.get("payment"))
    refund = _dict(data.get("refund"))
    if kind == "REFUND_STATUS_WEBHOOK":
        status = _text(refund.get("refund_status"))
        refund_id = _text(refund.get("cf_refund_id"))
        event_id = headers.get("x-idempotency-key") or f"{kind}:{refund_id}:{status}"
        return WebhookEvent(
            event_id,
            kind,
            refund_id=refund_id,
            refund_state=_REFUND_STATES.get(status or "", "pending"),
            refund_status=status,
        )
    order_id = _text(order.get("order_id"))
    status = _text(payment.get("payment_status"))
    event_id = headers.get("x-idempotency-key") or f"{kind}:{_text(payment.get('cf_payment_id'))}:{status}"
    return WebhookEvent(
        event_id,
        kind,
        gateway_order_id=order_id,
        gateway_ref=order_id,  # a Cashfree job is the order: its SUCCESS attempt is found by fetching it
        success=kind == "PAYMENT_SUCCESS_WEBHOOK" and status == "SUCCESS",
        failure=kind in _CASHFREE_FAILURE,
    )


def verify(app: App, gateway: str, raw: bytes, headers: dict[str, str]) -> None:
    """The gateway's HMAC over exactly these bytes, or 401 webhook_signature_invalid."""
    ok = False
    if gateway == "razorpay" and app.secrets.razorpay_webhook is not None:
        ok = verify_razorpay_webhook(raw, headers.get("x-razorpay-signature"), app.secrets.razorpay_webhook())
    elif gateway == "cashfree" and app.secrets.cashfree is not None:
        ok = verify_cashfree_webhook(
            raw, headers.get("x-webhook-timestamp"), headers.get("x-webhook-signature"), app.secrets.cashfree()[1]
        )
    if not ok:
        raise ApiError(401, "webhook_signature_invalid", "the webhook signature does not verify")


def receive_webhook(app: App, gateway: str, raw: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """Verify, record once, send the job it created or woke. headers: lower-cased names."""
    verify(app, gateway, raw, headers)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "webhook body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "webhook body must be a JSON object")
    event = razorpay_event(body, headers, raw) if gateway == "razorpay" else cashfree_event(body, headers)
    row = app.db.fetch_one(
        "SELECT * FROM pq_webhook_record(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
        (
            gateway,
            event.event_id[:200],
            event.event_type[:100],
            event.gateway_order_id,
            event.gateway_ref,
            event.success,
            event.failure,
            event.refund_id,
            event.refund_state,
            event.refund_status,
            raw.decode("utf-8", errors="replace"),
        ),
    )
    assert row is not None
    outcome = WebhookOutcome(row["outcome"])
    if outcome is WebhookOutcome.REFUND_FAILED:
        refund = app.db.fetch_one(
            "SELECT id, job_id, owed_at IS NOT NULL AS owed FROM gateway_refunds"
            " WHERE method = %s AND gateway_refund_id = %s",
            (gateway, event.refund_id),
        )
        if refund is not None:
            refund_failed(str(refund["job_id"]), gateway, refund["id"], owed=refund["owed"])
    if outcome in (WebhookOutcome.JOB_CREATED, WebhookOutcome.JOB_WOKEN):
        send_jobs(app, [job_message(str(row["job_id"]), row["user_id"], row["order_id"], gateway, row["parks"])])
    logger.info("gateway webhook", gateway=gateway, event_type=event.event_type, outcome=outcome)
    return {"received": True}

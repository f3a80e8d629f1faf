"""Gateway webhooks (POST /v1/webhooks/razorpay, /v1/webhooks/cashfree): verify, record once, enqueue.

The HMAC is checked first, over the raw bytes, in constant time (shared/gateway_signatures.py); a bad
one is 401 webhook_signature_invalid and nothing is recorded. Every verified body is recorded, once,
and answered 200 (pq_webhook_record):

- Once per signed body: the key is the SHA-256 of the raw bytes, which both gateways sign, never
  X-Razorpay-Event-Id or x-idempotency-key, which no signature covers (a signed body replayed with a
  fresh header would be a new event, and wake a parked job to fetch the gateway, every time). Cashfree
  signs x-webhook-timestamp with the body, but the key leaves it out: Cashfree names an event by its
  body ("x-idempotency-key ... hashed value will always be unique for each unique webhook payload",
  cashfree.com/docs/payments/online/webhooks/overview, Duplicate webhook processing), and a retry signed
  afresh must stay the same event.
- Cashfree's signed timestamp is checked for age, and an old one is accepted but made free, not
  refused: Cashfree retries every non-2xx answer (by default at 2, 10 and 30 minutes, custom policies
  up to 10 times: cashfree.com/docs/api-reference/webhooks/reliability-and-operations; its dashboard
  resends up to 24 hours back: docs.cashfree.com/docs/webhook-resend-retry), and it documents the
  timestamp as when the webhook "was generated" (payments/subscription/webhook-signature), so a genuine
  late delivery may carry an old one, which a 4xx would only send back again. Signed more than
  webhook_fresh_for_s ago, a webhook is recorded (stale) and does nothing: the sweeper's reconciliation
  settles its checkout. Replays of a body we hold are duplicates whatever their age; the window makes
  free the signed bodies we never recorded (those recorded before migration 0011 have no digest).
  Razorpay signs no timestamp: the digest alone stops its replays.
- A failure or drop webhook wakes a parked job at most once per webhook_wake_interval_s after the job
  last fetched, however many distinct signed bodies come; a success wakes it at once (money is
  waiting). A checkout already settled has no parked job: its webhooks call nothing.
- The raw bytes are kept (bytea); payload is their jsonb where jsonb can hold them. JSON allows
  "\\u0000" and lone surrogates, which jsonb refuses: such a body is read and acted on, payload NULL.
  NaN and Infinity are not JSON (RFC 8259, section 6): such a body, like any that is not a UTF-8 JSON
  object, is recorded unreadable and nothing is done, yet answered 200: it is signed, so the gateway
  sent it, and refusing it would only bring the same bytes back for hours.

No money moves in the request: recording wakes the checkout's parked job or creates the job nobody asked
for (the shopper closed the tab after paying), and the queue does the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

from aws_lambda_powertools.metrics import MetricUnit

from shared.bootstrap import App
from shared.domain import ApiError
from shared.gateway_signatures import verify_cashfree_webhook, verify_razorpay_webhook
from shared.observability import logger, metrics
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
# The gateway's own id of a delivery, unsigned: recorded to match its dashboard, never a key
# ("use the x-razorpay-event-id header to check for duplicates", razorpay.com/docs/webhooks/validate-test,
# is only safe for deliveries nobody replays).
_EVENT_ID_HEADERS = {"razorpay": "x-razorpay-event-id", "cashfree": "x-idempotency-key"}
_MAX_ID = 200  # gateway_webhook_events.event_id's limit too
_MAX_PAISE = 2**63 - 1  # bigint


@dataclass(frozen=True)
class WebhookEvent:
    """What a verified webhook says, in the terms pq_webhook_record takes."""

    event_type: str
    gateway_order_id: str | None = None
    gateway_ref: str | None = None  # the job's reference: Razorpay payment id, Cashfree order id
    success: bool = False
    failure: bool = False
    refund_id: str | None = None
    refund_state: str | None = None
    refund_status: str | None = None
    refund_ref: str | None = None  # the merchant's reference: ours (receipt / refund_id) or the dashboard's
    refund_amount_paise: int | None = None
    refund_currency: str | None = None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _storable(text: str) -> bool:
    """PostgreSQL text can hold it: no NUL and no lone surrogate (JSON's \\u0000 and \\ud800 escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _text(value: Any) -> str | None:
    """An id or status as text we can store and index, else None (then it names nothing of ours)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    # Gateways' ids are tens of characters; a btree entry is refused past about 2.7 KB.
    return text if 0 < len(text) <= _MAX_ID and _storable(text) else None


def _paise(value: Any, *, rupees: bool) -> int | None:
    """An amount the gateway states (Razorpay: integer paise; Cashfree: rupees as a JSON number) as
    positive integer paise, else None (then no refund is recorded from it)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        paise = Decimal(str(value)) * (100 if rupees else 1)
    except InvalidOperation:
        return None
    if not paise.is_finite() or paise <= 0 or paise != paise.to_integral_value() or paise > _MAX_PAISE:
        return None
    return int(paise)


def razorpay_event(body: dict[str, Any]) -> WebhookEvent:
    """The Razorpay event envelope: {"event", "payload": {"payment": {"entity"}, "order": ..., "refund": ...}}."""
    kind = _text(body.get("event")) or ""
    payload = _dict(body.get("payload"))
    payment = _dict(_dict(payload.get("payment")).get("entity"))
    order = _dict(_dict(payload.get("order")).get("entity"))
    refund = _dict(_dict(payload.get("refund")).get("entity"))
    if kind in _RAZORPAY_REFUND and refund:
        status = _text(refund.get("status"))
        return WebhookEvent(
            kind,
            gateway_ref=_text(refund.get("payment_id")),
            refund_id=_text(refund.get("id")),
            refund_state=_REFUND_STATES.get(status or "", "pending"),
            refund_status=status,
            refund_ref=_text(refund.get("receipt")),
            refund_amount_paise=_paise(refund.get("amount"), rupees=False),
            refund_currency=_text(refund.get("currency")),
        )
    return WebhookEvent(
        kind,
        gateway_order_id=_text(payment.get("order_id")) or _text(order.get("id")),
        gateway_ref=_text(payment.get("id")),
        success=kind in _RAZORPAY_SUCCESS,
        failure=kind in _RAZORPAY_FAILURE,
    )


def cashfree_event(body: dict[str, Any]) -> WebhookEvent:
    """Cashfree PG webhooks: {"type", "data": {"order", "payment", ...} | {"refund"}, "event_time"}."""
    kind = _text(body.get("type")) or ""
    data = _dict(body.get("data"))
    order = _dict(data.get("order"))
    payment = _dict(data.get("payment"))
    refund = _dict(data.get("refund"))
    if kind == "REFUND_STATUS_WEBHOOK":
        status = _text(refund.get("refund_status"))
        return WebhookEvent(
            kind,
            gateway_ref=_text(refund.get("order_id")),  # Cashfree refunds go by order: the job's reference
            refund_id=_text(refund.get("cf_refund_id")),
            refund_state=_REFUND_STATES.get(status or "", "pending"),
            refund_status=status,
            refund_ref=_text(refund.get("refund_id")),
            refund_amount_paise=_paise(refund.get("refund_amount"), rupees=True),
            refund_currency=_text(refund.get("refund_currency")),
        )
    order_id = _text(order.get("order_id"))
    status = _text(payment.get("payment_status"))
    return WebhookEvent(
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


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


def read_body(raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None: not UTF-8, not JSON (NaN and Infinity are not), not an object."""
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_not_json)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return body if isinstance(body, dict) else None


def signed_at(headers: dict[str, str]) -> datetime | None:
    """Cashfree's x-webhook-timestamp (milliseconds), verified with the body: when it was signed."""
    stamp = headers.get("x-webhook-timestamp")
    if stamp is None:
        return None
    try:
        return datetime.fromtimestamp(int(stamp) / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return datetime.fromtimestamp(0, UTC)  # signed, yet no time we can hold: as old as any


def receive_webhook(app: App, gateway: str, raw: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """Verify, record once, send the job it created or woke. headers: lower-cased names."""
    verify(app, gateway, raw, headers)
    body = read_body(raw)
    if body is None:
        event = WebhookEvent("")
    else:
        event = razorpay_event(body) if gateway == "razorpay" else cashfree_event(body)
    header_id = _text(headers.get(_EVENT_ID_HEADERS[gateway]))
    # raw travels as bytea (twice its size as hex in the statement: a few KB for the gateways' bodies);
    # pq_webhook_record keys on its digest and derives payload from it.
    row = app.db.fetch_one(
        """SELECT * FROM pq_webhook_record(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NULL,
                                          p_body => %s, p_signed_at => %s, p_fresh_for_s => %s,
                                          p_wake_interval_s => %s, p_readable => %s,
                                          p_refund_ref => %s, p_refund_amount_paise => %s,
                                          p_refund_currency => %s)""",
        (
            gateway,
            header_id,
            event.event_type[:100],
            event.gateway_order_id,
            event.gateway_ref,
            event.success,
            event.failure,
            event.refund_id,
            event.refund_state,
            event.refund_status,
            raw,
            signed_at(headers) if gateway == "cashfree" else None,
            float(app.settings.webhook_fresh_for_s),
            float(app.settings.webhook_wake_interval_s),
            body is not None,
            event.refund_ref,
            event.refund_amount_paise,
            event.refund_currency,
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
    if outcome is WebhookOutcome.REFUND_AFTER_FULFILMENT:
        # The merchant gave money back at the gateway for an order we fulfilled: the order stays paid, the
        # books take it out of applied, and an operator decides (refunds.after_fulfilment).
        metrics.add_metric(name="GatewayRefundsAfterFulfilment", unit=MetricUnit.Count, value=1)
        logger.warning(
            "gateway refund after fulfilment",
            gateway=gateway,
            refund_id=event.refund_id,
            amount_paise=event.refund_amount_paise,
        )
    if outcome is WebhookOutcome.UNREADABLE:  # signed, so the gateway's: an operator reads its body
        logger.warning("gateway webhook unreadable", gateway=gateway, outcome=outcome, body_bytes=len(raw))
    else:
        logger.info("gateway webhook", gateway=gateway, event_type=event.event_type, outcome=outcome)
    return {"received": True}

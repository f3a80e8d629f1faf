"""Gateway webhooks (POST /v1/webhooks/<gateway>): verify, record once, enqueue.

The HMAC is checked first, over the raw bytes, in constant time (the gateway package's
webhook_signature_valid, shared/gateway_signatures.py); a bad one is 401 webhook_signature_invalid and
nothing is recorded. Every verified body is recorded, once, and answered 200 (pq_webhook_record):

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
from typing import Any, NoReturn, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from shared.errors import Unauthorized
from shared.gateways.fields import text
from shared.gateways.port import PaymentGateway, WebhookEvent
from shared.observability import logger, metrics
from shared.outcomes import WebhookOutcome
from shared.ports import HasDb, HasGateways, HasQueue, HasSettings
from shared.services.gateway import refund_failed
from shared.services.intake import job_message, send_jobs


class WebhookDeps(HasDb, HasQueue, HasGateways, HasSettings, Protocol):
    """What receiving a webhook uses: the gateway that verifies it, the books, the queue for the job it
    makes or wakes, and the freshness settings."""


def verify(deps: HasGateways, name: str, raw: bytes, headers: dict[str, str]) -> PaymentGateway:
    """The gateway, once its HMAC over exactly these bytes verifies; else Unauthorized webhook_signature_invalid
    (a gateway that is not enabled verifies nothing)."""
    gateway = deps.gateways.get(name)
    if gateway is None or not gateway.webhook_signature_valid(raw, headers):
        raise Unauthorized("webhook_signature_invalid", "the webhook signature does not verify")
    return gateway


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


def read_body(raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None: not UTF-8, not JSON (NaN and Infinity are not), not an object."""
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_not_json)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return body if isinstance(body, dict) else None


def receive_webhook(deps: WebhookDeps, name: str, raw: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """Verify, record once, send the job it created or woke. headers: lower-cased names."""
    gateway = verify(deps, name, raw, headers)
    body = read_body(raw)
    event = WebhookEvent("") if body is None else gateway.webhook_event(body)
    header_id = text(headers.get(gateway.webhook_event_id_header))
    # raw travels as bytea (twice its size as hex in the statement: a few KB for the gateways' bodies);
    # pq_webhook_record keys on its digest and derives payload from it.
    row = deps.db.fetch_one(
        """SELECT * FROM pq_webhook_record(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NULL,
                                          p_body => %s, p_signed_at => %s, p_fresh_for_s => %s,
                                          p_wake_interval_s => %s, p_readable => %s,
                                          p_refund_ref => %s, p_refund_amount_paise => %s,
                                          p_refund_currency => %s)""",
        (
            gateway.name,
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
            gateway.signed_at(headers),
            float(deps.settings.webhook_fresh_for_s),
            float(deps.settings.webhook_wake_interval_s),
            body is not None,
            event.refund_ref,
            event.refund_amount_paise,
            event.refund_currency,
        ),
    )
    assert row is not None
    outcome = WebhookOutcome(row["outcome"])
    if outcome is WebhookOutcome.REFUND_FAILED:
        refund = deps.db.fetch_one(
            "SELECT id, job_id, owed_at IS NOT NULL AS owed FROM gateway_refunds"
            " WHERE method = %s AND gateway_refund_id = %s",
            (name, event.refund_id),
        )
        if refund is not None:
            refund_failed(str(refund["job_id"]), name, refund["id"], owed=refund["owed"])
    if outcome in (WebhookOutcome.JOB_CREATED, WebhookOutcome.JOB_WOKEN):
        send_jobs(deps, [job_message(str(row["job_id"]), row["user_id"], row["order_id"], name, row["parks"])])
    if outcome is WebhookOutcome.REFUND_AFTER_FULFILMENT:
        # The merchant gave money back at the gateway for an order we fulfilled: the order stays paid, the
        # books take it out of applied, and an operator decides (refunds.after_fulfilment).
        metrics.add_metric(name="GatewayRefundsAfterFulfilment", unit=MetricUnit.Count, value=1)
        logger.warning(
            "gateway refund after fulfilment",
            gateway=name,
            refund_id=event.refund_id,
            amount_paise=event.refund_amount_paise,
        )
    if outcome is WebhookOutcome.UNREADABLE:  # signed, so the gateway's: an operator reads its body
        logger.warning("gateway webhook unreadable", gateway=name, outcome=outcome, body_bytes=len(raw))
    else:
        logger.info("gateway webhook", gateway=name, event_type=event.event_type, outcome=outcome)
    return {"received": True}

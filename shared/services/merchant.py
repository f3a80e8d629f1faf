"""The shop's backend (the /v1/merchant routes, scope payments/merchant): a merchant client -- a
client-credentials token whose subject is the client, never a shopper -- names the shopper in every
request. It creates orders (prices and stock from products), adjusts wallets (a ledger entry with a
reason), starts wallet payments on a shopper's behalf (recorded as requested by the client), reads a
shopper's orders, payments and wallet, and lists and re-delivers our events. Writes are one round trip
each (shared/sql/merchant.sql) and idempotent on the client's Idempotency-Key.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from shared.domain import (
    MerchantOrderRequest,
    MerchantPaymentRequest,
    UserId,
    WalletAdjustmentRequest,
    build_event,
)
from shared.errors import Conflict, Invalid, NotFound, job_not_found, key_reused
from shared.outcomes import EnqueueOutcome, MerchantOrderOutcome, WalletAdjustOutcome
from shared.ports import HasDb, HasQueue
from shared.services.intake import enqueue_refusal, job_message, send_recorded
from shared.services.orders import SHOPPER_ORDER_QUERY, iso, order_view
from shared.services.reads import JobViewDeps, job_view

# How much one page of a list holds at most (and by default).
MAX_PAGE = 500
DEFAULT_PAGE = 100
WALLET_ENTRIES_SHOWN = 50
_USER: TypeAdapter[str] = TypeAdapter(UserId)


class PayDeps(JobViewDeps, HasQueue, Protocol):
    """What a payment on a shopper's behalf uses: the books, the queue, and what a job's view needs."""


@dataclass(frozen=True)
class Written:
    status: int  # 201 created, 200 the same request replayed
    body: dict[str, Any]


def create_order(deps: HasDb, client_id: str, key: str, request: MerchantOrderRequest) -> Written:
    items = [line.model_dump() for line in request.items]
    row = deps.db.fetch_one(
        "SELECT * FROM pq_merchant_create_order(%s, %s, %s, %s, %s::jsonb)",
        (client_id, key, request.fingerprint(), request.user_id, _json(items)),
    )
    assert row is not None
    outcome = MerchantOrderOutcome(row["outcome"])
    if outcome is MerchantOrderOutcome.KEY_REUSED:
        raise key_reused()
    if outcome is MerchantOrderOutcome.PRODUCT_NOT_FOUND:
        raise NotFound("product_not_found", "no such product", product_id=row["product_id"])
    if outcome is MerchantOrderOutcome.OUT_OF_STOCK:
        raise Conflict(
            "out_of_stock",
            "a product has fewer units on hand than ordered",
            product_id=row["product_id"],
            available=row["available"],
        )
    if outcome is MerchantOrderOutcome.TOTAL_TOO_LARGE:
        raise Invalid("validation_error", "items: the order's total is too large", field="items")
    order = deps.db.fetch_one(SHOPPER_ORDER_QUERY, (row["order_id"], request.user_id))
    assert order is not None
    return Written(201 if outcome is MerchantOrderOutcome.CREATED else 200, order_view(order))


def adjust_wallet(deps: HasDb, client_id: str, key: str, request: WalletAdjustmentRequest) -> Written:
    row = deps.db.fetch_one(
        "SELECT * FROM pq_merchant_adjust_wallet(%s, %s, %s, %s, %s, %s, %s)",
        (
            client_id,
            key,
            request.fingerprint(),
            request.user_id,
            request.amount_paise,
            request.currency,
            request.reason,
        ),
    )
    assert row is not None
    outcome = WalletAdjustOutcome(row["outcome"])
    if outcome is WalletAdjustOutcome.KEY_REUSED:
        raise key_reused()
    if outcome is WalletAdjustOutcome.INSUFFICIENT_BALANCE:
        raise Conflict(
            "insufficient_balance", "the wallet holds less than the debit", balance_paise=row["balance_paise"]
        )
    if outcome is WalletAdjustOutcome.CURRENCY_MISMATCH:
        raise Conflict(
            "currency_mismatch", "the wallet is in another currency", wallet_currency=row["currency"].strip()
        )
    if outcome is WalletAdjustOutcome.BALANCE_TOO_LARGE:
        raise Invalid("validation_error", "amount_paise: the balance would be too large", field="amount_paise")
    body = {
        "user_id": request.user_id,
        "wallet_transaction_id": row["wallet_transaction_id"],
        "kind": "credit" if request.amount_paise > 0 else "debit",
        "amount_paise": abs(request.amount_paise),
        "reason": request.reason,
        "balance_paise": row["balance_paise"],
        "currency": row["currency"].strip(),
    }
    return Written(201 if outcome is WalletAdjustOutcome.ADJUSTED else 200, body)


def pay_on_behalf(deps: PayDeps, client_id: str, key: str, request: MerchantPaymentRequest) -> Written:
    """A wallet payment of the shopper's order, as if the shopper had asked (their intake, their line,
    their key namespace), recorded as requested by the client. 202 when made, 200 when replayed. The
    message is sent as the shopper's intake sends it: in the recording transaction when the queue lives
    in the database (PGMQ), after commit otherwise (SQS; the sweeper sends what a crash left unsent)."""
    payment = request.payment()
    message = job_message(str(uuid.uuid4()), request.user_id, request.order_id, payment.method)
    here = deps.queue.in_transaction(message)
    row = deps.db.fetch_one(
        "SELECT * FROM pq_merchant_enqueue(%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)",
        (
            client_id,
            request.user_id,
            key,
            payment.fingerprint(),
            request.order_id,
            uuid.UUID(message.job_id),
            *((here.queue, here.body, here.headers) if here is not None else (None, None, None)),
        ),
    )
    assert row is not None
    outcome = EnqueueOutcome(row["outcome"])
    if refusal := enqueue_refusal(outcome, row, payment.method, whose="shopper"):
        raise refusal
    if outcome is EnqueueOutcome.CREATED and here is None:
        send_recorded(deps, message)
    view = job_view(deps, row | {"id": str(row["job_id"]), "user_id": request.user_id, "order_id": request.order_id})
    body = view | {"user_id": request.user_id, "requested_by": row["requested_by"]}
    return Written(202 if outcome is EnqueueOutcome.CREATED else 200, body)


_PAYMENT_COLUMNS = """
SELECT j.id, j.user_id, j.order_id, j.method, j.status, j.reason, j.payment_id, j.gateway_ref, j.requested_by,
       j.cancel_requested_at IS NOT NULL AS cancel_requested, j.created_at, j.finished_at, t.amount_paise, t.currency
  FROM payment_jobs j
  LEFT JOIN payment_transactions t ON t.job_id = j.id"""
_PAYMENTS_QUERY = (
    _PAYMENT_COLUMNS
    + """
 WHERE j.user_id = %s
 ORDER BY j.queue_seq DESC
 LIMIT %s"""
)
_PAYMENT_QUERY = (
    _PAYMENT_COLUMNS
    + """
 WHERE j.id = %s"""
)


def _payment(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": str(r["id"]),
        "order_id": r["order_id"],
        "method": r["method"],
        "status": r["status"],
        "reason": r["reason"],
        "payment_id": r["payment_id"],
        "amount_paise": r["amount_paise"],
        "currency": None if r["currency"] is None else r["currency"].strip(),
        "gateway_ref": r["gateway_ref"],
        "requested_by": r["requested_by"],
        "cancel_requested": r["cancel_requested"],
        "created_at": iso(r["created_at"]),
        "finished_at": iso(r["finished_at"]),
    }


def list_payments(deps: HasDb, user_id: str, limit: int) -> dict[str, Any]:
    """A shopper's payment jobs, newest first, with what each paid."""
    rows = deps.db.fetch_all(_PAYMENTS_QUERY, (user_id, limit))
    return {"user_id": user_id, "payments": [_payment(r) for r in rows]}


def get_payment(deps: HasDb, job_id: str) -> dict[str, Any]:
    """One payment job, whoever's, with what it paid and whose it is (where POST /v1/merchant/payments's
    Location points: the shopper's own route is not the client's to read)."""
    try:
        job_uuid = uuid.UUID(job_id)
    except ValueError:
        raise job_not_found() from None
    row = deps.db.fetch_one(_PAYMENT_QUERY, (job_uuid,))
    if row is None:
        raise job_not_found()
    return {"user_id": row["user_id"]} | _payment(row)


def get_wallet(deps: HasDb, user_id: str, limit: int = WALLET_ENTRIES_SHOWN) -> dict[str, Any]:
    """A shopper's wallet: its balance and its latest ledger entries."""
    wallet = deps.db.fetch_one("SELECT id, balance_paise, currency FROM wallets WHERE user_id = %s", (user_id,))
    if wallet is None:
        raise NotFound("wallet_not_found", "this shopper has no wallet")
    entries = deps.db.fetch_all(
        """SELECT id, kind, amount_paise, balance_after_paise, note, order_id, created_at
             FROM wallet_transactions WHERE wallet_id = %s ORDER BY id DESC LIMIT %s""",
        (wallet["id"], limit),
    )
    return {
        "user_id": user_id,
        "balance_paise": wallet["balance_paise"],
        "currency": wallet["currency"].strip(),
        "entries": [
            {
                "wallet_transaction_id": e["id"],
                "kind": e["kind"],
                "amount_paise": e["amount_paise"],
                "balance_after_paise": e["balance_after_paise"],
                "reason": e["note"],
                "order_id": e["order_id"],
                "created_at": iso(e["created_at"]),
            }
            for e in entries
        ],
    }


# A page follows the (time, id) of the last event of the one before (after), not the time alone: one
# transaction's events share its time (a sold-out bulk end writes up to a thousand at one instant), and a
# page of them all would otherwise be asked for again and again.
_EVENTS_QUERY = """
SELECT e.id, e.event_type AS type, e.created_at AS occurred_at, e.payload AS data, e.published_at,
       e.redeliveries, e.redelivery_requested_at
  FROM outbox_events e
 WHERE CASE WHEN %(after)s::uuid IS NULL THEN e.created_at >= %(since)s
            ELSE (e.created_at, e.id) > (%(since)s, %(after)s::uuid) END
 ORDER BY e.created_at, e.id
 LIMIT %(limit)s"""


def _delivery(row: dict[str, Any]) -> dict[str, Any]:
    # What we know: whether the event was handed to the bus (EventBridge -> SNS -> the notifier and any
    # subscriber; each delivers at least once). Delivery to the webhook is the notifier's, after that.
    return {
        "state": "published" if row["published_at"] is not None else "pending",
        "published_at": iso(row["published_at"]),
        "redeliveries": row["redeliveries"],
        "redelivery_requested_at": iso(row["redelivery_requested_at"]),
    }


def list_events(deps: HasDb, since: datetime, limit: int, after: str | None = None) -> dict[str, Any]:
    """Our PaymentSucceeded / PaymentFailed events from `since` on (after: past the event of that id at
    `since`), oldest first, each as consumers receive it and with its delivery state. A full page names the
    next: since=next_since&after=next_after."""
    rows = deps.db.fetch_all(_EVENTS_QUERY, {"since": since, "after": after, "limit": limit})
    events = [build_event(r) | {"delivery": _delivery(r)} for r in rows]
    full = len(rows) == limit
    return {
        "events": events,
        "next_since": iso(rows[-1]["occurred_at"]) if full else None,
        "next_after": str(rows[-1]["id"]) if full else None,
    }


def redeliver_event(deps: HasDb, event_id: str) -> dict[str, Any]:
    """Publish an event again: it is marked unpublished, and the sweeper publishes it within its period
    (a minute on AWS), under its own id."""
    try:
        event_uuid = uuid.UUID(event_id)
    except ValueError:
        raise _event_not_found() from None
    row = deps.db.fetch_one(
        """UPDATE outbox_events
              SET published_at = NULL, redeliveries = redeliveries + 1, redelivery_requested_at = now()
            WHERE id = %s
        RETURNING id, event_type AS type, created_at AS occurred_at, payload AS data, published_at, redeliveries,
                  redelivery_requested_at""",
        (event_uuid,),
    )
    if row is None:
        raise _event_not_found()
    return build_event(row) | {"delivery": _delivery(row)}


def _event_not_found() -> NotFound:
    return NotFound("event_not_found", "no such event")


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def query_user(value: str | None) -> str:
    """The shopper a merchant read names (?user_id=): the same bounds as in a body."""
    try:
        return _USER.validate_python(value)
    except ValidationError:
        raise Invalid(
            "validation_error", "user_id: a shopper's id (1-255 printable characters)", field="user_id"
        ) from None


def query_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_PAGE:
        raise Invalid("validation_error", f"limit: a whole number from 1 to {MAX_PAGE}", field="limit")
    return int(value)


def query_after(value: str | None) -> str | None:
    """?after=: the id of the last event of the page before (its next_after), or nothing."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Invalid("validation_error", "after: an event id, as next_after gives it", field="after") from None


def query_since(value: str | None) -> datetime:
    """?since=: an ISO 8601 time with its offset (2026-01-31T10:00:00Z)."""
    try:
        since = datetime.fromisoformat(value or "")
    except ValueError:
        since = None
    if since is None or since.tzinfo is None:
        raise Invalid(
            "validation_error", "since: an ISO 8601 time with its offset, e.g. 2026-01-31T10:00:00Z", field="since"
        )
    return since

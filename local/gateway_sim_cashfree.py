"""Cashfree PG's Orders, Payments and Refunds APIs as the simulator answers them (state and rules only).

Shapes from cashfree.com/docs/api-reference/payments/latest and the models of the official SDK
(cashfree-pg 6.0.1: OrderEntity, PaymentEntity, RefundEntity, the error models), which the contract
tests validate every answer with:
- POST /pg/orders {order_id (3-45 of letters, digits, _ and -), order_amount (>= 1, two decimals),
  order_currency, customer_details {customer_id (3-50, "use alphanumeric values only"), customer_phone
  (required)}, order_expiry_time (ISO 8601), order_meta.notify_url (https, at most 250 characters),
  order_tags (at most 10)} -> OrderEntity with cf_order_id and payment_session_id, status ACTIVE.
  Statuses ACTIVE, PAID, EXPIRED, TERMINATED, TERMINATION_REQUESTED (OrderEntity.order_status).
- Ids are strings: cf_payment_id, cf_order_id, cf_refund_id (StrictStr in the models since API version
  2023-08-01). An order has several attempts (GET /pg/orders/{id}/payments): SUCCESS, NOT_ATTEMPTED,
  FAILED, USER_DROPPED, VOID, CANCELLED, PENDING.
- Refunds: POST /pg/orders/{id}/refunds {refund_amount, refund_id (3-40), refund_note (3-100),
  refund_speed}; refund_status PENDING -> SUCCESS | CANCELLED, ONHOLD is not final (RefundEntity
  .refund_status; "ON HOLD: The refund is temporarily on hold due to insufficient funds",
  help/end-customer/refunds). A CANCELLED refund's amount can be refunded again (under a new refund_id).
  REFUND_STATUS_WEBHOOK is sent when a refund is processed or cancelled, not for PENDING or ONHOLD
  (api-reference/payments/latest/refunds/webhooks: "We send refund webhooks for three different events").
  Refunds the merchant makes on the dashboard are listed with the order's refunds like ours.
- order_note is 3-200 characters, refund_note 3-100 (the SDK's CreateOrderRequest and
  OrderCreateRefundRequest models); order_currency one Cashfree supports (local/gateway_sim_currencies.py).
- Errors {"message", "code", "type"} (api-reference/payments/errors; "order_inactive": "Order is no
  longer active or has expired"), 422 idempotency_error for a reused x-idempotency-key with another body.
- Per-endpoint, per-minute limits with x-ratelimit-limit / -remaining / -retry / -type on every answer
  (api-reference/payments/rate-limits; payments/online/resources/rate-limits): see LIMITS.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from local.gateway_sim_currencies import ISO_4217

Answer = tuple[int, Any, dict[str, str]]
# (webhook type, payload data, notify_url of the order or None)
Emit = Callable[[str, dict[str, Any], str | None], None]

IST = timezone(timedelta(hours=5, minutes=30))
# Requests per minute by endpoint, as published (api-reference/payments/rate-limits, tabs Production and
# Sandbox). Sandbox's Get Refund cell was not legible in the copy we read: the lowest sandbox figure
# (Get Settlements, 20) stands in. Cashfree publishes no limit for listing an order's refunds: it shares
# Get Refund's here.
LIMITS: dict[str, dict[str, int]] = {
    "production": {"create_order": 200, "get_order": 400, "get_payments": 100, "create_refund": 100, "get_refund": 30},
    "sandbox": {"create_order": 30, "get_order": 60, "get_payments": 30, "create_refund": 30, "get_refund": 20},
}
WINDOW_S = 60.0
ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{3,45}$")
REFUND_ID = re.compile(r"^[A-Za-z0-9_-]{3,40}$")
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9]{3,50}$")
PHONE = re.compile(r"^(\d{10}|\+\d{8,15})$")
DEFAULT_EXPIRY = timedelta(days=30)  # the docs' sample order expires about 30 days after creation
REFUND_OUTCOMES = ("SUCCESS", "CANCELLED", "ONHOLD")


def cf_error(message: str, code: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"message": message, "code": code, "type": kind}


def _now_ist() -> str:
    return datetime.now(IST).isoformat(timespec="seconds")


def _digits(n: int = 10) -> str:
    return str(secrets.randbelow(9 * 10 ** (n - 1)) + 10 ** (n - 1))


def _fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _amount_ok(value: Any, minimum: Decimal) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    amount = Decimal(str(value))
    return amount >= minimum and amount == amount.quantize(Decimal("0.01"))


def _rupees(value: Any) -> Decimal:
    return Decimal(str(value))


def _paise(rupees: Any) -> int:
    return int(_rupees(rupees) * 100)


def _note_ok(value: Any, longest: int) -> bool:
    return value is None or (isinstance(value, str) and 3 <= len(value) <= longest)


def _loopback_or_https(url: str) -> bool:
    parts = urlsplit(url)
    # Cashfree: "NotifyUrl should be an https URL"; plain http is accepted for loopback only, so the
    # local runtime can receive the simulator's webhooks.
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost"))


@dataclass
class CashfreeCounters:
    orders_created: int = 0
    refunds: int = 0  # refunds requested through the API (ours)
    refunds_replayed: int = 0
    idempotency_conflicts: int = 0
    rate_limited: int = 0
    merchant_refunds: int = 0  # refunds made on the dashboard


class CashfreeSim:
    """Cashfree PG's state. Every method runs with the simulator's lock held."""

    def __init__(self, emit: Emit, schedule: Callable[[float, Callable[[], object]], None]) -> None:
        self._emit = emit
        self._schedule = schedule
        self.orders: dict[str, dict[str, Any]] = {}
        self._idempotency: dict[tuple[str, str], tuple[str, Answer]] = {}
        self._windows: dict[str, deque[float]] = {}
        self.counters = CashfreeCounters()
        # Knobs, set by the simulator from SimConfig before each request.
        self.limits = "production"  # production | sandbox | off
        self.refund_outcome = "SUCCESS"  # SUCCESS | CANCELLED | ONHOLD (held until settled by hand)
        self.refund_outcomes: list[str] = []  # the knob's own list: consumed, one per refund we request
        self.refund_settle_s = 0.2

    # --- limits -----------------------------------------------------------------------------

    @staticmethod
    def endpoint(method: str, parts: list[str]) -> str | None:
        """The published limit that covers this request (parts: the path after /pg)."""
        if parts == ["orders"] and method == "POST":
            return "create_order"
        if len(parts) == 2 and parts[0] == "orders" and method == "GET":
            return "get_order"
        if len(parts) >= 3 and parts[0] == "orders" and parts[2] == "payments":
            return "get_payments"
        if len(parts) >= 3 and parts[0] == "orders" and parts[2] == "refunds":
            return "create_refund" if method == "POST" else "get_refund"
        return None

    def admit(self, endpoint: str | None, now: float) -> tuple[bool, dict[str, str]]:
        """Count the request against its endpoint's minute; the rate-limit headers for the answer.

        The wait is x-ratelimit-retry, the header Cashfree documents; no Retry-After (which urllib3, under
        cashfree-pg, would obey by sleeping inside the call)."""
        limit = LIMITS.get(self.limits, {}).get(endpoint or "")
        if limit is None:
            return True, {"x-ratelimit-type": "app_id"}
        window = self._windows.setdefault(endpoint or "", deque())
        while window and now - window[0] >= WINDOW_S:
            window.popleft()
        if len(window) >= limit:
            self.counters.rate_limited += 1
            retry = max(1, int(WINDOW_S - (now - window[0]) + 0.999))
            return False, {
                "x-ratelimit-limit": str(limit),
                "x-ratelimit-remaining": "0",
                "x-ratelimit-retry": str(retry),
                "x-ratelimit-type": "app_id",
            }
        window.append(now)
        return True, {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(limit - len(window)),
            "x-ratelimit-retry": "0",
            "x-ratelimit-type": "app_id",
        }

    def reset_limits(self) -> None:
        self._windows.clear()

    # --- the REST API -----------------------------------------------------------------------

    def handle(self, method: str, parts: list[str], headers: dict[str, str], body: Any) -> Answer:
        key = headers.get("x-idempotency-key")
        if method == "POST" and key:
            scope = "/".join(parts)
            seen = self._idempotency.get((scope, key))
            if seen is not None:
                if seen[0] != _fingerprint(body):
                    self.counters.idempotency_conflicts += 1
                    return (
                        422,
                        cf_error(
                            "idempotency key reused with a different request", "request_invalid", "idempotency_error"
                        ),
                        {},
                    )
                if scope.endswith("refunds"):
                    self.counters.refunds_replayed += 1
                status, payload, extra = seen[1]
                return status, copy.deepcopy(payload), extra
            answer = self._route(method, parts, body)
            if answer[0] < 500 and answer[0] != 429:
                self._idempotency[(scope, key)] = (_fingerprint(body), copy.deepcopy(answer))
            return answer
        return self._route(method, parts, body)

    def _route(self, method: str, parts: list[str], body: Any) -> Answer:
        if parts == ["orders"] and method == "POST":
            return self.create_order(body)
        if len(parts) < 2 or parts[0] != "orders":
            return 404, cf_error("bad URL, please check API documentation", "request_failed"), {}
        order = self.orders.get(parts[1])
        if order is None:
            return 404, cf_error("order not found", "order_not_found"), {}
        self._expire(order)
        rest = parts[2:]
        if method == "GET" and not rest:
            return 200, self._public(order), {}
        if method == "GET" and rest == ["payments"]:
            return 200, copy.deepcopy(order["_payments"]), {}
        if rest[:1] == ["refunds"]:
            return self._refunds(method, order, rest[1:], body)
        return 404, cf_error("bad URL, please check API documentation", "request_failed"), {}

    def create_order(self, body: Any) -> Answer:
        refused = self._invalid_order(body)
        if refused is not None:
            return 400, cf_error(*refused), {}
        order_id = body.get("order_id") or "order_" + secrets.token_hex(12)
        if order_id in self.orders:
            return 409, cf_error("order with same order_id already exists", "order_already_exists"), {}
        if body.get("order_expiry_time"):
            expires = datetime.fromisoformat(body["order_expiry_time"].replace("Z", "+00:00"))
        else:
            expires = datetime.now(UTC) + DEFAULT_EXPIRY
        meta = body.get("order_meta") or {}
        customer = body["customer_details"]
        order = {
            "cf_order_id": _digits(10),
            "order_id": order_id,
            "entity": "order",
            "order_currency": body["order_currency"],
            "order_amount": body["order_amount"],
            "order_status": "ACTIVE",
            "payment_session_id": "session_" + secrets.token_urlsafe(48),
            "order_expiry_time": expires.astimezone(IST).isoformat(timespec="seconds"),
            "order_note": body.get("order_note"),
            "created_at": _now_ist(),
            "order_splits": [],
            "customer_details": {
                "customer_id": customer["customer_id"],
                "customer_name": customer.get("customer_name"),
                "customer_email": customer.get("customer_email"),
                "customer_phone": customer["customer_phone"],
                "customer_uid": None,
            },
            "order_meta": {
                "return_url": meta.get("return_url"),
                "notify_url": meta.get("notify_url"),
                "payment_methods": meta.get("payment_methods"),
            },
            "order_tags": body.get("order_tags"),
            "cart_details": None,
            "terminal_data": None,
            "_payments": [],
            "_refunds": {},
            "_expires": expires.timestamp(),
        }
        self.orders[order_id] = order
        self.counters.orders_created += 1
        return 200, self._public(order), {}

    @staticmethod
    def _invalid_order(body: Any) -> tuple[str, str] | None:  # noqa: C901, PLR0912 (one check per field)
        if not isinstance(body, dict):
            return "request body is not valid JSON", "request_invalid"
        if not _amount_ok(body.get("order_amount"), Decimal(1)):
            return "order_amount : must be a number of at least 1 with at most two decimals", "order_amount_invalid"
        currency = body.get("order_currency")
        if not isinstance(currency, str) or not currency:
            return "order_currency : is missing in the request", "order_currency_invalid"
        if currency not in ISO_4217:
            return "order_currency : value provided is not supported", "order_currency_invalid"  # our wording
        if not _note_ok(body.get("order_note"), 200):
            return "order_note : should be 3 to 200 characters", "order_note_invalid"  # our wording
        order_id = body.get("order_id")
        if order_id is not None and (not isinstance(order_id, str) or not ORDER_ID.fullmatch(order_id)):
            return "order_id : only alphanumeric, '_' and '-' characters, 3 to 45 of them", "order_id_invalid"
        customer = body.get("customer_details")
        if not isinstance(customer, dict):
            return "customer_details : is missing in the request", "customer_details_missing"
        if not isinstance(customer.get("customer_id"), str) or not CUSTOMER_ID.fullmatch(customer["customer_id"]):
            return "customer_details.customer_id : 3 to 50 alphanumeric characters", "customer_id_invalid"
        if not isinstance(customer.get("customer_phone"), str) or not PHONE.fullmatch(customer["customer_phone"]):
            return "customer_details.customer_phone : is missing or invalid", "customer_phone_invalid"
        expiry = body.get("order_expiry_time")
        if expiry is not None:
            try:
                when = datetime.fromisoformat(str(expiry).replace("Z", "+00:00"))
            except ValueError:
                return "order_expiry_time : must be an ISO 8601 time", "order_expiry_time_invalid"
            if when.tzinfo is None or when.timestamp() <= time.time():
                return "order_expiry_time : must be a time in the future with an offset", "order_expiry_time_invalid"
        meta = body.get("order_meta")
        if meta is not None and not isinstance(meta, dict):
            return "order_meta : must be an object", "order_meta_invalid"
        notify = (meta or {}).get("notify_url")
        if notify is not None and (not isinstance(notify, str) or len(notify) > 250 or not _loopback_or_https(notify)):
            return "order_meta.notify_url : must be an https URL of at most 250 characters", "notify_url_invalid"
        tags = body.get("order_tags")
        if tags is not None and (
            not isinstance(tags, dict)
            or len(tags) > 10
            or any(not isinstance(v, str) or not 1 <= len(v) <= 255 for v in tags.values())
        ):
            return "order_tags : at most 10 tags of 1 to 255 characters", "order_tags_invalid"
        return None

    def _refunds(self, method: str, order: dict[str, Any], rest: list[str], body: Any) -> Answer:
        if method == "GET" and not rest:
            return 200, [copy.deepcopy(r) for r in order["_refunds"].values()], {}
        if method == "GET" and len(rest) == 1:
            found = order["_refunds"].get(rest[0])
            if found is None:
                return 404, cf_error("refund does not exist", "refund_not_found"), {}
            return 200, copy.deepcopy(found), {}
        if method == "POST" and not rest:
            return self._create_refund(order, body)
        return 404, cf_error("bad URL, please check API documentation", "request_failed"), {}

    def _create_refund(self, order: dict[str, Any], body: Any) -> Answer:
        if not isinstance(body, dict):
            return 400, cf_error("request body is not valid JSON", "request_invalid"), {}
        refund_id = body.get("refund_id")
        if not isinstance(refund_id, str) or not REFUND_ID.fullmatch(refund_id):
            return 400, cf_error("refund_id : 3 to 40 alphanumeric characters", "refund_id_invalid"), {}
        if not _amount_ok(body.get("refund_amount"), Decimal("0.01")):
            return 400, cf_error("refund_amount : must be a positive amount", "refund_amount_invalid"), {}
        if not _note_ok(body.get("refund_note"), 100):
            return 400, cf_error("refund_note : should be 3 to 100 characters", "refund_note_invalid"), {}  # ours
        if refund_id in order["_refunds"]:
            return 409, cf_error("refund with this refund_id already exists", "refund_already_exists"), {}
        refused = self._unrefundable(order, body["refund_amount"])
        if refused is not None:
            return refused
        self.counters.refunds += 1
        outcome, hold_clears = self._next_outcome()
        return 200, self._new_refund(order, body, outcome, hold_clears=hold_clears), {}

    def _next_outcome(self) -> tuple[str, bool]:
        """The next scripted outcome (knob cashfree_refund_outcomes), else the standing one; a scripted
        ONHOLD clears to SUCCESS after refund_settle_s, the standing one waits to be settled by hand."""
        if self.refund_outcomes:
            return self.refund_outcomes.pop(0), True
        return self.refund_outcome, False

    def merchant_refund(self, order_id: str, amount_paise: Any) -> Answer:
        """A refund the merchant makes on the dashboard, under a refund_id of its choosing."""
        order = self.orders.get(order_id)
        if order is None:
            return 404, cf_error("order not found", "order_not_found"), {}
        if not isinstance(amount_paise, int) or isinstance(amount_paise, bool) or amount_paise <= 0:
            return 400, cf_error("refund_amount : must be a positive amount", "refund_amount_invalid"), {}
        body = {
            "refund_amount": float(Decimal(amount_paise) / 100),
            "refund_id": "dashboard_" + secrets.token_hex(8),
            "refund_note": "refund made on the dashboard",
        }
        refused = self._unrefundable(order, body["refund_amount"])
        if refused is not None:
            return refused
        self.counters.merchant_refunds += 1
        return 200, self._new_refund(order, body, self.refund_outcome, hold_clears=False), {}

    @staticmethod
    def _held_by_refunds(order: dict[str, Any]) -> Decimal:
        """What the order's refunds take from its payment: all but CANCELLED ones, whose amount is
        refundable again."""
        held = (_rupees(r["refund_amount"]) for r in order["_refunds"].values() if r["refund_status"] != "CANCELLED")
        return sum(held, Decimal(0))

    def _unrefundable(self, order: dict[str, Any], amount: Any) -> Answer | None:
        paid = self._paid(order)
        if order["order_status"] != "PAID" or paid is None:
            return 400, cf_error("order is not paid", "order_not_paid"), {}  # code: our wording
        if self._held_by_refunds(order) + _rupees(amount) > _rupees(paid["payment_amount"]):
            return 400, cf_error("refund_amount : greater than the amount left", "refund_amount_invalid"), {}
        return None

    @staticmethod
    def _paid(order: dict[str, Any]) -> dict[str, Any] | None:
        return next((p for p in order["_payments"] if p["payment_status"] == "SUCCESS"), None)

    def _new_refund(
        self, order: dict[str, Any], body: dict[str, Any], outcome: str, *, hold_clears: bool
    ) -> dict[str, Any]:
        paid = self._paid(order)
        assert paid is not None
        speed = body.get("refund_speed") or "STANDARD"
        refund_id = body["refund_id"]
        refund = {
            "cf_payment_id": paid["cf_payment_id"],
            "cf_refund_id": _digits(10),
            "order_id": order["order_id"],
            "refund_id": refund_id,
            "entity": "refund",
            "refund_amount": body["refund_amount"],
            "refund_currency": order["order_currency"],
            "refund_note": body.get("refund_note"),
            "refund_status": "PENDING",
            "refund_arn": None,
            "refund_charge": 0,
            "status_description": "In Progress",
            "metadata": None,
            "refund_splits": [],
            "refund_type": "MERCHANT_INITIATED",
            "refund_mode": speed,
            "created_at": _now_ist(),
            "processed_at": None,
            "refund_speed": {"requested": speed, "accepted": speed, "processed": None, "message": None},
        }
        order["_refunds"][refund_id] = refund
        oid, settle_s = order["order_id"], self.refund_settle_s

        def settle() -> None:
            if self.settle_refund(oid, refund_id, outcome) and outcome == "ONHOLD" and hold_clears:
                self._schedule(settle_s, lambda: self.settle_refund(oid, refund_id, "SUCCESS"))

        self._schedule(settle_s, settle)
        return copy.deepcopy(refund)

    def settle_refund(self, order_id: str, refund_id: str, outcome: str) -> bool:
        """PENDING (or ONHOLD) -> SUCCESS | CANCELLED | ONHOLD; a final status sends REFUND_STATUS_WEBHOOK."""
        order = self.orders.get(order_id)
        refund = (order or {}).get("_refunds", {}).get(refund_id)
        if refund is None or refund["refund_status"] not in ("PENDING", "ONHOLD"):
            return False
        if outcome not in ("SUCCESS", "CANCELLED", "ONHOLD") or outcome == refund["refund_status"]:
            return False
        refund["refund_status"] = outcome
        refund["status_description"] = {"SUCCESS": "Refund processed", "CANCELLED": "Refund cancelled"}.get(
            outcome, "Refund on hold"
        )
        if outcome == "SUCCESS":
            refund["processed_at"] = _now_ist()
            refund["refund_arn"] = "ARN" + _digits(10)
            refund["refund_speed"]["processed"] = refund["refund_speed"]["accepted"]
        assert order is not None
        if outcome != "ONHOLD":
            self._emit("REFUND_STATUS_WEBHOOK", {"refund": copy.deepcopy(refund)}, order["order_meta"]["notify_url"])
        return True

    # --- what the shopper does in Cashfree's checkout ---------------------------------------

    def _expire(self, order: dict[str, Any]) -> None:
        if order["order_status"] == "ACTIVE" and time.time() >= order["_expires"]:
            order["order_status"] = "EXPIRED"

    def checkout(self, order_id: str, outcome: str) -> Answer:
        order = self.orders.get(order_id)
        if order is None:
            return 404, cf_error("order not found", "order_not_found"), {}
        self._expire(order)
        if order["order_status"] != "ACTIVE":
            return 400, cf_error("Order is no longer active or has expired", "order_inactive"), {}
        status = {
            "success": "SUCCESS",
            "failed": "FAILED",
            "user_dropped": "USER_DROPPED",
            "pending": "PENDING",
            "not_attempted": "NOT_ATTEMPTED",
        }.get(outcome)
        if status is None:
            return (
                400,
                cf_error("outcome : success, failed, user_dropped, pending or not_attempted", "outcome_invalid"),
                {},
            )
        payment = self._attempt(order, status)
        return 200, {"order_id": order_id, "cf_payment_id": payment["cf_payment_id"], "payment_status": status}, {}

    def order_by_session(self, payment_session_id: str) -> dict[str, Any] | None:
        """The order a payment_session_id opens (what Cashfree's checkout is opened with), as it stands."""
        order = next((o for o in self.orders.values() if o["payment_session_id"] == payment_session_id), None)
        if order is not None:
            self._expire(order)
        return order

    def _attempt(self, order: dict[str, Any], status: str) -> dict[str, Any]:
        now = _now_ist()
        payment: dict[str, Any] = {
            "cf_payment_id": _digits(10),
            "order_id": order["order_id"],
            "entity": "payment",
            "error_details": None,
            "is_captured": status == "SUCCESS",
            "order_amount": order["order_amount"],
            "payment_group": "upi",
            "payment_currency": order["order_currency"],
            "payment_amount": order["order_amount"],
            "payment_time": now,
            "payment_completion_time": now if status in ("SUCCESS", "FAILED", "USER_DROPPED") else None,
            "payment_status": status,
            "payment_message": {"SUCCESS": "00::Transaction success"}.get(status, "Transaction not completed"),
            "bank_reference": _digits(12),
            "auth_id": None,
            "order_currency": order["order_currency"],
            "payment_method": {"upi": {"channel": "collect", "upi_id": "shopper@upi"}},
        }
        if status in ("FAILED", "USER_DROPPED"):
            payment["error_details"] = {
                "error_code": "TRANSACTION_DECLINED" if status == "FAILED" else "USER_DROPPED",
                "error_description": "transaction was declined" if status == "FAILED" else "user dropped",
                "error_reason": "bank_rejected" if status == "FAILED" else "user_dropped",
                "error_source": "bank" if status == "FAILED" else "customer",
            }
        order["_payments"].append(payment)
        if status == "SUCCESS":
            order["order_status"] = "PAID"
        self._webhook_for(order, payment)
        return payment

    def _webhook_for(self, order: dict[str, Any], payment: dict[str, Any]) -> None:
        kind = {
            "SUCCESS": "PAYMENT_SUCCESS_WEBHOOK",
            "FAILED": "PAYMENT_FAILED_WEBHOOK",
            "USER_DROPPED": "PAYMENT_USER_DROPPED_WEBHOOK",
        }.get(payment["payment_status"])
        if kind is None:
            return
        customer = order["customer_details"]
        data = {
            "order": {
                "order_id": order["order_id"],
                "order_amount": order["order_amount"],
                "order_currency": order["order_currency"],
                "order_tags": order["order_tags"],
            },
            "payment": {k: v for k, v in payment.items() if k not in ("order_id", "entity", "order_currency")},
            "customer_details": {
                "customer_name": customer["customer_name"],
                "customer_id": customer["customer_id"],
                "customer_email": customer["customer_email"],
                "customer_phone": customer["customer_phone"],
            },
            "payment_gateway_details": {
                "gateway_name": "CASHFREE",
                "gateway_order_id": order["cf_order_id"],
                "gateway_payment_id": payment["cf_payment_id"],
                "gateway_order_reference_id": None,
                "gateway_settlement": "CASHFREE",
                "gateway_status_code": None,
            },
        }
        if payment["error_details"] is not None:
            data["error_details"] = payment["error_details"]
        self._emit(kind, data, order["order_meta"]["notify_url"])

    def set_status(self, order_id: str, status: str) -> Answer:
        order = self.orders.get(order_id)
        if order is None:
            return 404, cf_error("order not found", "order_not_found"), {}
        if status not in ("EXPIRED", "TERMINATED", "TERMINATION_REQUESTED") or order["order_status"] == "PAID":
            return (
                400,
                cf_error(
                    "order_status : EXPIRED, TERMINATED or TERMINATION_REQUESTED of an unpaid order",
                    "order_status_invalid",
                ),
                {},
            )
        order["order_status"] = status
        return 200, self._public(order), {}

    def late_success(self, order_id: str) -> Answer:
        """Cashfree's payment lifecycle: an EXPIRED (or TERMINATION_REQUESTED) order can still turn PAID."""
        order = self.orders.get(order_id)
        if order is None:
            return 404, cf_error("order not found", "order_not_found"), {}
        self._expire(order)
        if order["order_status"] in ("PAID", "TERMINATED"):
            return 400, cf_error("order is paid or terminated", "order_inactive"), {}
        pending = next((p for p in order["_payments"] if p["payment_status"] == "PENDING"), None)
        if pending is None:
            payment = self._attempt(order, "SUCCESS")
        else:
            pending.update(payment_status="SUCCESS", is_captured=True, payment_completion_time=_now_ist())
            pending["payment_message"] = "00::Transaction success"
            order["order_status"] = "PAID"
            self._webhook_for(order, pending)
            payment = pending
        return 200, {"order": self._public(order), "payment": copy.deepcopy(payment)}, {}

    # --- what a restart keeps (local/gateway_sim_state.py) -------------------------------------

    def state(self) -> dict[str, Any]:
        # Idempotency entries are keyed by (endpoint key, idempotency key): a list, JSON having no tuple keys.
        entries = [[list(key), fingerprint, list(answer)] for key, (fingerprint, answer) in self._idempotency.items()]
        return {"orders": self.orders, "idempotency": entries}

    def load_state(self, state: dict[str, Any]) -> None:
        """The gateway's records as saved; a refund PENDING then settles as the standing outcome says."""
        self.orders = state["orders"]
        self._idempotency = {
            (key[0], key[1]): (fingerprint, (answer[0], answer[1], answer[2]))
            for key, fingerprint, answer in state["idempotency"]
        }
        for order_id, order in self.orders.items():
            for refund_id, refund in order["_refunds"].items():
                if refund["refund_status"] == "PENDING":
                    outcome = self.refund_outcome
                    settle = partial(self.settle_refund, order_id, refund_id, outcome)
                    self._schedule(self.refund_settle_s, settle)

    # --- the gateway's own record ------------------------------------------------------------

    def ledger(self) -> list[dict[str, Any]]:
        """One row per order with a SUCCESS payment (Cashfree captures on success), in paise."""
        rows = []
        for order in self.orders.values():
            paid = self._paid(order)
            if paid is None:
                continue
            done = [r for r in order["_refunds"].values() if r["refund_status"] == "SUCCESS"]
            pending = [r for r in order["_refunds"].values() if r["refund_status"] in ("PENDING", "ONHOLD")]
            amount = _paise(paid["payment_amount"])
            rows.append(
                {
                    "gateway": "cashfree",
                    "payment_ref": order["order_id"],
                    "gateway_order_id": order["order_id"],
                    "currency": order["order_currency"],
                    "authorized_paise": amount,
                    "captured_paise": amount,
                    "refunded_paise": sum(_paise(r["refund_amount"]) for r in done),
                    "refunding_paise": sum(_paise(r["refund_amount"]) for r in pending),
                    "released": False,  # no authorisation holds at Cashfree in this simulator
                }
            )
        return rows

    @staticmethod
    def _public(order: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in order.items() if not k.startswith("_")}

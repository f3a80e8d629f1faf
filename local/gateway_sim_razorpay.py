"""Razorpay's Orders, Payments and Refunds APIs as the simulator answers them (state and rules only).

Shapes and rules, from razorpay.com/docs/api:
- Orders (orders/create, orders/entity, orders/fetch-all): POST /v1/orders {amount (subunits, at
  least 100 for INR: "The amount must be at least INR 1.00"), currency, receipt ("maximum length of 40
  characters and has to be unique"), notes (at most 15 pairs of 256 characters)}; statuses created ->
  attempted (a payment was attempted) -> paid (a payment captured; "no further payment requests are
  permitted"). GET /v1/orders?receipt= filters by receipt, newest first, as a collection.
- Payments carry order_id. "Payments made without an order_id cannot be captured and are automatically
  refunded" (web-integration/standard/troubleshooting-faqs): capture refuses them here. Payment states
  created/authorized/captured/refunded/failed; a failed payment can be late-authorised for up to 3 days
  (payments/late-authorisation), and a late payment on an order already paid is refunded at once
  (payments/refunds/auto-refunds: "Duplicate payment on an order that is already in the paid state").
- Refunds only on captured payments; `pending` then `processed` or `failed`; amount_refunded and
  refund_status (partial/full) on the payment; speed `normal` or `optimum` (api/refunds/create-normal:
  "The selected speed is invalid."). X-Refund-Idempotency (refunds/normal-refunds-idempotent):
  at least 10 characters of letters, digits, - and _; the same key with the same body returns the same
  refund, a different body is refused: "Different request with the same idempotency key has already
  been processed."
- Each write takes only its documented fields: anything else is refused with "<fields> is/are not
  required and should not be sent" (the Errors of api/orders/create, api/payments/capture and
  api/refunds/create-normal; reason extra_field_sent in the Test S2S error index). Capture needs
  `currency` (api/payments/capture lists it as required).
- Auto-refunds (payments/refunds/auto-refunds): "Only payments in the authorized state can be
  auto-refunded" - a payment not captured within the capture timeout ("3 days by default"; knob
  auth_release_s here), and a late payment on a paid order. They create a refund entity like any other,
  always processed at normal speed, and send the refund.* webhooks with payment.captured false
  (webhooks/refunds: "Identify Auto-Refunds"); Razorpay has no payment.refunded event.
- Dashboard refunds (made by the merchant, not through our API) are refunds like any other to the API.
- Errors: {"error": {"code": "BAD_REQUEST_ERROR", "description", "source", "step", "reason",
  "metadata"[, "field"]}} with HTTP 400 (orders/fetch-with-id: "The id provided does not exist").
Descriptions the docs do not spell out are our wording and say so in a comment.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeGuard
from urllib.parse import parse_qs

from local.gateway_sim_currencies import ISO_4217
from shared.gateway_signatures import razorpay_checkout_signature

Answer = tuple[int, Any, dict[str, str]]
Emit = Callable[[str, dict[str, Any]], None]  # (event name, {"payment": entity, "order": entity, ...})

MIN_AMOUNT = 100  # subunits: INR 1.00
MAX_RECEIPT = 40
MAX_NOTES = 15
MAX_NOTE_CHARS = 256
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{10,}$")
ACCOUNT_ID = "acc_SimLocal00001"
# The request fields each write takes (api/orders/create, api/payments/capture, api/refunds/create-normal).
# The Orders API also documents partial_payment and first_payment_min_amount; the simulator does not model
# them, so they are refused like any extra field rather than accepted and ignored.
ORDER_FIELDS = frozenset({"amount", "currency", "receipt", "notes"})
CAPTURE_FIELDS = frozenset({"amount", "currency"})
REFUND_FIELDS = frozenset({"amount", "speed", "notes", "receipt"})
REFUND_SPEEDS = ("normal", "optimum")
REFUND_OUTCOMES = ("processed", "failed")


def rzp_error(
    description: str, *, field: str | None = None, reason: str = "NA", code: str = "BAD_REQUEST_ERROR"
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code,
        "description": description,
        "source": "business" if reason != "NA" else "NA",
        "step": "payment_initiation" if reason != "NA" else "NA",
        "reason": reason,
        "metadata": {},
    }
    if field:
        error["field"] = field
    return {"error": error}


def _bad(description: str, field: str | None = None) -> Answer:
    return 400, rzp_error(description, field=field, reason="input_validation_failed" if field else "NA"), {}


NOT_FOUND: Answer = (400, rzp_error("The id provided does not exist", reason="input_validation_failed"), {})


def _extra_fields(body: dict[str, Any], allowed: frozenset[str]) -> Answer | None:
    extra = [name for name in body if name not in allowed]
    if not extra:
        return None
    # Documented as "{any Extra field} is/are not required and should not be sent."; the real answer names
    # the fields joined by ", " and has no full stop ("account, amount is/are not required and should not
    # be sent", razorpay/razorpay-php#106).
    description = f"{', '.join(extra)} is/are not required and should not be sent"
    return 400, rzp_error(description, reason="extra_field_sent"), {}


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _rid(prefix: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(14))


def _fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class RazorpayCounters:
    orders_created: int = 0
    duplicate_receipts: int = 0
    captures: int = 0
    double_captures: int = 0
    captures_without_order: int = 0
    refunds: int = 0
    refunds_replayed: int = 0
    idempotency_conflicts: int = 0
    auto_refunds: int = 0  # a late payment on a paid order, refunded at once
    auth_releases: int = 0  # an authorisation left uncaptured past the capture timeout, refunded
    merchant_refunds: int = 0  # refunds made on the Dashboard, not through the API


class RazorpaySim:
    """Razorpay's state. Every method runs with the simulator's lock held."""

    def __init__(self, key_secret: str, emit: Emit, schedule: Callable[[float, Callable[[], object]], None]) -> None:
        self.key_secret = key_secret
        self._emit = emit
        self._schedule = schedule
        self.orders: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self._idempotency: dict[str, tuple[str, str]] = {}  # key -> (body fingerprint, refund id)
        self.counters = RazorpayCounters()
        # Knobs, set by the simulator from SimConfig before each request.
        self.auto_capture = False
        self.refund_outcome = "processed"
        self.refund_outcomes: list[str] = []  # the knob's own list: consumed, one per refund we request
        self.refund_settle_s = 0.2
        self.auth_release_s = 0.0  # 0: an uncaptured authorisation is never released

    # --- the REST API -----------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, headers: dict[str, str], body: Any) -> Answer:
        parts = path.strip("/").split("/")
        if parts[:1] != ["v1"] or len(parts) < 2:
            return 400, rzp_error("The requested URL was not found on the server."), {}
        resource, rest = parts[1], parts[2:]
        if resource == "orders":
            return self._orders(method, rest, query, body)
        if resource == "payments" and rest:
            return self._payments(method, rest, headers, body)
        if resource == "refunds" and len(rest) == 1 and method == "GET":
            found = self.refunds.get(rest[0])
            return (200, self._public(found), {}) if found else NOT_FOUND
        return 400, rzp_error("The requested URL was not found on the server."), {}

    def _orders(self, method: str, rest: list[str], query: str, body: Any) -> Answer:
        if method == "POST" and not rest:
            return self.create_order(body)
        if method == "GET" and not rest:
            params = parse_qs(query)
            items = sorted(self.orders.values(), key=lambda o: o["created_at"], reverse=True)
            if "receipt" in params:
                items = [o for o in items if o["receipt"] == params["receipt"][0]]
            skip = int(params.get("skip", ["0"])[0] or 0)
            count = min(100, int(params.get("count", ["10"])[0] or 10))
            page = [copy.deepcopy(o) for o in items[skip : skip + count]]
            return 200, {"entity": "collection", "count": len(page), "items": page}, {}
        order = self.orders.get(rest[0]) if rest else None
        if order is None:
            return NOT_FOUND
        if method == "GET" and len(rest) == 1:
            return 200, copy.deepcopy(order), {}
        if method == "GET" and rest[1:] == ["payments"]:
            items = [self._public(p) for p in self.payments.values() if p["order_id"] == order["id"]]
            return 200, {"entity": "collection", "count": len(items), "items": items}, {}
        return 400, rzp_error("The requested URL was not found on the server."), {}

    def create_order(self, body: Any) -> Answer:
        if not isinstance(body, dict):
            return _bad("The request body is not valid JSON")
        refused = _extra_fields(body, ORDER_FIELDS)
        if refused is not None:
            return refused
        amount, currency = body.get("amount"), body.get("currency")
        if not _is_int(amount):
            return _bad("The amount must be an integer.", "amount")
        if amount < MIN_AMOUNT:
            return _bad("The amount must be at least INR 1.00", "amount")
        if not isinstance(currency, str) or not currency:
            return _bad("The currency field is required.", "currency")  # our wording
        if currency not in ISO_4217:
            # Our wording (Razorpay's for an unsupported currency elsewhere, api/settlements/instant/create).
            return _bad("Currency is not supported.", "currency")
        receipt = body.get("receipt")
        if receipt is not None and (not isinstance(receipt, str) or len(receipt) > MAX_RECEIPT):
            return _bad("receipt may not be greater than 40 characters.", "receipt")  # our wording
        notes = body.get("notes") or {}
        if (
            not isinstance(notes, dict)
            or len(notes) > MAX_NOTES
            or any(not isinstance(v, str | int | float) or len(str(v)) > MAX_NOTE_CHARS for v in notes.values())
        ):
            return _bad("notes may have at most 15 keys of 256 characters each.", "notes")  # our wording
        if receipt is not None and any(o["receipt"] == receipt for o in self.orders.values()):
            # The docs say receipts "have to be unique" but not that a duplicate is refused; counted so a
            # test can prove the flow never creates a second order for one of ours.
            self.counters.duplicate_receipts += 1
        order: dict[str, Any] = {
            "id": _rid("order_"),
            "entity": "order",
            "amount": amount,
            "amount_paid": 0,
            "amount_due": amount,
            "currency": currency,
            "receipt": receipt,
            "offer_id": None,
            "status": "created",
            "attempts": 0,
            "notes": notes if notes else [],  # Razorpay answers [] for empty notes (orders/fetch-all sample)
            "created_at": int(time.time()),
        }
        self.orders[order["id"]] = order
        self.counters.orders_created += 1
        return 200, copy.deepcopy(order), {}

    def _payments(self, method: str, rest: list[str], headers: dict[str, str], body: Any) -> Answer:
        payment = self.payments.get(rest[0])
        if payment is None:
            return NOT_FOUND
        action = rest[1] if len(rest) > 1 else None
        if method == "GET" and action is None:
            return 200, self._public(payment), {}
        if method == "GET" and action == "refunds":
            if len(rest) == 3:
                found = self.refunds.get(rest[2])
                if found is None or found["payment_id"] != payment["id"]:
                    return NOT_FOUND
                return 200, self._public(found), {}
            items = [self._public(r) for r in self.refunds.values() if r["payment_id"] == payment["id"]]
            return 200, {"entity": "collection", "count": len(items), "items": items}, {}
        if method == "POST" and action == "capture":
            return self._capture(payment, body)
        if method == "POST" and action == "refund":
            return self._refund(payment, headers.get("x-refund-idempotency"), body)
        return 400, rzp_error("The requested URL was not found on the server."), {}

    def _capture(self, payment: dict[str, Any], body: Any) -> Answer:
        if not isinstance(body, dict):
            return _bad("The request body is not valid JSON")
        refused = _extra_fields(body, CAPTURE_FIELDS)
        if refused is not None:
            return refused
        if body.get("currency") is None:
            return _bad("The currency field is required.", "currency")  # required (api/payments/capture); our wording
        if payment["status"] == "captured":
            self.counters.double_captures += 1
            return _bad("This payment has already been captured")
        if payment["status"] != "authorized":
            return _bad("Only payments which have been authorized and not yet captured can be captured")
        if payment["order_id"] is None:
            # Razorpay FAQ: "Payments made without an order_id cannot be captured and are automatically
            # refunded". The exact description of this refusal is not published: our wording.
            self.counters.captures_without_order += 1
            return _bad("Payments made without an order_id cannot be captured")
        if body.get("amount") != payment["amount"] or body["currency"] != payment["currency"]:
            return _bad("Capture amount must be equal to the amount authorized", "amount")
        self._mark_captured(payment)
        return 200, self._public(payment), {}

    def _mark_captured(self, payment: dict[str, Any]) -> None:
        payment.update(status="captured", captured=True)
        self.counters.captures += 1
        order = self.orders[payment["order_id"]]
        order.update(status="paid", amount_paid=order["amount"], amount_due=0)
        self._emit("payment.captured", {"payment": self._public(payment)})
        self._emit("order.paid", {"payment": self._public(payment), "order": copy.deepcopy(order)})

    def _refund(self, payment: dict[str, Any], key: str | None, body: Any) -> Answer:
        if not isinstance(body, dict):
            return _bad("The request body is not valid JSON")
        refused = _extra_fields(body, REFUND_FIELDS)
        if refused is not None:
            return refused
        if "speed" in body and body["speed"] not in REFUND_SPEEDS:
            return _bad("The selected speed is invalid.", "speed")  # api/refunds/create-normal, Errors
        if key is not None:
            if not _IDEMPOTENCY_KEY.fullmatch(key):
                # Rule from refunds/normal-refunds-idempotent; the description is our wording.
                return _bad("The idempotency key must be at least 10 characters of letters, digits, - and _")
            fingerprint = _fingerprint({"payment": payment["id"], **body})
            seen = self._idempotency.get(key)
            if seen is not None:
                if seen[0] != fingerprint:
                    self.counters.idempotency_conflicts += 1
                    return _bad("Different request with the same idempotency key has already been processed.")
                self.counters.refunds_replayed += 1
                return 200, self._public(self.refunds[seen[1]]), {}
        amount = body.get("amount", payment["amount"] - payment["amount_refunded"])
        refused = self._unrefundable(payment, amount)
        if refused is not None:
            return refused
        self.counters.refunds += 1
        refund = self._new_refund(payment, amount, body, self._next_outcome())
        if key is not None:
            self._idempotency[key] = (_fingerprint({"payment": payment["id"], **body}), refund["id"])
        return 200, self._public(refund), {}

    @staticmethod
    def _unrefundable(payment: dict[str, Any], amount: Any) -> Answer | None:
        left = payment["amount"] - payment["amount_refunded"]
        if payment["status"] not in ("captured", "refunded") or not payment["captured"]:
            return _bad("The payment has not been captured")  # our wording (refunds: "only on captured payments")
        if left == 0:
            return _bad("The payment has been fully refunded already.")  # api/refunds/create-normal, Errors
        if not _is_int(amount) or amount <= 0 or amount > left:
            return _bad("The refund amount provided is greater than amount captured", "amount")  # our wording
        return None

    def _next_outcome(self) -> str:
        """The next scripted outcome (knob razorpay_refund_outcomes), else the standing one."""
        return self.refund_outcomes.pop(0) if self.refund_outcomes else self.refund_outcome

    def merchant_refund(self, payment_id: str, amount: Any) -> Answer:
        """A refund the merchant makes on the Dashboard: the API then reports it like one of ours."""
        payment = self.payments.get(payment_id)
        if payment is None:
            return NOT_FOUND
        refused = self._unrefundable(payment, amount)
        if refused is not None:
            return refused
        self.counters.merchant_refunds += 1
        refund = self._new_refund(payment, amount, {}, self.refund_outcome)
        return 200, self._public(refund), {}

    def _new_refund(self, payment: dict[str, Any], amount: int, body: dict[str, Any], outcome: str) -> dict[str, Any]:
        refund: dict[str, Any] = {
            "id": _rid("rfnd_"),
            "entity": "refund",
            "amount": amount,
            "currency": payment["currency"],
            "payment_id": payment["id"],
            "notes": body.get("notes") or [],
            "receipt": body.get("receipt"),
            "acquirer_data": {"arn": None},
            "created_at": int(time.time()),
            "batch_id": None,
            "status": "pending",
            "speed_processed": "normal",
            "speed_requested": body.get("speed", "normal"),
        }
        self.refunds[refund["id"]] = refund
        payment["amount_refunded"] += amount
        self._refund_state(payment)
        self._emit("refund.created", {"refund": self._public(refund), "payment": self._public(payment)})
        self._schedule(self.refund_settle_s, lambda: self.settle_refund(refund["id"], outcome))
        return refund

    @staticmethod
    def _refund_state(payment: dict[str, Any]) -> None:
        refunded = payment["amount_refunded"]
        full = refunded == payment["amount"]
        payment["refund_status"] = None if refunded == 0 else ("full" if full else "partial")
        if payment["captured"]:
            payment["status"] = "refunded" if full else "captured"
        elif full:
            payment["status"] = "refunded"  # an auto-refund of an authorisation never captured

    def settle_refund(self, refund_id: str, outcome: str) -> bool:
        """pending -> processed | failed (a failed refund gives its amount back to the payment)."""
        refund = self.refunds.get(refund_id)
        if refund is None or refund["status"] != "pending" or outcome not in ("processed", "failed"):
            return False
        refund["status"] = outcome
        payment = self.payments[refund["payment_id"]]
        if outcome == "processed":
            refund["acquirer_data"] = {"arn": "ARN" + secrets.token_hex(6).upper()}
        else:
            payment["amount_refunded"] -= refund["amount"]
            self._refund_state(payment)
        self._emit(f"refund.{outcome}", {"refund": self._public(refund), "payment": self._public(payment)})
        return True

    # --- what the shopper does in Razorpay Checkout -----------------------------------------

    def new_payment(self, amount: int, currency: str, order_id: str | None, status: str) -> dict[str, Any]:
        payment: dict[str, Any] = {
            "id": _rid("pay_"),
            "entity": "payment",
            "amount": amount,
            "currency": currency,
            "status": status,
            "order_id": order_id,
            "invoice_id": None,
            "international": False,
            "method": "upi",
            "amount_refunded": 0,
            "refund_status": None,
            "captured": status == "captured",
            "description": None,
            "card_id": None,
            "bank": None,
            "wallet": None,
            "vpa": "shopper@upi",
            "email": "shopper@example.com",
            "contact": "+919999999999",
            "notes": [],
            "fee": None,
            "tax": None,
            "error_code": None,
            "error_description": None,
            "error_source": None,
            "error_step": None,
            "error_reason": None,
            "acquirer_data": {"rrn": secrets.token_hex(6)},
            "created_at": int(time.time()),
        }
        if status == "failed":
            payment.update(self._failure())
        self.payments[payment["id"]] = payment
        if status == "authorized":
            self._start_capture_timeout(payment)
        return payment

    def _start_capture_timeout(self, payment: dict[str, Any]) -> None:
        if self.auth_release_s > 0:
            payment_id = payment["id"]
            self._schedule(self.auth_release_s, lambda: self.release_authorization(payment_id))

    def release_authorization(self, payment_id: str) -> bool:
        """Past the capture timeout an authorized payment is auto-refunded; a captured one never is."""
        payment = self.payments.get(payment_id)
        if payment is None or payment["status"] != "authorized" or payment["captured"]:
            return False
        self.counters.auth_releases += 1
        self._auto_refund(payment)
        return True

    def _auto_refund(self, payment: dict[str, Any]) -> dict[str, Any]:
        # Auto-refunds are always processed at normal speed (payments/refunds/auto-refunds); the simulator
        # does not fail them, whatever the refund outcome knobs say (those script refunds we request).
        return self._new_refund(payment, payment["amount"] - payment["amount_refunded"], {}, "processed")

    @staticmethod
    def _failure() -> dict[str, Any]:
        return {
            "error_code": "BAD_REQUEST_ERROR",
            "error_description": "Payment failed because the transaction was declined by the bank.",
            "error_source": "bank",
            "error_step": "payment_authorization",
            "error_reason": "payment_failed",
        }

    def checkout(self, order_id: str, outcome: str) -> Answer:
        """The shopper pays (or fails to pay) an order; returns what Checkout hands the page."""
        order = self.orders.get(order_id)
        if order is None:
            return NOT_FOUND
        if order["status"] == "paid":
            return _bad("Order has already been paid")  # our wording: a paid order takes no payment
        if outcome not in ("success", "failed"):
            return _bad("outcome must be success or failed", "outcome")
        status = "authorized" if outcome == "success" else "failed"
        payment = self.new_payment(order["amount"], order["currency"], order_id, status)
        order["attempts"] += 1
        order["status"] = "attempted"
        if outcome == "failed":
            self._emit("payment.failed", {"payment": self._public(payment)})
            error = rzp_error(payment["error_description"], reason="payment_failed")["error"]
            error["metadata"] = {"order_id": order_id, "payment_id": payment["id"]}
            return 200, {"razorpay_payment_id": payment["id"], "razorpay_order_id": order_id, "error": error}, {}
        self._authorized(payment)
        signature = razorpay_checkout_signature(order_id, payment["id"], self.key_secret)
        return (
            200,
            {"razorpay_payment_id": payment["id"], "razorpay_order_id": order_id, "razorpay_signature": signature},
            {},
        )

    def _authorized(self, payment: dict[str, Any]) -> None:
        self._emit("payment.authorized", {"payment": self._public(payment)})
        if self.auto_capture:
            self._mark_captured(payment)

    def late_authorize(self, payment_id: str) -> Answer:
        """A failed payment authorised later (the bank answered late); refunded at once on a paid order."""
        payment = self.payments.get(payment_id)
        if payment is None:
            return NOT_FOUND
        if payment["status"] != "failed":
            return _bad("Only a failed payment can be late-authorised")
        payment.update(status="authorized", late_authorized=True)
        payment.update({k: None for k in self._failure()})
        order = self.orders.get(payment["order_id"] or "")
        if order is not None and order["status"] == "paid":
            self._emit("payment.authorized", {"payment": self._public(payment)})
            self.counters.auto_refunds += 1
            refund = self._auto_refund(payment)
            return 200, {"payment": self._public(payment), "auto_refund": self._public(refund)}, {}
        self._start_capture_timeout(payment)
        self._authorized(payment)
        return 200, {"payment": self._public(payment)}, {}

    # --- what a restart keeps (local/gateway_sim_state.py) -------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "payments": self.payments,
            "refunds": self.refunds,
            "idempotency": {key: list(value) for key, value in self._idempotency.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """The gateway's records as saved; a refund pending then settles as the standing outcome says."""
        self.orders, self.payments, self.refunds = state["orders"], state["payments"], state["refunds"]
        self._idempotency = {key: (value[0], value[1]) for key, value in state["idempotency"].items()}
        for refund_id, refund in self.refunds.items():
            if refund["status"] == "pending":
                outcome = self.refund_outcome
                self._schedule(self.refund_settle_s, partial(self.settle_refund, refund_id, outcome))

    # --- the gateway's own record ------------------------------------------------------------

    def ledger(self) -> list[dict[str, Any]]:
        """One row per payment ever authorized (failed and created ones moved no money), in paise."""
        by_payment: dict[str, list[dict[str, Any]]] = {}
        for refund in self.refunds.values():
            by_payment.setdefault(refund["payment_id"], []).append(refund)
        rows = []
        for payment in self.payments.values():
            if payment["status"] in ("created", "failed"):
                continue
            refunds = by_payment.get(payment["id"], [])
            rows.append(
                {
                    "gateway": "razorpay",
                    "payment_ref": payment["id"],
                    "gateway_order_id": payment["order_id"],
                    "currency": payment["currency"],
                    "authorized_paise": payment["amount"],
                    "captured_paise": payment["amount"] if payment["captured"] else 0,
                    "refunded_paise": sum(r["amount"] for r in refunds if r["status"] == "processed"),
                    "refunding_paise": sum(r["amount"] for r in refunds if r["status"] == "pending"),
                    # Only an auto-refund refunds a payment never captured (the API refuses to).
                    "released": not payment["captured"] and any(r["status"] != "failed" for r in refunds),
                }
            )
        return rows

    @staticmethod
    def _public(entity: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(entity)

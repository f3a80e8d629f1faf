"""Gateway checkouts (POST /v1/checkouts, GET /v1/checkouts/{id}): the gateway order for one of our
orders, created by us for its exact amount and bound to the order and the shopper.

    open (one round trip: the live checkout, or a new one with our merchant_ref)
      existing -> answer it (200)
      claimed  -> another request is making the create call: look again shortly, up to checkout_wait_s,
                  then its answer (200) or 503 service_busy + Retry-After
      pending  -> token -> create at the gateway (no transaction open) -> bind (one round trip) -> 201

Only the request holding the claim (pq_checkout_open, for as long as its calls can take) calls the
gateway: two concurrent requests make one gateway order. A create call whose answer was lost leaves the
checkout "creating", its claim let go: the next request settles it by looking the order up first
(the gateway package's create_order, told the call is retried), never by creating a second one blindly. A
request refused before the gateway could make an order (no token from the shared limiter, or the create
refused, a 429 included) deletes the checkout it opened: 503 service_busy + Retry-After (or 502), and
nothing recorded.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from typing import Any

from shared.bootstrap import App
from shared.domain import ApiError, CheckoutRequest, GatewayRejected, GatewayRetryable
from shared.gateway_limits import bucket
from shared.gateways.port import CheckoutOrder
from shared.observability import logger
from shared.outcomes import CheckoutOutcome
from shared.ports import GatewayOrder
from shared.services.intake import enabled_gateway

# What a shopper's checkout is called when it has no gateway order yet (never answered as such).
_VISIBLE_STATUS = {"creating": "created"}
# Besides its two gateway calls, what a checkout request's claim on the create call allows for its DB
# steps: the same 2 s infra/components/functions.py leaves beside them in enqueue's timeout, so that in
# AWS a claim lapses only once its claimant can no longer be running.
_CLAIM_DB_STEPS_S = 2.0
# How often a request waiting for another's create call looks again: a create answers in a few hundred
# milliseconds, and each look is one short transaction.
_CLAIM_POLL_S = 0.1


def token_wait_ms(app: App, gateway: str, endpoint: str) -> int | None:
    """A token of the gateway endpoint's shared bucket taken (None), or how long until one is (ms)."""
    name, rate, burst = bucket(app.settings, gateway, endpoint)
    row = app.db.fetch_one("SELECT * FROM pq_take_tokens(%s, %s, %s, 1)", (name, rate, burst))
    assert row is not None
    return None if row["granted"] else int(row["wait_ms"])


def take_token(app: App, gateway: str, endpoint: str) -> None:
    """One token of the gateway endpoint's shared bucket, or 503 service_busy with Retry-After."""
    wait_ms = token_wait_ms(app, gateway, endpoint)
    if wait_ms is not None:
        raise ApiError(
            503,
            "service_busy",
            "the payment gateway is busy; retry shortly with the same request",
            retry_after_s=max(1, math.ceil(wait_ms / 1000)),
        )


def customer_id(user_id: str) -> str:
    """The shopper at the gateway (3-50 alphanumerics, Cashfree's customer_id): stable, and no user id
    leaves us as is."""
    return "pq" + hashlib.sha256(user_id.encode()).hexdigest()[:40]


def checkout_view(app: App, row: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "checkout_id": str(row["id"]),
        "order_id": row["order_id"],
        "method": row["method"],
        "amount_paise": row["amount_paise"],
        "currency": row["currency"].strip(),
        "status": _VISIBLE_STATUS.get(row["status"], row["status"]),
    }
    gateway = app.gateways.get(row["method"])
    if gateway is not None:  # what the page opens the gateway's checkout with (none once it is disabled)
        view[row["method"]] = gateway.page(row["gateway_order_id"], row["payment_session_id"])
    if row.get("job_id"):
        view["job_id"] = str(row["job_id"])
        if row["status"] == "refunded":  # the books say how far the money got back: refunding, refund_failed
            refund = app.db.fetch_one(
                "SELECT r.status FROM payment_jobs j, pq_refund_status(j.method, j.gateway_ref) r WHERE j.id = %s",
                (row["job_id"],),
            )
            if refund is not None and refund["status"] is not None:
                view["status"] = refund["status"]
    return view


def _gateway_error(exc: GatewayRetryable | GatewayRejected) -> ApiError:
    if isinstance(exc, GatewayRetryable):
        wait = exc.retry_after_s if exc.retry_after_s else 1
        return ApiError(
            503,
            "service_busy",
            "the payment gateway did not answer; retry shortly with the same request",
            retry_after_s=max(1, math.ceil(wait)),
        )
    return ApiError(502, "gateway_error", "the payment gateway refused to create the order")


def _open(app: App, user_id: str, request: CheckoutRequest) -> dict[str, Any]:
    """pq_checkout_open, claiming the create call for as long as this request can be making it: a
    lookup and a create of gateway_timeout_s each, and its DB steps."""
    claim_s = 2 * app.settings.gateway_timeout_s + _CLAIM_DB_STEPS_S
    row = app.db.fetch_one(
        "SELECT outcome, reason, inserted, (checkout).* FROM pq_checkout_open(%s, %s, %s, %s, %s)",
        (user_id, request.order_id, request.method, float(app.settings.checkout_ttl_s), claim_s),
    )
    assert row is not None
    return row


def _open_or_wait(app: App, user_id: str, request: CheckoutRequest) -> dict[str, Any]:
    """The checkout as pq_checkout_open answers it, once no other request is making its create call
    (each look its own short transaction: nothing is held while waiting)."""
    deadline = time.monotonic() + app.settings.checkout_wait_s
    while True:
        row = _open(app, user_id, request)
        if CheckoutOutcome(row["outcome"]) is not CheckoutOutcome.CLAIMED:
            return row
        if time.monotonic() + _CLAIM_POLL_S > deadline:
            # The claimant is most likely about to answer; a retry that finds it still busy waits again.
            raise ApiError(
                503,
                "service_busy",
                "this checkout's gateway order is being created; retry shortly with the same request",
                retry_after_s=1,
            )
        time.sleep(_CLAIM_POLL_S)


def _create_or_unclaim(app: App, row: dict[str, Any], method: str) -> GatewayOrder:
    """The claimed create call. Ending without an order, the claim is let go (an order may exist: the
    next request looks it up) or, when this request opened the checkout and the gateway certainly made
    no order, the checkout is deleted (pq_checkout_unclaimed)."""
    inserted = bool(row["inserted"])
    checkout = CheckoutOrder(
        checkout_id=str(row["id"]),
        order_id=row["order_id"],
        merchant_ref=row["merchant_ref"],
        amount_paise=row["amount_paise"],
        currency=row["currency"].strip(),
        customer_id=customer_id(row["user_id"]),
        expires_at=row["expires_at"],
    )
    try:
        return enabled_gateway(app, method).create_order(
            checkout, not inserted, lambda endpoint: take_token(app, method, endpoint)
        )
    except ApiError:  # no token: nothing left for the gateway
        _unclaim(app, row, discard=inserted)
        raise
    except (GatewayRetryable, GatewayRejected) as exc:
        # A 4xx refuses the order as sent; a 429 is the gateway's rate limiter turning the request away
        # unprocessed, to be retried (Razorpay api/pagination "Rate Limiter"; Cashfree api-reference/rate-limits).
        refused = isinstance(exc, GatewayRejected) or exc.kind == "throttled"
        _unclaim(app, row, discard=inserted and refused)
        logger.warning("checkout create not answered", checkout_id=str(row["id"]), gateway=method, error=str(exc))
        raise _gateway_error(exc) from None


def _unclaim(app: App, row: dict[str, Any], *, discard: bool) -> None:
    app.db.execute("SELECT pq_checkout_unclaimed(%s, %s, %s)", (row["id"], row["create_claimed_until"], discard))


def open_checkout(app: App, user_id: str, request: CheckoutRequest) -> tuple[int, dict[str, Any]]:
    """(201, view) when this request created the gateway order, (200, view) when it existed."""
    enabled_gateway(app, request.method)
    row = _open_or_wait(app, user_id, request)
    outcome = CheckoutOutcome(row["outcome"])
    if outcome is CheckoutOutcome.ORDER_NOT_FOUND:
        raise ApiError(404, "order_not_found", "no such order for this user")
    if outcome is CheckoutOutcome.ORDER_NOT_PAYABLE:
        raise ApiError(409, "order_not_payable", f"order is {row['reason']}", order_status=row["reason"])
    if outcome is CheckoutOutcome.EXISTING:
        return 200, checkout_view(app, row)

    order = _create_or_unclaim(app, row, request.method)
    bound = app.db.fetch_one(
        "SELECT outcome, (checkout).* FROM pq_checkout_created(%s, %s, %s, %s, %s)",
        (row["id"], order.order_id, order.payment_session_id, order.amount_paise, order.currency),
    )
    assert bound is not None
    bound_outcome = CheckoutOutcome(bound["outcome"])
    if bound_outcome is CheckoutOutcome.GATEWAY_ORDER_MISMATCH:
        logger.error("gateway order does not match its checkout", checkout_id=str(row["id"]), gateway=request.method)
        raise ApiError(502, "gateway_error", "the payment gateway answered an order that is not ours")
    logger.info("checkout created", checkout_id=str(row["id"]), gateway=request.method, order_id=request.order_id)
    return (201 if bound_outcome is CheckoutOutcome.CREATED else 200), checkout_view(app, bound)


def get_checkout(app: App, user_id: str, checkout_id: str) -> dict[str, Any]:
    try:
        checkout_uuid = uuid.UUID(checkout_id)
    except ValueError:
        raise ApiError(404, "checkout_not_found", "no such checkout") from None
    row = app.db.fetch_one("SELECT * FROM gateway_checkouts WHERE id = %s AND user_id = %s", (checkout_uuid, user_id))
    if row is None:  # someone else's checkout looks exactly like a missing one
        raise ApiError(404, "checkout_not_found", "no such checkout")
    return checkout_view(app, row)

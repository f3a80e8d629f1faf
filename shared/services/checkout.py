"""Gateway checkouts (POST /v1/checkouts, GET /v1/checkouts/{id}): the gateway order for one of our
orders, created by us for its exact amount and bound to the order and the shopper -- at the gateway the
request names, or, routed ("method": "auto", or a list in order of preference), at the first one that is up
and has a token.

    route (one round trip, pq_checkout_for_order: the order's live checkout at the first allowed gateway
           that is up, or a new one with our merchant_ref at the first allowed gateway holding none whose
           circuit lets a call through, its create token taken)
      existing       -> answer it (200)
      sold_out       -> 409 sold_out: a product has no unit left and no page was given a live checkout
      unavailable    -> 503 with Retry-After: service_busy (no token), gateway_unavailable (the one gateway
                        asked for is down), gateways_unavailable (every gateway asked for is down or busy)
      claimed        -> another request is making the create call: look again shortly, up to checkout_wait_s,
                        then its answer (200) or 503 service_busy + Retry-After
      pending        -> create at the gateway (no transaction open) -> bind (one round trip) -> 201

Only the request holding the claim (pq_checkout_for_order, for as long as its calls can take) calls the gateway:
two concurrent requests make one gateway order. A create call whose answer was lost leaves the checkout
"creating", its claim let go: the next request settles it by looking the order up first (the gateway
package's create_order, told the call is retried), never by creating a second one blindly. A request refused
before the gateway could make an order (no token from the shared limiter, or the create refused, a 429
included) deletes the checkout it opened: 503 service_busy + Retry-After (or 502), and nothing recorded.

A gateway that does not answer (a 5xx or a timeout) counts against its circuit (shared/sql/circuits.sql:
gateway_circuit_failures in a row open it; after gateway_circuit_cooldown_s one trial call goes, and an answer
closes it). A routed request whose gateway did not answer lets its checkout go -- no page was given its
gateway order, so nobody can pay it -- and moves on to the next gateway it allows, in the same request. One
that named its gateway is answered 503 gateway_unavailable at once while the circuit is open (but for a
checkout there its page was given, answered as it is): the page may ask again with "auto". A checkout the page
was given is never moved or cancelled (a Razorpay order cannot be: razorpay.com/docs/payments/orders, order
states); an order may hold a live one at each gateway, as a shopper who closes one gateway's window and picks
another does, and the second payment to reach the order is refunded in full (shared/services/gateway.py). A
routed request answers the live checkout at a gateway that is up; while that gateway's circuit is open it
opens one at the next gateway allowed.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from typing import Any, Protocol

from shared.domain import ANY_GATEWAY, CheckoutRequest, GatewayRejected, GatewayRetryable
from shared.errors import (
    DomainError,
    GatewayFailed,
    NoGatewayToken,
    NotFound,
    Unavailable,
    gateway_busy,
    order_not_found,
    order_not_payable,
    sold_out,
)
from shared.gateway_limits import bucket
from shared.gateways.port import CheckoutOrder, Token
from shared.observability import logger
from shared.outcomes import CheckoutOutcome
from shared.ports import GatewayOrder, HasDb, HasGateways, HasSettings
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


class TokenDeps(HasDb, HasSettings, Protocol):
    """What taking a gateway token uses: the buckets' table, and their rates from the settings."""


class CheckoutDeps(HasDb, HasSettings, HasGateways, Protocol):
    """What a checkout uses: the books, the gateways enabled, and the checkout and circuit settings."""


def token_wait_ms(deps: TokenDeps, gateway: str, endpoint: str) -> int | None:
    """A token of the gateway endpoint's shared bucket taken (None), or how long until one is (ms)."""
    name, rate, burst = bucket(deps.settings, gateway, endpoint)
    row = deps.db.fetch_one("SELECT * FROM pq_take_tokens(%s, %s, %s, 1)", (name, rate, burst))
    assert row is not None
    return None if row["granted"] else int(row["wait_ms"])


def take_token(deps: TokenDeps, gateway: str, endpoint: str) -> None:
    """One token of the gateway endpoint's shared bucket, or NoGatewayToken: service_busy, with when to retry."""
    wait_ms = token_wait_ms(deps, gateway, endpoint)
    if wait_ms is not None:
        raise gateway_busy(max(1, math.ceil(wait_ms / 1000)))


def customer_id(user_id: str) -> str:
    """The shopper at the gateway (3-50 alphanumerics, Cashfree's customer_id): stable, and no user id
    leaves us as is."""
    return "pq" + hashlib.sha256(user_id.encode()).hexdigest()[:40]


def checkout_view(deps: CheckoutDeps, row: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "checkout_id": str(row["id"]),
        "order_id": row["order_id"],
        "method": row["method"],
        "amount_paise": row["amount_paise"],
        "currency": row["currency"].strip(),
        "status": _VISIBLE_STATUS.get(row["status"], row["status"]),
    }
    gateway = deps.gateways.get(row["method"])
    if gateway is not None:  # what the page opens the gateway's checkout with (none once it is disabled)
        view[row["method"]] = gateway.page(row["gateway_order_id"], row["payment_session_id"])
    if row.get("job_id"):
        view["job_id"] = str(row["job_id"])
        if row["status"] == "refunded":  # the books say how far the money got back: refunding, refund_failed
            refund = deps.db.fetch_one(
                "SELECT r.status FROM payment_jobs j, pq_refund_status(j.method, j.gateway_ref) r WHERE j.id = %s",
                (row["job_id"],),
            )
            if refund is not None and refund["status"] is not None:
                view["status"] = refund["status"]
    return view


def _gateway_error(exc: GatewayRetryable | GatewayRejected) -> DomainError:
    if isinstance(exc, GatewayRetryable):
        wait = exc.retry_after_s if exc.retry_after_s else 1
        return Unavailable(
            "service_busy",
            "the payment gateway did not answer; retry shortly with the same request",
            retry_after_s=max(1, math.ceil(wait)),
        )
    return GatewayFailed("gateway_error", "the payment gateway refused to create the order")


def _methods(deps: HasGateways, method: str | tuple[str, ...]) -> tuple[str, ...]:
    """The enabled gateways the request allows, in its order of preference ("auto": the registry's), or
    method_not_supported when it allows none."""
    if method == ANY_GATEWAY:
        wanted: tuple[str, ...] = tuple(deps.gateways)
    else:
        wanted = (method,) if isinstance(method, str) else method
    enabled = tuple(name for name in wanted if name in deps.gateways)
    if not enabled:
        enabled_gateway(deps, wanted[0] if wanted else ANY_GATEWAY)  # raises: none of them is enabled
    return enabled


def _route(deps: CheckoutDeps, user_id: str, order_id: int, methods: tuple[str, ...]) -> dict[str, Any]:
    """pq_checkout_for_order, claiming the create call for as long as this request can be making it: a lookup and
    a create of gateway_timeout_s each, and its DB steps. Each gateway comes with its create bucket, whose
    token a new checkout takes there, in the same round trip."""
    settings = deps.settings
    claim_s = 2 * settings.gateway_timeout_s + _CLAIM_DB_STEPS_S
    buckets = [bucket(settings, name, deps.gateways[name].endpoints["create"]) for name in methods]
    row = deps.db.fetch_one(
        """SELECT outcome, reason, inserted, retry_ms, circuits, sold_out, (checkout).*
             FROM pq_checkout_for_order(%s, %s, %s, %s, %s, %s, %s, %s, %s, true)""",
        (
            user_id,
            order_id,
            list(methods),
            float(settings.checkout_ttl_s),
            claim_s,
            [name for name, _, _ in buckets],
            [rate for _, rate, _ in buckets],
            [burst for _, _, burst in buckets],
            settings.gateway_circuit_cooldown_s,
        ),
    )
    assert row is not None
    return row


def _route_or_wait(deps: CheckoutDeps, user_id: str, order_id: int, methods: tuple[str, ...]) -> dict[str, Any]:
    """The checkout as pq_checkout_for_order answers it, once no other request is making its create call
    (each look its own short transaction: nothing is held while waiting)."""
    deadline = time.monotonic() + deps.settings.checkout_wait_s
    while True:
        row = _route(deps, user_id, order_id, methods)
        if CheckoutOutcome(row["outcome"]) is not CheckoutOutcome.CLAIMED:
            return row
        if time.monotonic() + _CLAIM_POLL_S > deadline:
            # The claimant is most likely about to answer; a retry that finds it still busy waits again.
            raise Unavailable(
                "service_busy",
                "this checkout's gateway order is being created; retry shortly with the same request",
                retry_after_s=1,
            )
        time.sleep(_CLAIM_POLL_S)


def _unavailable(row: dict[str, Any], methods: tuple[str, ...]) -> Unavailable:
    """A request none of whose gateways can be called now, with when the first one may be."""
    retry_after_s = max(1, math.ceil((row["retry_ms"] or 0) / 1000))
    if not row["circuits"]:  # each one only out of tokens: busy, as a single gateway always was
        return gateway_busy(retry_after_s)
    if len(methods) == 1:
        return Unavailable(
            "gateway_unavailable",
            'the payment gateway is not answering; retry later, or ask for another ("method": "auto")',
            retry_after_s=retry_after_s,
            method=methods[0],
        )
    return Unavailable(
        "gateways_unavailable",
        "no payment gateway can take the order now; retry shortly",
        retry_after_s=retry_after_s,
    )


def _token(deps: TokenDeps, method: str, taken: str | None) -> Token:
    """take_token for each request of the create call, but the first one from the endpoint whose token
    pq_checkout_for_order took already (taken)."""
    spare = [taken]

    def token(endpoint: str) -> None:
        if endpoint == spare[0]:
            spare[0] = None
            return
        take_token(deps, method, endpoint)

    return token


def _create_or_unclaim(deps: CheckoutDeps, row: dict[str, Any], *, may_move_on: bool) -> GatewayOrder | None:
    """The claimed create call. Ending without an order, the claim is let go (an order may exist: the
    next request looks it up) or, when this request opened the checkout and the gateway certainly made
    no order, the checkout is deleted (pq_checkout_unclaimed), which also tells the gateway's circuit how
    the call went. None: the gateway did not answer and the request may move on to another gateway
    (may_move_on): the checkout is deleted -- its gateway order, if the gateway made one, was never given
    to a page."""
    inserted = bool(row["inserted"])
    method = row["method"]
    gateway = enabled_gateway(deps, method)
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
        return gateway.create_order(
            checkout, not inserted, _token(deps, method, gateway.endpoints["create"] if inserted else None)
        )
    except NoGatewayToken:  # no token for the lookup: nothing left for the gateway
        _unclaim(deps, row, discard=inserted, gateway_failed=None)
        raise
    except GatewayRejected as exc:  # the gateway answered: it is up, and refuses the order as sent
        _unclaim(deps, row, discard=inserted, gateway_failed=False)
        logger.warning("checkout create refused", checkout_id=str(row["id"]), gateway=method, error=str(exc))
        raise _gateway_error(exc) from None
    except GatewayRetryable as exc:
        # A 429 is the gateway's rate limiter turning the request away unprocessed, to be retried (Razorpay
        # api/pagination "Rate Limiter"; Cashfree api-reference/rate-limits): it says nothing of an outage.
        throttled = exc.kind == "throttled"
        _unclaim(deps, row, discard=may_move_on or (inserted and throttled), gateway_failed=None if throttled else True)
        logger.warning(
            "checkout create not answered",
            checkout_id=str(row["id"]),
            gateway=method,
            error=str(exc),
            moving_on=may_move_on,
        )
        if may_move_on:
            return None
        raise _gateway_error(exc) from None


def _unclaim(deps: TokenDeps, row: dict[str, Any], *, discard: bool, gateway_failed: bool | None) -> None:
    deps.db.execute(
        "SELECT pq_checkout_unclaimed(%s, %s, %s, %s, %s)",
        (row["id"], row["create_claimed_until"], discard, gateway_failed, deps.settings.gateway_circuit_failures),
    )


def open_checkout(deps: CheckoutDeps, user_id: str, request: CheckoutRequest) -> tuple[int, dict[str, Any]]:
    """(201, view) when this request created the gateway order, (200, view) when it existed. The view's
    method is the gateway chosen."""
    methods = _methods(deps, request.method)
    while True:
        row = _route_or_wait(deps, user_id, request.order_id, methods)
        outcome = CheckoutOutcome(row["outcome"])
        if outcome is CheckoutOutcome.ORDER_NOT_FOUND:
            raise order_not_found()
        if outcome is CheckoutOutcome.ORDER_NOT_PAYABLE:
            raise order_not_payable(row["reason"])
        if outcome is CheckoutOutcome.SOLD_OUT:
            raise sold_out([int(p) for p in row["sold_out"]])
        if outcome is CheckoutOutcome.EXISTING:
            return 200, checkout_view(deps, row)
        if outcome is CheckoutOutcome.UNAVAILABLE:
            raise _unavailable(row, methods)
        order = _create_or_unclaim(deps, row, may_move_on=len(methods) > 1)
        if order is not None:
            return _bind(deps, row, order)
        methods = tuple(name for name in methods if name != row["method"])


def _bind(deps: CheckoutDeps, row: dict[str, Any], order: GatewayOrder) -> tuple[int, dict[str, Any]]:
    bound = deps.db.fetch_one(
        "SELECT outcome, (checkout).* FROM pq_checkout_created(%s, %s, %s, %s, %s)",
        (row["id"], order.order_id, order.payment_session_id, order.amount_paise, order.currency),
    )
    assert bound is not None
    bound_outcome = CheckoutOutcome(bound["outcome"])
    if bound_outcome is CheckoutOutcome.GATEWAY_ORDER_MISMATCH:
        logger.error("gateway order does not match its checkout", checkout_id=str(row["id"]), gateway=row["method"])
        raise GatewayFailed("gateway_error", "the payment gateway answered an order that is not ours")
    logger.info("checkout created", checkout_id=str(row["id"]), gateway=row["method"], order_id=row["order_id"])
    return (201 if bound_outcome is CheckoutOutcome.CREATED else 200), checkout_view(deps, bound)


def get_checkout(deps: CheckoutDeps, user_id: str, checkout_id: str) -> dict[str, Any]:
    try:
        checkout_uuid = uuid.UUID(checkout_id)
    except ValueError:
        raise _checkout_not_found() from None
    row = deps.db.fetch_one("SELECT * FROM gateway_checkouts WHERE id = %s AND user_id = %s", (checkout_uuid, user_id))
    if row is None:  # someone else's checkout looks exactly like a missing one
        raise _checkout_not_found()
    return checkout_view(deps, row)


def _checkout_not_found() -> NotFound:
    return NotFound("checkout_not_found", "no such checkout")

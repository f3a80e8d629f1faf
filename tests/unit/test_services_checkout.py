"""Opening a checkout (shared/services/checkout.py) with fakes: which gateway the service calls, what it asks
the gateway for, and how it answers what the route statement and the gateway say. The statements themselves
(pq_checkout_for_order, its claim, circuits and tokens) are tested against PostgreSQL in
tests/integration/test_gateway_checkout.py, test_gateway_routing.py and test_checkout_races.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain import CheckoutRequest, GatewayRejected, GatewayRetryable
from shared.errors import DomainError, ErrorKind, GatewayFailed, Invalid, NoGatewayToken, NotFound
from shared.outcomes import CheckoutOutcome
from shared.ports import SqlParams
from shared.services.checkout import customer_id, get_checkout, open_checkout
from tests.unit.fakes import FakeDb, FakeDeps, FakeGateway, Rows

SHOPPER = "shopper-1"
ORDER_ID = 7
AMOUNT = 49_900


def checkout_row(method: str, **changes: Any) -> dict[str, Any]:
    """A gateway_checkouts row as pq_checkout_for_order answers it, with the route's own columns."""
    row: dict[str, Any] = {
        "outcome": CheckoutOutcome.PENDING.value,
        "reason": None,
        "inserted": True,
        "retry_ms": None,
        "circuits": [],
        "id": uuid.uuid4(),
        "order_id": ORDER_ID,
        "user_id": SHOPPER,
        "method": method,
        "merchant_ref": f"pq-{ORDER_ID}-{method}",
        "amount_paise": AMOUNT,
        "currency": "INR",
        "expires_at": datetime(2026, 12, 7, 12, 0, tzinfo=UTC),
        "create_claimed_until": datetime(2026, 12, 7, 11, 0, tzinfo=UTC) + timedelta(seconds=22),
        "status": "creating",
        "gateway_order_id": None,
        "payment_session_id": None,
        "job_id": None,
    }
    return row | changes


def bound(params: SqlParams) -> Rows:
    """pq_checkout_created: the checkout now holding the gateway order it was given."""
    checkout_id, gateway_order_id, session = list(params)[:3]
    method = str(gateway_order_id).split("_order_")[0]
    created = checkout_row(method, id=checkout_id, status="created", gateway_order_id=gateway_order_id)
    return [created | {"payment_session_id": session, "outcome": CheckoutOutcome.CREATED.value}]


def deps_with(*gateways: FakeGateway, routes: list[Rows], tokens: Rows | None = None) -> FakeDeps:
    db = FakeDb(
        {
            "pq_checkout_for_order": routes,
            "pq_checkout_created": bound,
            "pq_checkout_unclaimed": [[]],
            "pq_take_tokens": [tokens or [{"granted": True, "wait_ms": 0}]],
        }
    )
    return FakeDeps(db=db, gateways={g.name: g for g in gateways})


def test_a_checkout_is_created_at_the_routed_gateway_for_the_orders_exact_amount() -> None:
    # Given two gateways, and a route that chose Razorpay and opened a checkout there
    razorpay, cashfree = FakeGateway("razorpay"), FakeGateway("cashfree")
    deps = deps_with(razorpay, cashfree, routes=[[checkout_row("razorpay")]])

    # When the shopper asks for a checkout at any gateway
    status, view = open_checkout(deps, SHOPPER, CheckoutRequest(order_id=ORDER_ID, method="auto"))

    # Then the route was asked about both, in the registry's order, and Razorpay alone was asked for an order
    # of the exact amount, under our reference, for a customer id that is not the user id
    assert deps.db.called("pq_checkout_for_order")[0][2] == ["razorpay", "cashfree"]
    [(asked, retried)] = razorpay.created
    assert (asked.amount_paise, asked.currency, asked.merchant_ref) == (AMOUNT, "INR", f"pq-{ORDER_ID}-razorpay")
    assert asked.customer_id == customer_id(SHOPPER) and SHOPPER not in asked.customer_id
    assert not retried and cashfree.created == []
    # And the create token the route took was not taken twice
    assert deps.db.called("pq_take_tokens") == []
    # And the page gets what opens Razorpay's checkout
    assert status == 201
    assert (view["method"], view["status"], view["razorpay"]) == (
        "razorpay",
        "created",
        {"order_id": "razorpay_order_1"},
    )


def test_a_routed_checkout_whose_gateway_does_not_answer_moves_on_to_the_next_one() -> None:
    # Given Razorpay not answering, and Cashfree up
    razorpay = FakeGateway("razorpay", refuses=GatewayRetryable("unavailable", "503 from the gateway"))
    cashfree = FakeGateway("cashfree")
    first = checkout_row("razorpay")
    deps = deps_with(razorpay, cashfree, routes=[[first], [checkout_row("cashfree")]])

    # When the shopper asks for a checkout at either
    status, view = open_checkout(deps, SHOPPER, CheckoutRequest(order_id=ORDER_ID, method=("razorpay", "cashfree")))

    # Then Razorpay's checkout is let go (discarded, its circuit told of the failure), the route is asked
    # again for Cashfree alone, and the order is made there
    [unclaimed] = deps.db.called("pq_checkout_unclaimed")
    assert (unclaimed[0], unclaimed[2], unclaimed[3]) == (first["id"], True, True)
    assert deps.db.called("pq_checkout_for_order")[1][2] == ["cashfree"]
    assert (status, view["method"], len(cashfree.created)) == (201, "cashfree", 1)


def test_a_checkout_the_gateway_refuses_is_discarded_and_answered_gateway_error() -> None:
    # Given a gateway that answers, and refuses the order as sent
    razorpay = FakeGateway("razorpay", refuses=GatewayRejected(400, "BAD_REQUEST_ERROR"))
    first = checkout_row("razorpay")
    deps = deps_with(razorpay, routes=[[first]])

    # When the shopper asks for a checkout there
    with pytest.raises(GatewayFailed) as refused:
        open_checkout(deps, SHOPPER, CheckoutRequest(order_id=ORDER_ID, method="razorpay"))

    # Then they are told the gateway refused, and the checkout is deleted with the gateway counted as up
    assert refused.value.code == "gateway_error"
    [unclaimed] = deps.db.called("pq_checkout_unclaimed")
    assert (unclaimed[0], unclaimed[2], unclaimed[3]) == (first["id"], True, False)


def test_a_retried_create_with_no_token_for_its_lookup_is_busy_and_leaves_the_checkout_and_circuit_alone() -> None:
    # Given a checkout whose earlier create call's answer was lost (not inserted now: the order may exist),
    # and the limiter with no token for the lookup for 2.5 s
    razorpay = FakeGateway("razorpay", lookups=("fetch_order",))
    first = checkout_row("razorpay", inserted=False)
    deps = deps_with(razorpay, routes=[[first]], tokens=[{"granted": False, "wait_ms": 2_500}])

    # When the shopper asks again
    with pytest.raises(NoGatewayToken) as busy:
        open_checkout(deps, SHOPPER, CheckoutRequest(order_id=ORDER_ID, method="razorpay"))

    # Then they are told to retry in 3 s; nothing reached the gateway; the claim is let go, the checkout
    # kept (its order may exist) and the circuit told nothing
    assert (busy.value.kind, busy.value.code, busy.value.retry_after_s) == (ErrorKind.UNAVAILABLE, "service_busy", 3)
    assert razorpay.created == []
    [unclaimed] = deps.db.called("pq_checkout_unclaimed")
    assert (unclaimed[2], unclaimed[3]) == (False, None)


@pytest.mark.parametrize(
    ("outcome", "reason", "kind", "code", "details"),
    [
        (CheckoutOutcome.ORDER_NOT_FOUND, None, ErrorKind.NOT_FOUND, "order_not_found", {}),
        (CheckoutOutcome.ORDER_NOT_PAYABLE, "paid", ErrorKind.CONFLICT, "order_not_payable", {"order_status": "paid"}),
    ],
)
def test_an_order_the_shopper_cannot_pay_is_refused_before_any_gateway_is_called(
    outcome: CheckoutOutcome, reason: str | None, kind: ErrorKind, code: str, details: dict[str, str]
) -> None:
    # Given the route finding no order of the shopper's, or one not payable
    razorpay = FakeGateway("razorpay")
    deps = deps_with(razorpay, routes=[[checkout_row("razorpay", outcome=outcome.value, reason=reason)]])

    # When they ask for a checkout
    with pytest.raises(DomainError) as refused:
        open_checkout(deps, SHOPPER, CheckoutRequest(order_id=ORDER_ID, method="razorpay"))

    # Then the refusal says why, and no gateway was asked for anything
    assert (refused.value.kind, refused.value.code, refused.value.details) == (kind, code, details)
    assert razorpay.created == []


def test_a_gateway_named_while_its_circuit_is_open_is_unavailable_with_when_to_retry() -> None:
    # Given the route saying the one gateway asked for cannot be called for 4.2 s (its circuit open)
    razorpay = FakeGateway("razorpay")
    route = checkout_row("razorpay", outcome=CheckoutOutcome.UNAVAILABLE.value, retry_ms=4_200, circuits=["razorpay"])
    deps = deps_with(razorpay, routes=[[route]])

    # When the shopper names it
    with pytest.raises(DomainError) as refused:
        open_checkout(deps, SHOPPER, CheckoutRequest(order_id=ORDER_ID, method="razorpay"))

    # Then they are told it is not answering, which one, and to retry in 5 s (or ask for another)
    error = refused.value
    assert (error.kind, error.code, error.retry_after_s) == (ErrorKind.UNAVAILABLE, "gateway_unavailable", 5)
    assert error.details == {"method": "razorpay"}


def test_a_gateway_that_is_not_enabled_is_refused_without_a_statement() -> None:
    # Given a deployment with Cashfree only
    deps = deps_with(FakeGateway("cashfree"), routes=[])

    # When a shopper asks for Razorpay
    with pytest.raises(Invalid) as refused:
        open_checkout(deps, SHOPPER, CheckoutRequest(order_id=ORDER_ID, method="razorpay"))

    # Then the method is refused, naming the field, and the database was not asked
    assert (refused.value.code, refused.value.details) == ("method_not_supported", {"field": "method"})
    assert deps.db.calls == []


def test_a_checkout_id_that_is_not_a_uuid_is_not_found_without_a_statement() -> None:
    deps = deps_with(routes=[])

    with pytest.raises(NotFound) as refused:
        get_checkout(deps, SHOPPER, "../orders")

    assert refused.value.code == "checkout_not_found" and deps.db.calls == []

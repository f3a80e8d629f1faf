"""Routing (issue 19): a checkout asked for with "method": "auto" (or a preference list) goes to the first
gateway that is up and has a token; a gateway that stops answering opens its circuit, shared by every
container through the database, and half-opens after a cool-down; an order may hold a live checkout at each
gateway, and a routed request answers the one at a gateway that is up. Against the strict simulator (its
outage knob: Razorpay answers 503 to everything) and a real PostgreSQL."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from local.gateway_sim import Simulator
from local.seed import SeedPlan, seed
from shared.bootstrap import App
from shared.domain import CheckoutRequest
from shared.http import http_status
from shared.services.checkout import open_checkout
from shared.services.intake import accept_payment
from shared.settings import Settings
from tests.integration.gateway_helpers import (
    WebhookInbox,
    call_api,
    drain,
    no_violations,
    order_of,
    order_status,
    pay_at_gateway,
    payment_request,
    pgmq_gateway_settings,
    refused,
    set_stock_of_order,
)

FAILURES_TO_OPEN = 3


@pytest.fixture
def settings(database_url: str, sim: Simulator) -> Settings:
    return pgmq_gateway_settings(database_url, sim, gateway_circuit_failures=FAILURES_TO_OPEN)


@pytest.fixture
def shoppers(app: App) -> list[str]:
    seed(app.db, SeedPlan(users=8))
    return [f"demo-user-{i}" for i in range(1, 9)]


def ask(app: App, user_id: str, method: Any) -> tuple[int, dict[str, Any]]:
    """POST /v1/checkouts for the shopper's pending order, as the service takes it."""
    request = CheckoutRequest.model_validate({"order_id": order_of(app.db, user_id)["id"], "method": method})
    return open_checkout(app, user_id, request)


def razorpay_down(sim: Simulator, seconds: float = 600) -> None:
    sim.config.outage_gateways = ["razorpay"]
    sim.config.outage_until = time.time() + seconds


def razorpay_back(sim: Simulator) -> None:
    sim.config.outage_until = 0.0


def razorpay_order_calls(sim: Simulator) -> int:
    """Create and lookup calls that reached Razorpay, answered or not."""
    return sum(1 for c in sim.calls if c.gateway == "razorpay" and c.path == "/v1/orders")


def circuit(app: App, gateway: str) -> dict[str, Any] | None:
    return app.db.fetch_one("SELECT state, failures FROM gateway_circuits WHERE gateway = %s", (gateway,))


def cooled_down(app: App, gateway: str) -> None:
    """The circuit opened longer ago than its cool-down (the clock moved on, not the test's time)."""
    app.db.execute(
        "UPDATE gateway_circuits SET opened_at = opened_at - interval '1 hour' WHERE gateway = %s", (gateway,)
    )


def opened(app: App, gateway: str) -> None:
    """The gateway's circuit as FAILURES_TO_OPEN failed calls in a row leave it."""
    for _ in range(FAILURES_TO_OPEN):
        app.db.execute("SELECT pq_gateway_circuit_record(%s, true, %s)", (gateway, FAILURES_TO_OPEN))
    found = circuit(app, gateway)
    assert found is not None and found["state"] == "open"


def live_checkouts(app: App) -> list[dict[str, Any]]:
    return app.db.fetch_all(
        "SELECT user_id, method, status FROM gateway_checkouts WHERE status IN ('creating', 'created') ORDER BY user_id"
    )


# --- choosing a gateway ----------------------------------------------------------------------------------


def test_auto_creates_the_checkout_at_the_first_enabled_gateway_and_says_which(
    app: App, sim: Simulator, shoppers: list[str]
) -> None:
    # When one shopper asks for any gateway, and another for Cashfree first, then Razorpay
    auto_status, auto = ask(app, shoppers[0], "auto")
    listed_status, listed = ask(app, shoppers[1], ["cashfree", "razorpay"])
    again_status, again = ask(app, shoppers[0], "auto")

    # Then each checkout is at the first gateway allowed, and says so; asking again is the same checkout
    assert (auto_status, auto["method"], listed_status, listed["method"]) == (201, "razorpay", 201, "cashfree")
    assert auto["razorpay"]["order_id"] in sim.razorpay.orders
    assert list(sim.cashfree.orders) == [listed["cashfree"]["order_id"]]
    assert (again_status, again) == (200, auto)
    assert circuit(app, "razorpay") is None  # a healthy gateway's circuit is never written


def test_a_razorpay_outage_opens_its_circuit_after_n_failures_and_auto_checkouts_go_to_cashfree(
    app: App, sim: Simulator, shoppers: list[str]
) -> None:
    # Given Razorpay answering 503 to everything
    razorpay_down(sim)

    # When shoppers ask for any gateway, one after another
    answers = [ask(app, user, "auto") for user in shoppers[: FAILURES_TO_OPEN + 2]]

    # Then every one of them is created at Cashfree, in the same request
    assert [(status, view["method"]) for status, view in answers] == [(201, "cashfree")] * (FAILURES_TO_OPEN + 2)
    # And only the first N tried Razorpay: their failures opened its circuit, the rest went straight on
    assert razorpay_order_calls(sim) == FAILURES_TO_OPEN
    assert circuit(app, "razorpay") == {"state": "open", "failures": FAILURES_TO_OPEN}
    # And no checkout is left at Razorpay: the ones whose create failed were let go (no page was given them)
    assert [c["method"] for c in live_checkouts(app)] == ["cashfree"] * (FAILURES_TO_OPEN + 2)


def test_a_shopper_who_names_a_gateway_whose_circuit_is_open_is_told_at_once_and_nothing_is_recorded(
    app: App, sim: Simulator, shoppers: list[str]
) -> None:
    # Given Razorpay's circuit open
    opened(app, "razorpay")

    # When a shopper asks for Razorpay by name, through the API
    answer = call_api(
        "enqueue",
        "POST",
        "/v1/checkouts",
        shoppers[0],
        {"order_id": order_of(app.db, shoppers[0])["id"], "method": "razorpay"},
    )

    # Then it is 503 gateway_unavailable with when to come back, no call reached Razorpay, no checkout exists
    assert answer["statusCode"] == 503
    error = json.loads(str(answer["body"]))["error"]
    assert (error["code"], error["details"]) == ("gateway_unavailable", {"method": "razorpay"})
    assert 1 <= int(answer["headers"]["Retry-After"]) <= 15
    assert sim.calls == [] and live_checkouts(app) == []


def test_after_the_cool_down_one_trial_goes_a_failed_one_reopens_and_an_answered_one_closes_the_circuit(
    app: App, sim: Simulator, shoppers: list[str]
) -> None:
    # Given Razorpay down, its circuit open and cooled down
    razorpay_down(sim)
    opened(app, "razorpay")
    cooled_down(app, "razorpay")

    # When a shopper asks for any gateway while Razorpay is still down
    status, first = ask(app, shoppers[0], "auto")

    # Then their request was the trial: one call to Razorpay, which failed, then Cashfree took it; the
    # circuit is open again, its cool-down counted afresh (the next shopper goes straight to Cashfree)
    assert (status, first["method"], razorpay_order_calls(sim)) == (201, "cashfree", 1)
    assert circuit(app, "razorpay") == {"state": "open", "failures": FAILURES_TO_OPEN + 1}
    assert ask(app, shoppers[1], "auto")[1]["method"] == "cashfree" and razorpay_order_calls(sim) == 1

    # When Razorpay is back and the cool-down has passed again
    razorpay_back(sim)
    cooled_down(app, "razorpay")
    trial = ask(app, shoppers[2], "auto")
    after = ask(app, shoppers[3], "auto")

    # Then the trial is created at Razorpay and closes the circuit; the next checkouts go there too
    assert (trial[0], trial[1]["method"], after[1]["method"]) == (201, "razorpay", "razorpay")
    assert circuit(app, "razorpay") == {"state": "closed", "failures": 0}


def test_while_one_request_holds_the_trial_call_no_other_container_calls_the_gateway(
    app: App, sim: Simulator, shoppers: list[str]
) -> None:
    # Given Razorpay's circuit cooled down, and one container's request that took the trial and is making its
    # create call (pq_checkout_for_order as the service calls it, with Razorpay's create bucket)
    opened(app, "razorpay")
    cooled_down(app, "razorpay")
    trial = app.db.fetch_one(
        """SELECT outcome, inserted, (checkout).method FROM pq_checkout_for_order(
               %s, %s, ARRAY['razorpay'], 1800, 30, ARRAY['razorpay.create_order'], ARRAY[8.0], ARRAY[60.0], 15,
               true)""",
        (shoppers[0], order_of(app.db, shoppers[0])["id"]),
    )
    assert trial == {"outcome": "pending", "inserted": True, "method": "razorpay"}

    # When other shoppers ask meanwhile, for any gateway and for Razorpay by name
    routed = ask(app, shoppers[1], "auto")
    named = refused(ask, app, shoppers[2], "razorpay")

    # Then the first goes to Cashfree, the second is told to come back; neither called Razorpay
    assert routed[1]["method"] == "cashfree"
    assert (http_status(named), named.code) == (503, "gateway_unavailable") and named.retry_after_s
    assert razorpay_order_calls(sim) == 0
    assert circuit(app, "razorpay") == {"state": "half_open", "failures": FAILURES_TO_OPEN}


def test_with_every_gateway_down_a_routed_checkout_is_503_gateways_unavailable_and_records_nothing(
    app: App, sim: Simulator, shoppers: list[str]
) -> None:
    # Given both gateways' circuits open
    opened(app, "razorpay")
    opened(app, "cashfree")

    # When a shopper asks for any gateway, and another for both in their own order
    auto = refused(ask, app, shoppers[0], "auto")
    listed = refused(ask, app, shoppers[1], ["cashfree", "razorpay"])

    # Then both are told when to come back, and nothing was called or recorded
    for refusal in (auto, listed):
        assert (http_status(refusal), refusal.code) == (503, "gateways_unavailable")
        assert refusal.retry_after_s is not None and 1 <= refusal.retry_after_s <= 15
    assert sim.calls == [] and live_checkouts(app) == []


def test_a_shopper_who_opened_razorpay_then_asks_for_cashfree_gets_a_cashfree_checkout_and_both_stay_live(
    app: App, sim: Simulator, shoppers: list[str]
) -> None:
    # Given a shopper's checkout at Razorpay, given to their page (they closed its window)
    _, at_razorpay = ask(app, shoppers[0], "razorpay")

    # When they pick Cashfree, then ask for each again
    created = ask(app, shoppers[0], "cashfree")
    cashfree_again = ask(app, shoppers[0], ["cashfree"])
    razorpay_again = ask(app, shoppers[0], "razorpay")

    # Then Cashfree's checkout is created at once, and each gateway answers its own live checkout after
    assert (created[0], created[1]["method"]) == (201, "cashfree")
    assert cashfree_again == (200, created[1]) and razorpay_again == (200, at_razorpay)
    assert list(sim.cashfree.orders) == [created[1]["cashfree"]["order_id"]]
    assert sorted((c["method"], c["status"]) for c in live_checkouts(app)) == [
        ("cashfree", "created"),
        ("razorpay", "created"),
    ]


def test_auto_answers_the_live_razorpay_checkout_while_razorpay_is_up_and_routes_to_cashfree_while_it_is_down(
    app: App, sim: Simulator, shoppers: list[str]
) -> None:
    # Given a shopper's checkout at Razorpay, given to their page
    _, at_razorpay = ask(app, shoppers[0], "razorpay")

    # When they ask for any gateway while Razorpay is up
    up = ask(app, shoppers[0], "auto")

    # Then it is that checkout: nothing is called
    assert up == (200, at_razorpay) and sim.cashfree.orders == {}

    # When Razorpay's circuit opens and they ask for any gateway, twice, and for Razorpay by name
    opened(app, "razorpay")
    routed = ask(app, shoppers[0], "auto")
    again = ask(app, shoppers[0], "auto")
    named = ask(app, shoppers[0], "razorpay")

    # Then a new checkout is created at Cashfree and answered after; the one named is still answered (its page
    # may still pay it), and no call reached Razorpay
    assert (routed[0], routed[1]["method"]) == (201, "cashfree")
    assert again == (200, routed[1]) and named == (200, at_razorpay)
    assert razorpay_order_calls(sim) == 1  # the first checkout's create, before the outage

    # When Cashfree's circuit opens too
    opened(app, "cashfree")
    down = refused(ask, app, shoppers[0], "auto")

    # Then no gateway allowed is up: 503 with when to come back, nothing new recorded
    assert (http_status(down), down.code) == (503, "gateways_unavailable") and down.retry_after_s
    assert len(live_checkouts(app)) == 2


def test_a_checkout_whose_create_answer_was_lost_at_a_gateway_now_down_is_kept_for_a_lookup_and_routed_on(
    app: App, sim: Simulator, shoppers: list[str]
) -> None:
    # Given a shopper whose Razorpay checkout's create answer was lost (no page was given its order), then
    # Razorpay down and its circuit open
    sim.config.fail_after_send = 1
    busy = refused(ask, app, shoppers[0], "razorpay")
    assert (http_status(busy), busy.code) == (503, "service_busy")
    razorpay_down(sim)
    opened(app, "razorpay")
    calls = razorpay_order_calls(sim)

    # When the shopper asks for any gateway
    status, view = ask(app, shoppers[0], "auto")

    # Then the checkout is created at Cashfree without calling Razorpay; the one at Razorpay waits, creating,
    # for a lookup once Razorpay is back
    assert (status, view["method"], razorpay_order_calls(sim)) == (201, "cashfree", calls)
    assert sorted((c["method"], c["status"]) for c in live_checkouts(app)) == [
        ("cashfree", "created"),
        ("razorpay", "creating"),
    ]


def test_paying_both_live_checkouts_of_an_order_pays_it_once_and_refunds_the_other_in_full(
    app: App, sim: Simulator, shoppers: list[str], inbox: WebhookInbox
) -> None:
    # Given a shopper who opened Razorpay, then Cashfree, and paid at both
    order = order_of(app.db, shoppers[0])
    _, at_razorpay = ask(app, shoppers[0], "razorpay")
    _, at_cashfree = ask(app, shoppers[0], "cashfree")
    handed = pay_at_gateway(sim, at_razorpay)
    pay_at_gateway(sim, at_cashfree)

    # When the Razorpay payment is submitted, then every webhook arrives, and the queue drains
    accept_payment(app, shoppers[0], "key-both", payment_request(at_razorpay, handed))
    drain(app)
    inbox.deliver()
    drain(app)

    # Then the order is paid once, by Razorpay; Cashfree's payment is refunded in full
    assert order_status(app, order["id"]) == "paid"
    assert sim.stats()["captures"] == 1
    refunds = app.db.fetch_all("SELECT method, amount_paise FROM gateway_refunds")
    assert refunds == [{"method": "cashfree", "amount_paise": order["total_paise"]}]
    no_violations(app)


def test_a_payment_at_the_gateway_chosen_by_auto_pays_the_order_once(
    app: App, sim: Simulator, shoppers: list[str]
) -> None:
    # Given Razorpay down, and a shopper routed to Cashfree who pays there
    razorpay_down(sim)
    _, view = ask(app, shoppers[0], "auto")
    pay_at_gateway(sim, view)

    # When they submit the payment and the queue drains
    accepted = accept_payment(app, shoppers[0], "key-routed", payment_request(view))
    drain(app)

    # Then the order is paid once, by Cashfree, and every invariant holds
    assert accepted.body["status"] == "queued"
    assert order_status(app, view["order_id"]) == "paid"
    assert app.db.fetch_all("SELECT method FROM payment_jobs") == [{"method": "cashfree"}]
    no_violations(app)


def test_a_sold_out_order_with_a_live_checkout_is_answered_that_one_but_opens_none_at_another_gateway(
    app: App, sim: Simulator, shoppers: list[str]
) -> None:
    # Given a shopper's checkout at Razorpay, given to their page, and then their order's products sold out
    _, at_razorpay = ask(app, shoppers[0], "razorpay")
    set_stock_of_order(app, at_razorpay["order_id"], 0)

    # When they ask for Cashfree by name, and, with Razorpay's circuit open, for any gateway
    named = refused(ask, app, shoppers[0], "cashfree")
    opened(app, "razorpay")
    routed = refused(ask, app, shoppers[0], "auto")

    # Then each is 409 sold_out and no gateway order was made: a second one would take money only to refund it.
    # Found by a review: a live checkout anywhere lifted the refusal, and a new Cashfree order was opened
    assert [(http_status(e), e.code) for e in (named, routed)] == [(409, "sold_out")] * 2
    assert sim.cashfree.orders == {}
    assert [c["method"] for c in live_checkouts(app)] == ["razorpay"]
    # And the live checkout is still answered when asked for: their page may be paying it
    assert ask(app, shoppers[0], "razorpay") == (200, at_razorpay)

"""The official razorpay client against the simulator: every endpoint the project uses, and our
signature checks agreeing with the SDK's verifiers on real and forged inputs."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import razorpay
from razorpay.errors import BadRequestError, ServerError, SignatureVerificationError

from local.gateway_sim import Simulator
from shared.gateway_signatures import verify_razorpay_checkout, verify_razorpay_webhook
from tests.contract.conftest import RAZORPAY, RAZORPAY_WEBHOOK_SECRET, Inbox, eventually


@pytest.fixture
def client(sim: Simulator) -> Any:
    return razorpay.Client(auth=RAZORPAY, base_url=sim.url)


def _sdk_accepts_checkout(client: Any, fields: dict[str, str]) -> bool:
    try:
        return bool(client.utility.verify_payment_signature(fields))
    except SignatureVerificationError:
        return False


def _sdk_accepts_webhook(client: Any, body: str, signature: str, secret: str) -> bool:
    try:
        return bool(client.utility.verify_webhook_signature(body, signature, secret))
    except SignatureVerificationError:
        return False


def test_every_razorpay_endpoint_the_project_uses_answers_the_official_client(client: Any, sim: Simulator) -> None:
    # Given an order created for our order 42 and its shopper
    order = client.order.create(
        {
            "amount": 14_950,
            "currency": "INR",
            "receipt": "pq-order-42",
            "notes": {"pq_order_id": "42", "pq_user": "demo-user-1"},
        }
    )
    assert (order["entity"], order["status"], order["amount_due"], order["attempts"]) == ("order", "created", 14_950, 0)
    assert client.order.fetch(order["id"])["notes"] == {"pq_order_id": "42", "pq_user": "demo-user-1"}
    assert [o["id"] for o in client.order.all({"receipt": "pq-order-42"})["items"]] == [order["id"]]

    # When the shopper fails once, then pays in Checkout
    failed = sim.razorpay_checkout(order["id"], "failed")
    paid = sim.razorpay_checkout(order["id"], "success")

    # Then the SDK verifies what Checkout handed the page, and reads the payments of the order
    assert client.utility.verify_payment_signature(paid)
    payments = client.order.payments(order["id"])
    assert {p["id"]: p["status"] for p in payments["items"]} == {
        failed["razorpay_payment_id"]: "failed",
        paid["razorpay_payment_id"]: "authorized",
    }
    payment = client.payment.fetch(paid["razorpay_payment_id"])
    assert (payment["order_id"], payment["amount"], payment["amount_refunded"]) == (order["id"], 14_950, 0)
    assert client.order.fetch(order["id"])["status"] == "attempted"

    # And capture pays the order; a second capture is refused
    captured = client.payment.capture(payment["id"], 14_950, {"currency": "INR"})
    assert (captured["status"], captured["captured"]) == ("captured", True)
    assert client.order.fetch(order["id"])["status"] == "paid"
    with pytest.raises(BadRequestError, match="already been captured"):
        client.payment.capture(payment["id"], 14_950, {"currency": "INR"})

    # And a refund with X-Refund-Idempotency is one refund, however often it is sent
    key = {"X-Refund-Idempotency": "pq0a1b2c3d4e5f"}
    refund = client.payment.refund(payment["id"], {"amount": 14_950, "receipt": "pq0a1b2c3d4e5f"}, headers=key)
    again = client.payment.refund(payment["id"], {"amount": 14_950, "receipt": "pq0a1b2c3d4e5f"}, headers=key)
    with pytest.raises(BadRequestError, match="Different request with the same idempotency key"):
        client.payment.refund(payment["id"], {"amount": 100, "receipt": "pq0a1b2c3d4e5f"}, headers=key)
    assert refund["id"] == again["id"] and refund["status"] == "pending"
    time.sleep(0.2)
    assert client.payment.fetch_refund_id(payment["id"], refund["id"])["status"] == "processed"
    assert client.refund.fetch(refund["id"])["amount"] == 14_950
    assert [r["id"] for r in client.payment.fetch_multiple_refund(payment["id"])["items"]] == [refund["id"]]
    refunded = client.payment.fetch(payment["id"])
    assert (refunded["status"], refunded["amount_refunded"], refunded["refund_status"]) == ("refunded", 14_950, "full")
    assert sim.stats()["refunds"] == 1


def test_a_payment_without_an_order_is_refused_capture_through_the_official_client(client: Any, sim: Simulator) -> None:
    payment_id = sim.create_razorpay_payment(15_000)
    with pytest.raises(BadRequestError, match="without an order_id cannot be captured"):
        client.payment.capture(payment_id, 15_000, {"currency": "INR"})
    assert client.payment.fetch(payment_id)["status"] == "authorized"
    assert sim.stats()["captures"] == 0


def test_unknown_ids_and_wrong_keys_are_refused_as_razorpay_refuses_them(client: Any, sim: Simulator) -> None:
    with pytest.raises(BadRequestError, match="The id provided does not exist"):
        client.order.fetch("order_DoesNotExist01")
    with pytest.raises(BadRequestError, match=r"The amount must be at least INR 1\.00"):
        client.order.create({"amount": 50, "currency": "INR"})
    with pytest.raises(BadRequestError, match="api key provided is invalid"):
        razorpay.Client(auth=(RAZORPAY[0], "wrong"), base_url=sim.url).order.all({})


def test_an_outage_answers_every_razorpay_call_503_as_razorpay_fails_and_leaves_the_shoppers_side_up(
    client: Any, sim: Simulator
) -> None:
    # Given an order made before Razorpay goes down for a minute (the other gateway stays up)
    order = client.order.create({"amount": 10_000, "currency": "INR", "receipt": "pq-order-9"})
    status, _ = _post_config(sim, {"outage_gateways": ["razorpay"], "outage_until": time.time() + 60})
    assert status == 200

    # When the official client calls, with good keys and with bad ones
    # Then each call is refused as a server failure (SERVER_ERROR: the client's ServerError), keys unread
    calls: list[Callable[[], Any]] = [
        lambda: client.order.fetch(order["id"]),
        lambda: client.order.create({"amount": 10_000, "currency": "INR", "receipt": "pq-order-10"}),
        lambda: razorpay.Client(auth=(RAZORPAY[0], "wrong"), base_url=sim.url).order.all({}),
    ]
    for call in calls:
        with pytest.raises(ServerError, match="Service temporarily unavailable"):
            call()
    # And nothing was made, the shopper's checkout page still pays the order made before, and once the
    # outage is over the payment is there
    assert sim.stats()["responses_5xx"] == 3 and sim.stats()["razorpay"]["orders_created"] == 1
    paid = sim.razorpay_checkout(order["id"])
    sim.config.outage_until = 0.0
    assert client.payment.fetch(paid["razorpay_payment_id"])["status"] == "authorized"


def _post_config(sim: Simulator, knobs: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(  # POST /_sim/config, as the chaos suite sets a knob
        sim.url + "/_sim/config", data=json.dumps(knobs).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.loads(response.read())


def test_our_checkout_check_agrees_with_the_sdk_on_real_and_forged_signatures(client: Any, sim: Simulator) -> None:
    order = client.order.create({"amount": 10_000, "currency": "INR", "receipt": "pq-order-7"})
    other = client.order.create({"amount": 10_000, "currency": "INR", "receipt": "pq-order-8"})
    real = sim.razorpay_checkout(order["id"])
    elsewhere = sim.razorpay_checkout(other["id"])
    signature = real["razorpay_signature"]
    cases = {
        "real": real,
        "another order's payment": {**real, "razorpay_payment_id": elsewhere["razorpay_payment_id"]},
        "another order": {**real, "razorpay_order_id": other["id"]},
        "a signature from another order": {**real, "razorpay_signature": elsewhere["razorpay_signature"]},
        "truncated": {**real, "razorpay_signature": signature[:-2]},
        "upper case": {**real, "razorpay_signature": signature.upper()},
        "empty": {**real, "razorpay_signature": ""},
        "not hex": {**real, "razorpay_signature": "z" * 64},
    }
    verdicts = {
        name: (
            _sdk_accepts_checkout(client, fields),
            verify_razorpay_checkout(
                fields["razorpay_order_id"], fields["razorpay_payment_id"], fields["razorpay_signature"], RAZORPAY[1]
            ),
        )
        for name, fields in cases.items()
    }
    assert verdicts == {name: (name == "real", name == "real") for name in cases}


def test_razorpay_webhooks_are_signed_as_razorpay_signs_them(client: Any, sim: Simulator, inbox: Inbox) -> None:
    # Given a paid order whose refund then settles: each step sends Razorpay's webhook
    order = client.order.create({"amount": 10_000, "currency": "INR", "receipt": "pq-order-9"})
    paid = sim.razorpay_checkout(order["id"])
    client.payment.capture(paid["razorpay_payment_id"], 10_000, {"currency": "INR"})
    client.payment.refund(paid["razorpay_payment_id"], {"amount": 10_000})
    time.sleep(0.2)
    assert sim.wait_webhooks()
    received = inbox.of("/razorpay")
    events = [json.loads(r.body)["event"] for r in received]
    assert events == ["payment.authorized", "payment.captured", "order.paid", "refund.created", "refund.processed"]
    assert len({r.headers["x-razorpay-event-id"] for r in received}) == len(received)
    for r in received:
        body, signature = r.body.decode(), r.headers["x-razorpay-signature"]
        envelope = json.loads(body)
        assert (envelope["entity"], envelope["account_id"][:4]) == ("event", "acc_")
        assert set(envelope["payload"]) == set(envelope["contains"])
        # Then the SDK and we accept the real one, and both refuse forgeries
        assert _sdk_accepts_webhook(client, body, signature, RAZORPAY_WEBHOOK_SECRET)
        assert verify_razorpay_webhook(r.body, signature, RAZORPAY_WEBHOOK_SECRET)
        for forged_body, forged_sig, secret in (
            (body.replace("10000", "1"), signature, RAZORPAY_WEBHOOK_SECRET),
            (body, signature, RAZORPAY[1]),  # the key secret is not the webhook secret
            (body, signature[::-1], RAZORPAY_WEBHOOK_SECRET),
        ):
            assert not _sdk_accepts_webhook(client, forged_body, forged_sig, secret)
            assert not verify_razorpay_webhook(forged_body.encode(), forged_sig, secret)
    paid_event = json.loads(received[2].body)["payload"]
    assert paid_event["order"]["entity"]["status"] == "paid"
    assert paid_event["payment"]["entity"]["order_id"] == order["id"]


def test_a_replayed_webhook_keeps_its_event_id(client: Any, sim: Simulator, inbox: Inbox) -> None:
    order = client.order.create({"amount": 10_000, "currency": "INR", "receipt": "pq-order-10"})
    sim.razorpay_checkout(order["id"], "failed")
    assert sim.wait_webhooks()
    first = inbox.of("/razorpay")[0]
    assert sim.webhooks.replay(first.headers["x-razorpay-event-id"])
    assert sim.wait_webhooks()
    again = inbox.of("/razorpay")[1]
    assert again.body == first.body
    assert again.headers["x-razorpay-event-id"] == first.headers["x-razorpay-event-id"]


def _authorized(client: Any, sim: Simulator, receipt: str, amount: int = 10_000) -> str:
    order = client.order.create({"amount": amount, "currency": "INR", "receipt": receipt})
    return str(sim.razorpay_checkout(order["id"])["razorpay_payment_id"])


def test_what_razorpay_refuses_is_refused_through_the_official_client(client: Any, sim: Simulator) -> None:
    # Given an authorised payment and a captured one
    authorized = _authorized(client, sim, "pq-order-20")
    captured = _authorized(client, sim, "pq-order-21")
    client.payment.capture(captured, 10_000, {"currency": "INR"})
    refusals: dict[str, tuple[Callable[[], Any], str]] = {
        "a currency Razorpay does not take": (
            lambda: client.order.create({"amount": 10_000, "currency": "XYZ", "receipt": "pq-order-22"}),
            "Currency is not supported",
        ),
        "an order field Razorpay does not take": (
            lambda: client.order.create({"amount": 10_000, "currency": "INR", "pq_order": "22"}),
            "pq_order is/are not required and should not be sent",
        ),
        "a capture without currency": (
            lambda: client.payment.capture(authorized, 10_000, {}),
            "The currency field is required",
        ),
        "a capture field Razorpay does not take": (
            lambda: client.payment.capture(authorized, 10_000, {"currency": "INR", "receipt": "r"}),
            "receipt is/are not required and should not be sent",
        ),
        "a refund field Razorpay does not take": (
            lambda: client.payment.refund(captured, {"amount": 100, "reason": "damaged"}),
            "reason is/are not required and should not be sent",
        ),
        "a refund speed Razorpay does not offer": (
            lambda: client.payment.refund(captured, {"amount": 100, "speed": "instant"}),
            "The selected speed is invalid",
        ),
    }
    # When each is sent, then the official client raises Razorpay's BadRequestError with its description
    for call, description in refusals.values():
        with pytest.raises(BadRequestError, match=description):
            call()
    # And on the wire a refusal is HTTP 400 in Razorpay's error shape
    request = urllib.request.Request(
        sim.url + "/v1/orders",
        data=json.dumps({"amount": 10_000, "currency": "XYZ"}).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(":".join(RAZORPAY).encode()).decode(),
        },
    )
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(request, timeout=5)
    error = json.loads(raw.value.read())["error"]
    assert raw.value.code == 400
    assert (error["code"], error["field"]) == ("BAD_REQUEST_ERROR", "currency")
    assert set(error) >= {"description", "source", "step", "reason", "metadata"}
    # And nothing was made: no new order, the authorised payment still authorised, no refund
    assert sorted(o["receipt"] for o in client.order.all({"count": 100})["items"]) == ["pq-order-20", "pq-order-21"]
    assert client.payment.fetch(authorized)["status"] == "authorized"
    assert client.payment.fetch_multiple_refund(captured)["count"] == 0


def test_a_merchant_refund_is_reported_by_the_official_client_and_announced(
    client: Any, sim: Simulator, inbox: Inbox
) -> None:
    # Given a captured payment
    payment_id = _authorized(client, sim, "pq-order-30")
    client.payment.capture(payment_id, 10_000, {"currency": "INR"})
    # When the merchant refunds part of it on the Dashboard
    refund = sim.merchant_refund("razorpay", payment_id, 2_500)
    # Then the API reports it: the payment partly refunded, the refund listed, then processed
    payment = client.payment.fetch(payment_id)
    assert (payment["status"], payment["amount_refunded"], payment["refund_status"]) == ("captured", 2_500, "partial")
    listed = client.payment.fetch_multiple_refund(payment_id)["items"]
    assert [(r["id"], r["amount"], r["payment_id"]) for r in listed] == [(refund["id"], 2_500, payment_id)]
    eventually(lambda: client.refund.fetch(refund["id"])["status"] == "processed")
    # And it sent the refund webhooks, as any refund does; it is not one of ours in the stats
    assert sim.wait_webhooks()
    events = [json.loads(r.body) for r in inbox.of("/razorpay")]
    assert [e["event"] for e in events if e["event"].startswith("refund.")] == ["refund.created", "refund.processed"]
    assert (sim.stats()["refunds"], sim.stats()["razorpay"]["merchant_refunds"]) == (0, 1)


def test_an_authorisation_left_uncaptured_is_released_by_razorpay_with_refund_webhooks(
    client: Any, sim: Simulator, inbox: Inbox
) -> None:
    # Given a short capture timeout, a payment left authorised and one captured at once
    sim.config.razorpay_auth_release_s = 0.1
    left = _authorized(client, sim, "pq-order-40")
    captured = _authorized(client, sim, "pq-order-41")
    client.payment.capture(captured, 10_000, {"currency": "INR"})
    # When the timeout passes, then the uncaptured payment is refunded in full (captured false) and settles
    eventually(lambda: client.payment.fetch(left)["status"] == "refunded")
    (refund,) = client.payment.fetch_multiple_refund(left)["items"]
    eventually(lambda: client.refund.fetch(refund["id"])["status"] == "processed")
    payment = client.payment.fetch(left)
    assert (payment["captured"], payment["amount_refunded"], payment["refund_status"]) == (False, 10_000, "full")
    with pytest.raises(BadRequestError, match="Only payments which have been authorized"):
        client.payment.capture(left, 10_000, {"currency": "INR"})
    # And the captured one is never released
    assert (client.payment.fetch(captured)["status"], client.payment.fetch(captured)["amount_refunded"]) == (
        "captured",
        0,
    )
    # And Razorpay's refund webhooks announced it, with the payment not captured
    assert sim.wait_webhooks()
    refund_events = [json.loads(r.body) for r in inbox.of("/razorpay") if b'"refund.' in r.body]
    assert [e["event"] for e in refund_events] == ["refund.created", "refund.processed"]
    assert all(e["payload"]["payment"]["entity"]["id"] == left for e in refund_events)
    assert refund_events[0]["payload"]["payment"]["entity"]["captured"] is False

"""The official razorpay client against the simulator: every endpoint the project uses, and our
signature checks agreeing with the SDK's verifiers on real and forged inputs."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import razorpay
from razorpay.errors import BadRequestError, SignatureVerificationError

from local.gateway_sim import Simulator
from shared.gateway_signatures import verify_razorpay_checkout, verify_razorpay_webhook
from tests.contract.conftest import RAZORPAY, RAZORPAY_WEBHOOK_SECRET, Inbox


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

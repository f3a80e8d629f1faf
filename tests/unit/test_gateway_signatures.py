"""The gateways' signature checks: right inputs pass, anything else is False, nothing raises."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from shared.gateway_signatures import (
    cashfree_webhook_signature,
    razorpay_checkout_signature,
    razorpay_webhook_signature,
    verify_cashfree_webhook,
    verify_razorpay_checkout,
    verify_razorpay_webhook,
)

KEY_SECRET = "rzp_key_secret_1"
WEBHOOK_SECRET = "rzp_webhook_secret_1"
CF_SECRET = "cf_client_secret_1"
BODY = b'{"event":"payment.captured","payload":{"payment":{"entity":{"amount":170.00}}}}'
JUNK: list[Any] = [None, "", b"", 0, 1.5, [], {}, "zz", "é" * 64, b"\xff" * 64, "0" * 64, object()]


def test_razorpay_checkout_signature_is_hex_hmac_of_order_bar_payment_with_the_key_secret() -> None:
    # Given Razorpay's documented recipe: hmac_sha256(order_id + "|" + payment_id, key_secret), hex
    expected = hmac.new(KEY_SECRET.encode(), b"order_A|pay_B", hashlib.sha256).hexdigest()
    # Then our signer and verifier follow it exactly
    assert razorpay_checkout_signature("order_A", "pay_B", KEY_SECRET) == expected
    assert verify_razorpay_checkout("order_A", "pay_B", expected, KEY_SECRET)
    assert verify_razorpay_checkout(b"order_A", b"pay_B", expected.encode(), KEY_SECRET.encode())


def test_a_checkout_signature_for_another_order_payment_or_key_is_refused() -> None:
    good = razorpay_checkout_signature("order_A", "pay_B", KEY_SECRET)
    assert not verify_razorpay_checkout("order_X", "pay_B", good, KEY_SECRET)
    assert not verify_razorpay_checkout("order_A", "pay_X", good, KEY_SECRET)
    assert not verify_razorpay_checkout("order_A", "pay_B", good, "another secret")
    assert not verify_razorpay_checkout("order_A|pay", "B", good[:-1] + "0", KEY_SECRET)
    assert not verify_razorpay_checkout("order_A", "pay_B", good.upper(), KEY_SECRET)


@pytest.mark.parametrize("junk", JUNK)
def test_junk_in_any_checkout_field_is_false_never_an_exception(junk: Any) -> None:
    good = razorpay_checkout_signature("order_A", "pay_B", KEY_SECRET)
    assert verify_razorpay_checkout(junk, "pay_B", good, KEY_SECRET) is False
    assert verify_razorpay_checkout("order_A", junk, good, KEY_SECRET) is False
    assert verify_razorpay_checkout("order_A", "pay_B", junk, KEY_SECRET) is False
    assert verify_razorpay_checkout("order_A", "pay_B", good, "") is False


def test_razorpay_webhook_signature_is_hex_hmac_of_the_raw_body_with_the_webhook_secret() -> None:
    expected = hmac.new(WEBHOOK_SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert razorpay_webhook_signature(BODY, WEBHOOK_SECRET) == expected
    assert verify_razorpay_webhook(BODY, expected, WEBHOOK_SECRET)
    # A re-serialised body (170.00 -> 170) or the key secret in place of the webhook secret fails
    assert not verify_razorpay_webhook(BODY.replace(b"170.00", b"170"), expected, WEBHOOK_SECRET)
    assert not verify_razorpay_webhook(BODY, expected, KEY_SECRET)


@pytest.mark.parametrize("junk", JUNK)
def test_junk_webhook_inputs_are_false_never_an_exception(junk: Any) -> None:
    rzp = razorpay_webhook_signature(BODY, WEBHOOK_SECRET)
    cf = cashfree_webhook_signature("1746427759733", BODY, CF_SECRET)
    assert verify_razorpay_webhook(junk, rzp, WEBHOOK_SECRET) is False
    assert verify_razorpay_webhook(BODY, junk, WEBHOOK_SECRET) is False
    assert verify_cashfree_webhook(junk, "1746427759733", cf, CF_SECRET) is False
    assert verify_cashfree_webhook(BODY, junk, cf, CF_SECRET) is False
    assert verify_cashfree_webhook(BODY, "1746427759733", junk, CF_SECRET) is False


def test_cashfree_webhook_signature_is_base64_hmac_of_timestamp_then_raw_body_with_the_client_secret() -> None:
    timestamp = "1746427759733"
    digest = hmac.new(CF_SECRET.encode(), timestamp.encode() + BODY, hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    assert cashfree_webhook_signature(timestamp, BODY, CF_SECRET) == expected
    assert verify_cashfree_webhook(BODY, timestamp, expected, CF_SECRET)
    assert verify_cashfree_webhook(BODY, timestamp.encode(), expected.encode(), CF_SECRET)
    # Another timestamp (a replay re-stamped by an attacker) or another body fails
    assert not verify_cashfree_webhook(BODY, "1746427759734", expected, CF_SECRET)
    assert not verify_cashfree_webhook(BODY + b" ", timestamp, expected, CF_SECRET)
    assert not verify_cashfree_webhook(BODY, timestamp, expected, "other secret")

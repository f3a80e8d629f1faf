"""The gateways' signatures: pure functions, bytes in, bool out, constant-time, never raising.

Razorpay (two different signatures, same algorithm, different keys and inputs):
- Checkout: the page receives razorpay_signature = hex HMAC-SHA256 of "order_id|payment_id" keyed with
  the API key secret (Razorpay docs, payment-gateway/web-integration/standard: "generated_signature =
  hmac_sha256(order_id + "|" + razorpay_payment_id, secret)"; the official razorpay-python client's
  utility.verify_payment_signature does exactly this).
- Webhooks: X-Razorpay-Signature = hex HMAC-SHA256 of the raw request body keyed with the webhook
  secret set in the Dashboard, not the key secret (razorpay.com/docs/webhooks/validate-test). Razorpay
  signs no timestamp, so a replay cannot be refused by age, and X-Razorpay-Event-Id is not signed: a
  replay is told by the body's digest (shared/services/webhooks.py).

Cashfree PG webhooks: x-webhook-signature = base64 HMAC-SHA256 of x-webhook-timestamp (milliseconds)
followed by the raw body, keyed with the PG client secret (cashfree.com/docs/payments/online/webhooks/
signature-verification: "signedPayload := $timestamp.$payload; expectedSignature :=
Base64Encode(HMACSHA256($signedPayload, $merchantSecretKey))"; cashfree-pg's PGVerifyWebhookSignature).

The signers are here too, for the simulator; the contract tests check both sides against the SDKs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

Text = bytes | str


def _bytes(value: Text) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def _hmac(key: Text, message: bytes) -> bytes:
    return hmac.new(_bytes(key), message, hashlib.sha256).digest()


def _same(expected: str, given: object) -> bool:
    """Constant-time equality of the expected ASCII signature and whatever was received."""
    if isinstance(given, str):
        try:
            given = given.encode("ascii")
        except UnicodeEncodeError:
            return False
    if not isinstance(given, bytes) or not given:
        return False
    return hmac.compare_digest(expected.encode("ascii"), given)


def razorpay_checkout_signature(order_id: Text, payment_id: Text, key_secret: Text) -> str:
    return _hmac(key_secret, _bytes(order_id) + b"|" + _bytes(payment_id)).hex()


def razorpay_webhook_signature(raw_body: bytes, webhook_secret: Text) -> str:
    return _hmac(webhook_secret, raw_body).hex()


def cashfree_webhook_signature(timestamp: Text, raw_body: bytes, client_secret: Text) -> str:
    return base64.b64encode(_hmac(client_secret, _bytes(timestamp) + raw_body)).decode("ascii")


def verify_razorpay_checkout(order_id: object, payment_id: object, signature: object, key_secret: Text) -> bool:
    """True only for the signature Razorpay Checkout hands the page for this order and payment."""
    if not isinstance(order_id, str | bytes) or not isinstance(payment_id, str | bytes) or not key_secret:
        return False
    if not order_id or not payment_id:
        return False
    return _same(razorpay_checkout_signature(order_id, payment_id, key_secret), signature)


def verify_razorpay_webhook(raw_body: object, signature: object, webhook_secret: Text) -> bool:
    """True only for X-Razorpay-Signature over exactly these bytes with the webhook secret."""
    if not isinstance(raw_body, bytes) or not webhook_secret:
        return False
    return _same(razorpay_webhook_signature(raw_body, webhook_secret), signature)


def verify_cashfree_webhook(raw_body: object, timestamp: object, signature: object, client_secret: Text) -> bool:
    """True only for x-webhook-signature over x-webhook-timestamp + these bytes with the client secret."""
    if not isinstance(raw_body, bytes) or not client_secret:
        return False
    if isinstance(timestamp, bytes):
        try:
            timestamp = timestamp.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(timestamp, str) or not timestamp.isdigit():
        return False
    return _same(cashfree_webhook_signature(timestamp, raw_body, client_secret), signature)

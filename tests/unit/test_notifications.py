"""Webhook signatures: what a receiver verifies."""

from __future__ import annotations

import json

import pytest

from shared.notifications import WebhookError, deliver, sign, unwrap, verify

SECRET = "whsec_test"


def test_signature_verifies_and_tampering_does_not() -> None:
    body = b'{"id":"e1","type":"PaymentSucceeded"}'
    header = sign(SECRET, 1_700_000_000, body)

    assert verify(SECRET, header, body, now=1_700_000_010)
    assert not verify(SECRET, header, body.replace(b"Succeeded", b"Failed"), now=1_700_000_010)
    assert not verify("other-secret", header, body, now=1_700_000_010)


def test_old_signatures_are_refused_as_replays() -> None:
    body = b"{}"
    assert not verify(SECRET, sign(SECRET, 1_700_000_000, body), body, now=1_700_000_000 + 301)


@pytest.mark.parametrize("header", ["", "t=x,v1=y", "v1=abc", "garbage"])
def test_malformed_signature_headers_do_not_verify(header: str) -> None:
    assert not verify(SECRET, header, b"{}")


def test_unwrap_takes_the_event_out_of_an_eventbridge_envelope() -> None:
    event = {"id": "e1", "type": "PaymentSucceeded", "data": {}}
    assert unwrap(json.dumps({"detail-type": "PaymentSucceeded", "detail": event})) == event
    with pytest.raises(ValueError, match="not a payment event"):
        unwrap(json.dumps({"detail": {"hello": 1}}))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/hook?token=SECRET",
        "http://[::1:1/hook?token=SECRET",
        "http://exa mple.com/hook?token=SECRET",
    ],
)
def test_a_webhook_url_that_cannot_be_parsed_is_refused_without_repeating_it(url: str) -> None:
    # The URL may carry the shop's token: it must not reach a log line or a traceback through the error.
    with pytest.raises(WebhookError) as refused:
        deliver(url, None, {"id": "e1", "type": "PaymentSucceeded", "data": {}}, 1.0)
    assert refused.value.status is None
    assert "SECRET" not in str(refused.value) and refused.value.__cause__ is None

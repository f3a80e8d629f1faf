"""Webhook delivery over a real socket: failures never carry the webhook's URL into logs."""

from __future__ import annotations

import pytest

from shared.notifications import WebhookError, deliver


def test_an_unreachable_webhook_fails_without_its_url_in_the_error() -> None:
    # Given a webhook URL that carries a token, on a port where nothing listens
    url = "http://127.0.0.1:9/hook?token=s3cr3t-token"
    event = {"id": "e1", "type": "PaymentSucceeded", "data": {}}

    with pytest.raises(WebhookError) as failed:
        deliver(url, None, event, timeout_s=0.5)

    # Then neither the error nor anything chained to it names the URL or the token
    assert failed.value.status is None
    assert failed.value.__cause__ is None and failed.value.__suppress_context__
    assert "s3cr3t" not in str(failed.value) and "127.0.0.1" not in str(failed.value)

"""Delivery of payment events to the shop's webhook, signed so the receiver can trust them."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import time
from typing import Any

import urllib3

SIGNATURE_HEADER = "X-PQ-Signature"
EVENT_ID_HEADER = "X-PQ-Event-Id"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`; the timestamp bounds replays."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: int = 300, now: float | None = None) -> bool:
    """What a receiver runs: the signature matches and is no older than tolerance_s."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def unwrap(record_message: str) -> dict[str, Any]:
    """The versioned event inside an SNS message that carries an EventBridge event."""
    envelope = json.loads(record_message)
    event = envelope.get("detail", envelope)
    if not isinstance(event, dict) or "id" not in event or "type" not in event:
        raise ValueError("not a payment event")
    return event


class WebhookError(Exception):
    """The receiver answered with a status other than 2xx (status), or could not be reached (None).

    It never carries the URL, which may hold a token: it reaches logs through tracebacks.
    """

    def __init__(self, status: int | None, reason: str = "") -> None:
        super().__init__(f"webhook answered {status}" if status is not None else f"webhook unreachable: {reason}")
        self.status = status


# One keep-alive pool per webhook URL, per process (a warm Lambda container reuses its connection), and the
# URL's request target: urllib3's PoolManager looked the pool up again and parsed the URL again on every
# delivery, a tenth of the local notifier's CPU in a 5,000-shopper run (py-spy). A deployment has one URL.
@functools.lru_cache(maxsize=4)
def _pool(url: str) -> tuple[urllib3.HTTPConnectionPool, str]:
    return urllib3.connection_from_url(url, maxsize=4, retries=False), urllib3.util.parse_url(url).request_uri


def deliver(url: str, secret: str | None, event: dict[str, Any], timeout_s: float) -> int:
    """POST the event; raises on a non-2xx answer so the caller's retry policy applies."""
    if not url.startswith(("https://", "http://")):
        raise ValueError("webhook URL must be http(s)")
    body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", EVENT_ID_HEADER: str(event["id"])}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, int(time.time()), body)
    try:
        # Inside: a URL urllib3 cannot parse is refused by an error whose text quotes it (LocationParseError).
        pool, target = _pool(url)
        response = pool.urlopen(
            "POST",
            target,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(total=timeout_s),
            retries=False,
            redirect=False,
        )
    except urllib3.exceptions.HTTPError as exc:  # its text names the URL: keep it out of the traceback
        raise WebhookError(None, type(exc).__name__) from None
    if not 200 <= response.status < 300:
        raise WebhookError(response.status)
    return int(response.status)

"""Gateway webhooks replayed, bursting or unholdable, against the simulator and a real PostgreSQL: a
signed body is recorded once whatever its unsigned headers, costs no gateway call when replayed, wakes a
parked job at most once per interval, and is recorded even when jsonb cannot hold it."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest

from local.gateway_sim import Simulator
from shared.bootstrap import App
from shared.gateway_signatures import cashfree_webhook_signature
from shared.services.intake import accept_payment
from shared.settings import Settings
from tests.integration.gateway_helpers import (
    CASHFREE,
    Received,
    WebhookInbox,
    drain,
    gateway_order,
    jobs,
    open_for,
    pay_at_gateway,
    payment_request,
    pgmq_gateway_settings,
    post_webhook,
)

DAY_MS = 86_400_000


@pytest.fixture
def settings(database_url: str, sim: Simulator) -> Settings:
    return pgmq_gateway_settings(
        database_url,
        sim,
        # An hour, so that a slow machine cannot stretch a test's burst past the interval.
        webhook_wake_interval_s=3_600,
    )


def order_fetches(sim: Simulator) -> int:
    """GET /pg/orders/... calls the simulator has answered: a Cashfree job looking at its order."""
    return sum(1 for c in sim.calls if c.method == "GET" and c.path.startswith("/pg/orders"))


def recorded(app: App) -> int:
    row = app.db.fetch_one("SELECT count(*) AS n FROM gateway_webhook_events")
    assert row is not None
    return int(row["n"])


def outcomes(app: App) -> list[str]:
    return [r["outcome"] for r in app.db.fetch_all("SELECT outcome FROM gateway_webhook_events ORDER BY id")]


def cashfree_signed(body: bytes, timestamp_ms: int) -> dict[str, str]:
    """Headers as Cashfree sends them, signed at timestamp_ms, with an idempotency key never seen before."""
    stamp = str(timestamp_ms)
    return {
        "content-type": "application/json",
        "x-webhook-timestamp": stamp,
        "x-webhook-signature": cashfree_webhook_signature(stamp, body, CASHFREE[1]),
        "x-webhook-version": "2025-01-01",
        "x-idempotency-key": secrets.token_urlsafe(32),
    }


def now_ms() -> int:
    return int(time.time() * 1000)


def parked_cashfree_checkout(app: App, sim: Simulator) -> dict[str, Any]:
    """A submitted Cashfree checkout whose job looked at the ACTIVE order and waits (parked) since an
    hour ago: any webhook allowed to wake it would."""
    view = open_for(app, "demo-user-1", "cashfree")
    accept_payment(app, "demo-user-1", "k1", payment_request(view))
    drain(app)
    parked = app.db.execute("UPDATE payment_jobs SET parked_at = now() - interval '1 hour' WHERE parked_at IS NOT NULL")
    assert parked == 1
    return view


def attempt_webhook(inbox: WebhookInbox, sim: Simulator, view: dict[str, Any], outcome: str) -> Received:
    """The shopper's attempt at Cashfree's checkout, and the signed webhook Cashfree sends for it (not
    delivered to us yet)."""
    pay_at_gateway(sim, view, outcome)
    (sent,) = inbox.pending()
    return sent


def drain_after_each(app: App, deliveries: list[tuple[bytes, dict[str, str]]]) -> list[int]:
    """Each webhook delivered, then the queue run, so that a job it woke fetches and parks again before the
    next one comes: the most fetches the webhooks could cause."""
    statuses = []
    for body, headers in deliveries:
        statuses.append(post_webhook("cashfree", body, headers)["statusCode"])
        drain(app)
    return statuses


@pytest.mark.parametrize("age_ms", [3 * DAY_MS, 0], ids=["signed-3-days-ago", "signed-just-now"])
def test_thirty_replays_of_a_signed_drop_webhook_with_fresh_idempotency_keys_cost_no_call_and_no_row(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox, age_ms: int
) -> None:
    # Given a parked Cashfree job, and the signed USER_DROPPED webhook Cashfree sent for its order, which
    # we recorded when it came (signed age_ms ago)
    view = parked_cashfree_checkout(app, sim)
    dropped = attempt_webhook(inbox, sim, view, "user_dropped")
    captured = cashfree_signed(dropped.body, now_ms() - age_ms)
    assert post_webhook("cashfree", dropped.body, captured)["statusCode"] == 200
    drain(app)
    app.db.execute("UPDATE payment_jobs SET parked_at = now() - interval '1 hour' WHERE parked_at IS NOT NULL")
    rows, fetches = recorded(app), order_fetches(sim)

    # When someone replays that signed request 30 times, each with a fresh x-idempotency-key
    replays = [(dropped.body, captured | {"x-idempotency-key": secrets.token_urlsafe(32)}) for _ in range(30)]
    statuses = drain_after_each(app, replays)

    # Then each is answered 200 as a duplicate: no row, no job woken, no call to the gateway
    assert set(statuses) == {200}
    assert recorded(app) == rows
    assert order_fetches(sim) == fetches
    assert jobs(app.db)[0]["status"] == "processing"


def test_twenty_razorpay_replays_with_fresh_event_ids_add_no_row_and_no_call(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a Razorpay checkout paid at the gateway and settled by its webhooks
    view = open_for(app, "demo-user-1", "razorpay")
    pay_at_gateway(sim, view)
    delivered = inbox.pending()
    assert set(inbox.deliver(delivered)) == {200}
    drain(app)
    rows, calls = recorded(app), sim.stats("razorpay")["calls"]

    # When each of its signed bodies is replayed 20 times with a fresh X-Razorpay-Event-Id
    statuses = [
        post_webhook("razorpay", sent.body, sent.headers | {"x-razorpay-event-id": "evt_" + secrets.token_urlsafe(12)})[
            "statusCode"
        ]
        for sent in delivered
        for _ in range(20)
    ]
    drain(app)

    # Then nothing is recorded again and Razorpay is not called
    assert set(statuses) == {200}
    assert recorded(app) == rows
    assert sim.stats("razorpay")["calls"] == calls
    assert [j["status"] for j in jobs(app.db)] == ["succeeded"]


def test_a_burst_of_distinct_failure_webhooks_wakes_a_parked_job_once_in_the_interval(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a parked Cashfree job, and the shopper's five failed or abandoned attempts on its order: five
    # distinct webhooks, each genuinely signed
    view = parked_cashfree_checkout(app, sim)
    attempts = [attempt_webhook(inbox, sim, view, o) for o in ("failed", "user_dropped") * 2 + ("failed",)]
    fetches = order_fetches(sim)

    # When they arrive one after another, the queue running after each
    statuses = drain_after_each(app, [(sent.body, sent.headers) for sent in attempts])

    # Then the first wakes the job, which fetches the order once; the rest find it looked just now
    assert set(statuses) == {200}
    assert order_fetches(sim) == fetches + 1
    assert outcomes(app) == ["job_woken"] + ["wake_deferred"] * 4
    assert jobs(app.db)[0]["status"] == "processing"

    # And a success still wakes it at once, and pays the order
    paid = attempt_webhook(inbox, sim, view, "success")
    assert drain_after_each(app, [(paid.body, paid.headers)]) == [200]
    assert [j["status"] for j in jobs(app.db)] == ["succeeded"]


def _variant(sent: Received, **changes: Any) -> bytes:
    """Another body about the same order: what a gateway may also have signed (a later attempt)."""
    body = json.loads(sent.body)
    body["type"] = changes.pop("type", body["type"])
    body["data"]["payment"].update(changes)
    return json.dumps(body, separators=(",", ":")).encode()


def test_webhooks_for_a_paid_checkout_make_no_gateway_call(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a Cashfree checkout paid at the gateway and settled
    view = open_for(app, "demo-user-1", "cashfree")
    paid = attempt_webhook(inbox, sim, view, "success")
    assert post_webhook("cashfree", paid.body, paid.headers)["statusCode"] == 200
    drain(app)
    assert [j["status"] for j in jobs(app.db)] == ["succeeded"]
    fetches, rows = order_fetches(sim), recorded(app)

    # When its success comes again with fresh headers, and other signed bodies about its order arrive
    others = [
        _variant(paid, type="PAYMENT_FAILED_WEBHOOK", payment_status="FAILED", cf_payment_id="5114910000001"),
        _variant(
            paid, type="PAYMENT_USER_DROPPED_WEBHOOK", payment_status="USER_DROPPED", cf_payment_id="5114910000002"
        ),
        _variant(paid, cf_payment_id="5114910000003"),
    ]
    statuses = drain_after_each(
        app, [(paid.body, cashfree_signed(paid.body, now_ms()))] + [(b, cashfree_signed(b, now_ms())) for b in others]
    )

    # Then the replay is a duplicate, the others are recorded, and nothing calls Cashfree
    assert set(statuses) == {200}
    assert recorded(app) == rows + len(others)
    assert outcomes(app)[rows:] == ["ignored", "ignored", "already_handled"]
    assert order_fetches(sim) == fetches
    assert app.db.fetch_one("SELECT count(*) AS n FROM pgmq.q_payments") == {"n": 0}


def test_a_stale_signed_webhook_never_seen_is_recorded_once_and_does_nothing(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox
) -> None:
    # Given a parked Cashfree job and a drop webhook for its order signed 3 days ago, never delivered
    view = parked_cashfree_checkout(app, sim)
    dropped = attempt_webhook(inbox, sim, view, "user_dropped")
    fetches = order_fetches(sim)

    # When it arrives, and again with fresh headers
    old = now_ms() - 3 * DAY_MS
    statuses = drain_after_each(app, [(dropped.body, cashfree_signed(dropped.body, old)) for _ in range(2)])

    # Then it is accepted and recorded once, as stale: the job is not woken, Cashfree is not called
    assert statuses == [200, 200]
    assert outcomes(app) == ["stale"]
    assert order_fetches(sim) == fetches
    row = app.db.fetch_one("SELECT signed_at, gateway_order_id FROM gateway_webhook_events")
    assert row is not None and row["gateway_order_id"] == gateway_order(view)
    assert abs(row["signed_at"].timestamp() * 1000 - old) < 1


@pytest.mark.parametrize(
    ("prefix", "read"),
    [
        (b'{"note":"\\u0000",', True),  # valid JSON; jsonb has no NUL character
        (b'{"note":"\\ud800",', True),  # valid JSON grammar (RFC 8259 section 8.2); jsonb refuses lone surrogates
        (b'{"note":NaN,', False),  # not JSON (RFC 8259 section 6), though Python's json reads it
    ],
    ids=["nul-escape", "lone-surrogate", "nan"],
)
def test_a_signed_body_jsonb_cannot_hold_is_recorded_byte_for_byte_and_answered_200(
    app: App, sim: Simulator, demo: dict[str, int], inbox: WebhookInbox, prefix: bytes, read: bool
) -> None:
    # Given a signed Cashfree drop webhook whose body jsonb cannot hold
    view = open_for(app, "demo-user-1", "cashfree")
    dropped = attempt_webhook(inbox, sim, view, "user_dropped")
    body = prefix + dropped.body[1:]
    headers = cashfree_signed(body, now_ms())

    # When it arrives, and its retry after it
    answers = [post_webhook("cashfree", body, headers)["statusCode"] for _ in range(2)]

    # Then both are answered 200, and it is recorded once: its bytes whole, no jsonb copy; read and
    # acted on when it is JSON, recorded unreadable when it is not
    assert answers == [200, 200]
    row = app.db.fetch_one("SELECT body, payload, outcome, gateway_order_id FROM gateway_webhook_events")
    assert row is not None
    assert (bytes(row["body"]), row["payload"]) == (body, None)
    if read:
        assert (row["outcome"], row["gateway_order_id"]) == ("ignored", gateway_order(view))
    else:
        assert (row["outcome"], row["gateway_order_id"]) == ("unreadable", None)
    assert recorded(app) == 1

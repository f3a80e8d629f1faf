"""The shop's backend (the /v1/merchant routes, scope payments/merchant) and the shopper's order view,
through the handlers as API Gateway invokes them, against the real database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from functions.enqueue.handler import handler as enqueue_handler
from functions.status.handler import handler as status_handler
from local.lambda_shim import LocalContext, http_api_event
from shared.bootstrap import App
from shared.services.line import end_sold_out_jobs
from shared.services.outbox import sweep
from tests.integration.helpers import HOLDERS, deliver, pay, pending_order, receive, row_counts

MERCHANT = "payments/merchant"
SHOP = "shop-backend"


def call(handler: Any, method: str, path: str, **options: Any) -> tuple[int, dict[str, Any]]:
    """answered's status and body."""
    status, answer, _ = answered(handler, method, path, **options)
    return status, answer


def answered(
    handler: Any,
    method: str,
    path: str,
    *,
    user: str = SHOP,
    scopes: tuple[str, ...] = (MERCHANT,),
    body: Any = None,
    key: str | None = None,
    query: str = "",
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A merchant route's answer to the handler, as API Gateway hands it over: status, body and headers."""
    headers = {"content-type": "application/json"} | ({"idempotency-key": key} if key else {})
    event = http_api_event(
        method=method,
        path=path,
        route_key=f"{method} {path}",
        query=query,
        headers=headers,
        body=b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode()),
        claims={"sub": user, "scope": " ".join(scopes)},
        scopes=list(scopes),
        path_parameters=None,
        source_ip="127.0.0.1",
    )
    result = handler(event, LocalContext("test"))
    return result["statusCode"], json.loads(result["body"]), result.get("headers") or {}


def products(app: App) -> list[dict[str, Any]]:
    return app.db.fetch_all("SELECT id, price_paise, stock FROM products ORDER BY id")


def test_an_order_is_priced_from_the_catalogue_and_its_key_replays_it(app: App, demo: dict[str, int]) -> None:
    # Given two products of the catalogue and a shopper the queue has never seen
    first, second = products(app)[:2]
    body = {
        "user_id": "shopper-77",
        "items": [{"product_id": second["id"], "quantity": 2}, {"product_id": first["id"], "quantity": 1}],
    }

    # When the shop's backend creates the order
    status, order = call(enqueue_handler, "POST", "/v1/merchant/orders", body=body, key="order-77")

    # Then it is priced by the catalogue, its items in product order, and the shopper exists now
    assert status == 201, order
    assert order["total_paise"] == first["price_paise"] + 2 * second["price_paise"]
    assert [(i["product_id"], i["quantity"], i["unit_price_paise"]) for i in order["items"]] == [
        (first["id"], 1, first["price_paise"]),
        (second["id"], 2, second["price_paise"]),
    ]
    assert (order["user_id"], order["status"], order["job"]) == ("shopper-77", "pending", None)
    assert app.db.fetch_one("SELECT count(*) n FROM users WHERE id = 'shopper-77'") == {"n": 1}

    # And the same key and body answer the same order; another body under the key is refused
    again_status, again = call(enqueue_handler, "POST", "/v1/merchant/orders", body=body, key="order-77")
    assert (again_status, again["order_id"]) == (200, order["order_id"])
    other = body | {"items": [{"product_id": first["id"], "quantity": 5}]}
    reused, refused = call(enqueue_handler, "POST", "/v1/merchant/orders", body=other, key="order-77")
    assert (reused, refused["error"]["code"]) == (409, "idempotency_key_reused")
    assert app.db.fetch_one("SELECT count(*) n FROM orders WHERE user_id = 'shopper-77'") == {"n": 1}


def test_an_order_for_more_units_than_on_hand_or_an_unknown_product_records_nothing(
    app: App, demo: dict[str, int]
) -> None:
    product = products(app)[0]
    before = row_counts(app.db)

    short, body = call(
        enqueue_handler,
        "POST",
        "/v1/merchant/orders",
        body={"user_id": "shopper-8", "items": [{"product_id": product["id"], "quantity": product["stock"] + 1}]},
        key="short",
    )
    missing, nobody = call(
        enqueue_handler,
        "POST",
        "/v1/merchant/orders",
        body={"user_id": "shopper-8", "items": [{"product_id": 999_999, "quantity": 1}]},
        key="missing",
    )

    assert (short, body["error"]["code"], body["error"]["details"]) == (
        409,
        "out_of_stock",
        {"product_id": product["id"], "available": product["stock"]},
    )
    assert (missing, nobody["error"]["code"], nobody["error"]["details"]) == (
        404,
        "product_not_found",
        {"product_id": 999_999},
    )
    assert row_counts(app.db) == before
    assert app.db.fetch_one("SELECT count(*) n FROM users WHERE id = 'shopper-8'") == {"n": 0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "s", "items": []}, "items"),
        ({"user_id": "s", "items": [{"product_id": 1, "quantity": 1}, {"product_id": 1, "quantity": 2}]}, "body"),
        (
            {"user_id": "s", "items": [{"product_id": 1, "quantity": 1, "unit_price_paise": 1}]},
            "items.0.unit_price_paise",
        ),
        ({"user_id": "", "items": [{"product_id": 1, "quantity": 1}]}, "user_id"),
    ],
    ids=["no-items", "a-product-twice", "a-price-from-the-caller", "no-shopper"],
)
def test_an_order_body_the_api_does_not_take_is_a_422_naming_the_field(
    app: App, demo: dict[str, int], body: dict[str, Any], field: str
) -> None:
    status, answer = call(enqueue_handler, "POST", "/v1/merchant/orders", body=body, key="k")

    assert (status, answer["error"]["code"], answer["error"]["details"]["field"]) == (422, "validation_error", field)


def test_a_validation_error_never_repeats_a_long_field_name_the_client_chose(app: App, demo: dict[str, int]) -> None:
    name = "x" * 10_000
    status, answer = call(
        enqueue_handler,
        "POST",
        "/v1/merchant/orders",
        body={"user_id": "s", "items": [{"product_id": 1, "quantity": 1}], name: 1},
        key="k",
    )

    assert (status, answer["error"]["code"]) == (422, "validation_error")
    assert len(json.dumps(answer)) < 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/merchant/orders"),
        ("POST", "/v1/merchant/payments"),
        ("POST", "/v1/merchant/wallet-adjustments"),
        ("GET", "/v1/merchant/orders"),
        ("GET", "/v1/merchant/payments"),
        ("GET", "/v1/merchant/payments/00000000-0000-4000-8000-000000000000"),
        ("GET", "/v1/merchant/wallet"),
        ("GET", "/v1/merchant/events"),
        ("POST", "/v1/merchant/events/00000000-0000-4000-8000-000000000000/redeliver"),
    ],
)
def test_a_shoppers_token_opens_no_merchant_route(app: App, demo: dict[str, int], method: str, path: str) -> None:
    handler = enqueue_handler if method == "POST" and "/events/" not in path else status_handler
    status, answer = call(handler, method, path, user="demo-user-1", scopes=("payments/pay",), body={}, key="k")

    assert (status, answer["error"]["code"]) == (403, "forbidden")


def test_a_wallet_adjustment_writes_a_ledger_entry_and_never_overdraws(app: App, demo: dict[str, int]) -> None:
    # Given a shopper with Rs 5,000
    adjust = "/v1/merchant/wallet-adjustments"
    credit = {"user_id": "demo-user-1", "amount_paise": 25_000, "reason": "goodwill: late delivery"}

    # When the backend credits Rs 250, twice under one key, then debits more than the balance
    status, entry = call(enqueue_handler, "POST", adjust, body=credit, key="credit-1")
    replay_status, replay = call(enqueue_handler, "POST", adjust, body=credit, key="credit-1")
    before = row_counts(app.db)
    short, refused = call(
        enqueue_handler,
        "POST",
        adjust,
        body={"user_id": "demo-user-1", "amount_paise": -10_000_000, "reason": "chargeback"},
        key="debit-1",
    )

    # Then one credit was written, with its reason, and the overdraft changed nothing
    assert (status, entry["kind"], entry["balance_paise"], entry["reason"]) == (
        201,
        "credit",
        525_000,
        "goodwill: late delivery",
    )
    assert (replay_status, replay) == (200, entry)
    assert (short, refused["error"]["code"], refused["error"]["details"]) == (
        409,
        "insufficient_balance",
        {"balance_paise": 525_000},
    )
    assert row_counts(app.db) == before
    # And the wallet's ledger adds up to its balance
    _, wallet = call(status_handler, "GET", "/v1/merchant/wallet", query="user_id=demo-user-1")
    assert wallet["balance_paise"] == 525_000
    ledger = sum(e["amount_paise"] * (1 if e["kind"] == "credit" else -1) for e in wallet["entries"])
    assert ledger == wallet["balance_paise"]
    assert wallet["entries"][0]["reason"] == "goodwill: late delivery"


def test_a_first_credit_opens_a_wallet_and_a_debit_without_one_is_refused(app: App, demo: dict[str, int]) -> None:
    adjust = "/v1/merchant/wallet-adjustments"
    no_wallet, refused = call(
        enqueue_handler, "POST", adjust, body={"user_id": "new-9", "amount_paise": -1, "reason": "fee"}, key="d"
    )
    opened, entry = call(
        enqueue_handler, "POST", adjust, body={"user_id": "new-9", "amount_paise": 500, "reason": "sign-up"}, key="c"
    )

    assert (no_wallet, refused["error"]["code"]) == (409, "insufficient_balance")
    assert (opened, entry["balance_paise"], entry["currency"]) == (201, 500, "INR")


def test_a_payment_on_behalf_is_the_shoppers_job_recorded_as_the_clients(app: App, demo: dict[str, int]) -> None:
    # Given a shopper's pending order
    order = pending_order(app.db, "demo-user-2")

    # When the shop's backend starts its wallet payment, and the queue runs it
    status, job, headers = answered(
        enqueue_handler,
        "POST",
        "/v1/merchant/payments",
        body={"user_id": "demo-user-2", "order_id": order, "method": "wallet"},
        key="renewal-1",
    )
    assert status == 202, job
    deliver(app, receive(app))

    # Then it is the shopper's job, recorded as requested by the client, and paid
    assert (job["user_id"], job["requested_by"], job["status"]) == ("demo-user-2", SHOP, "queued")
    # And the answer's Location is the client's own route to it (it named the shopper's, which a merchant
    # token cannot read: 403), which shows it paid, and whose it is
    location = headers["Location"]
    assert location == f"/v1/merchant/payments/{job['job_id']}"
    read, one = call(status_handler, "GET", location)
    assert read == 200 and (one["user_id"], one["job_id"], one["status"], one["requested_by"]) == (
        "demo-user-2",
        job["job_id"],
        "succeeded",
        SHOP,
    )
    assert one["amount_paise"] > 0 and one["payment_id"] is not None
    for unknown in ("00000000-0000-4000-8000-000000000000", "not-a-uuid"):
        missing, answer = call(status_handler, "GET", f"/v1/merchant/payments/{unknown}")
        assert (missing, answer["error"]["code"]) == (404, "job_not_found")
    _, payments = call(status_handler, "GET", "/v1/merchant/payments", query="user_id=demo-user-2")
    assert [(p["job_id"], p["status"], p["requested_by"]) for p in payments["payments"]] == [
        (job["job_id"], "succeeded", SHOP)
    ]
    # And its event says so
    event = app.db.fetch_one("SELECT payload FROM outbox_events WHERE job_id = %s", (job["job_id"],))
    assert event is not None and event["payload"]["requested_by"] == SHOP
    # And a gateway method cannot be started for an absent shopper
    refused, answer = call(
        enqueue_handler,
        "POST",
        "/v1/merchant/payments",
        body={"user_id": "demo-user-2", "order_id": order, "method": "razorpay"},
        key="renewal-2",
    )
    assert (refused, answer["error"]["code"]) == (422, "validation_error")


def test_a_payment_on_behalf_of_someone_elses_order_is_not_found(app: App, demo: dict[str, int]) -> None:
    before = row_counts(app.db)
    status, answer = call(
        enqueue_handler,
        "POST",
        "/v1/merchant/payments",
        body={"user_id": "demo-user-3", "order_id": pending_order(app.db, "demo-user-2"), "method": "wallet"},
        key="wrong-shopper",
    )

    assert (status, answer["error"]["code"]) == (404, "order_not_found")
    assert row_counts(app.db) == before


def test_events_since_a_time_show_their_delivery_and_a_redelivery_publishes_again(
    app: App, demo: dict[str, int]
) -> None:
    # Given a paid order whose event the relay published
    start = datetime.now(UTC) - timedelta(seconds=5)
    accepted, job = call(
        enqueue_handler,
        "POST",
        "/v1/merchant/payments",
        body={"user_id": "demo-user-1", "order_id": pending_order(app.db, "demo-user-1"), "method": "wallet"},
        key="evt-1",
    )
    assert accepted == 202, job
    deliver(app, receive(app))
    since = "since=" + start.isoformat().replace("+00:00", "Z")

    # When the backend lists events since before it
    _, listed = call(status_handler, "GET", "/v1/merchant/events", query=since)

    # Then the event is there as consumers receive it, published
    (event,) = listed["events"]
    assert (event["type"], event["data"]["job_id"], event["delivery"]["state"]) == (
        "PaymentSucceeded",
        job["job_id"],
        "published",
    )

    # When it asks for the event again, Then it is pending until the sweeper publishes it again
    asked, redelivered = call(status_handler, "POST", f"/v1/merchant/events/{event['id']}/redeliver")
    assert (asked, redelivered["delivery"]["state"], redelivered["delivery"]["redeliveries"]) == (202, "pending", 1)
    assert sweep(app)["events_republished"] == 1
    _, after = call(status_handler, "GET", "/v1/merchant/events", query=since)
    assert after["events"][0]["delivery"]["state"] == "published"
    assert after["events"][0]["id"] == event["id"]
    # And an unknown event or a time without its offset is refused
    assert call(status_handler, "POST", f"/v1/merchant/events/{'0' * 8}-0000-4000-8000-{'0' * 12}/redeliver")[0] == 404
    bad, answer = call(status_handler, "GET", "/v1/merchant/events", query="since=2026-01-01T00:00:00")
    assert (bad, answer["error"]["details"]["field"]) == (422, "since")


def test_the_event_list_pages_past_more_events_at_one_instant_than_a_page_holds(app: App, sale: int) -> None:
    # Given four holders of the hot product waiting, whose line a bulk end ends in one transaction when it sells
    # out: four events at one instant (a real bulk end writes up to a thousand)
    start = datetime.now(UTC) - timedelta(seconds=5)
    for user in HOLDERS:
        pay(app, user, f"k-{user}")
    app.db.execute("UPDATE products SET stock = 0 WHERE id = %s", (sale,))
    assert end_sold_out_jobs(app, [sale]) == len(HOLDERS) == 4
    assert app.db.fetch_one("SELECT count(DISTINCT created_at) AS n FROM outbox_events") == {"n": 1}

    # When the backend pages through them two at a time, as each full page says
    seen: list[str] = []
    query = "since=" + quote(start.isoformat())
    for _ in range(4):
        status, page = call(status_handler, "GET", "/v1/merchant/events", query=query + "&limit=2")
        assert status == 200, page
        seen += [e["id"] for e in page["events"]]
        if page["next_since"] is None:
            assert page["next_after"] is None
            break
        query = f"since={quote(page['next_since'])}&after={page['next_after']}"

    # Then it reads each event once, and the last page says there is no more
    assert sorted(seen) == sorted(str(r["id"]) for r in app.db.fetch_all("SELECT id FROM outbox_events"))
    assert len(seen) == 4 and page["next_since"] is None
    # And an after that is no event id is refused, naming it
    bad, answer = call(status_handler, "GET", "/v1/merchant/events", query=query + "&after=x")
    assert (bad, answer["error"]["code"], answer["error"]["details"]["field"]) == (422, "validation_error", "after")


def test_a_shopper_reads_their_order_with_its_amount_and_the_ways_to_pay(app: App, demo: dict[str, int]) -> None:
    order = pending_order(app.db, "demo-user-1")
    total = app.db.fetch_one("SELECT total_paise FROM orders WHERE id = %s", (order,))
    assert total is not None

    status, view = call(status_handler, "GET", f"/v1/orders/{order}", user="demo-user-1", scopes=("payments/pay",))
    other, hidden = call(status_handler, "GET", f"/v1/orders/{order}", user="demo-user-2", scopes=("payments/pay",))
    junk, _ = call(status_handler, "GET", "/v1/orders/1e3", user="demo-user-1", scopes=("payments/pay",))

    assert (status, view["total_paise"], view["status"], view["currency"]) == (
        200,
        total["total_paise"],
        "pending",
        "INR",
    )
    assert view["items"][0]["name"].startswith("Product ")
    assert "wallet" in view["payment_methods"]
    assert (other, hidden["error"]["code"], junk) == (404, "order_not_found", 404)


def test_a_payment_on_behalf_of_an_order_whose_product_sold_out_is_refused_at_once(
    app: App, demo: dict[str, int]
) -> None:
    # Given a shopper's order of a product with no unit left
    order = pending_order(app.db, "demo-user-1")
    app.db.execute(
        "UPDATE products SET stock = 0 WHERE id IN (SELECT (i->>'product_id')::bigint FROM orders, "
        "jsonb_array_elements(items) i WHERE orders.id = %s)",
        (order,),
    )
    before = row_counts(app.db)

    # When the backend starts its payment, Then it is refused as the shopper's own would be, and nothing is made
    status, answer = call(
        enqueue_handler,
        "POST",
        "/v1/merchant/payments",
        body={"user_id": "demo-user-1", "order_id": order, "method": "wallet"},
        key="sold-out",
    )
    assert (status, answer["error"]["code"]) == (409, "sold_out")
    assert row_counts(app.db) == before

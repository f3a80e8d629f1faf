"""The API handlers invoked as API Gateway would invoke them, against the real database."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from functions.enqueue.handler import handler as enqueue_handler
from functions.status.handler import handler as status_handler
from local.lambda_shim import LocalContext, http_api_event
from shared.bootstrap import App
from tests.integration.helpers import pending_order, row_counts

OPERATOR = "payments/operator"


def call(
    handler: Any,
    method: str,
    path: str,
    *,
    user: str | None = "demo-user-1",
    body: bytes | str = b"",
    headers: dict[str, str] | None = None,
    scopes: list[str] | None = None,
    raw_event: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    event = raw_event or http_api_event(
        method=method,
        path=path,
        route_key=f"{method} {path}",
        query="",
        headers={"content-type": "application/json"} | (headers or {}),
        body=body.encode() if isinstance(body, str) else body,
        claims=None if user is None else {"sub": user, "scope": " ".join(scopes or [])},
        scopes=scopes,
        path_parameters=None,
        source_ip="127.0.0.1",
    )
    result = handler(event, LocalContext("test"))
    return result["statusCode"], json.loads(result["body"]), result.get("headers", {})


def post_payment(body: bytes | str, key: str | None = "key-1", user: str | None = "demo-user-1"):  # type: ignore[no-untyped-def]
    return call(
        enqueue_handler,
        "POST",
        "/v1/payments",
        user=user,
        body=body,
        headers={"idempotency-key": key} if key is not None else {},
    )


def test_valid_payment_is_accepted_with_202(app: App, demo: dict[str, int]) -> None:
    order = pending_order(app.db, "demo-user-1")
    status, body, headers = post_payment(json.dumps({"order_id": order, "method": "wallet"}))
    assert status == 202
    assert body["status"] == "queued" and set(body) >= {"job_id", "position", "eta_seconds", "poll_after_ms"}
    assert headers["Location"] == body["status_url"]

    status, again, headers = post_payment(json.dumps({"method": "wallet", "order_id": order}))  # same body
    assert status == 202 and again["job_id"] == body["job_id"] and headers["Idempotent-Replayed"] == "true"


BAD_REQUESTS = [
    # (name, body, key, user, status, code)
    ("missing key", '{"order_id": 1, "method": "wallet"}', None, "demo-user-1", 400, "idempotency_key_required"),
    ("blank key", '{"order_id": 1, "method": "wallet"}', "  ", "demo-user-1", 400, "idempotency_key_required"),
    ("key too long", '{"order_id": 1, "method": "wallet"}', "k" * 256, "demo-user-1", 400, "idempotency_key_invalid"),
    ("malformed json", '{"order_id": 1,', "k", "demo-user-1", 400, "invalid_json"),
    ("empty body", "", "k", "demo-user-1", 400, "invalid_json"),
    ("json array", "[1, 2]", "k", "demo-user-1", 400, "invalid_json"),
    ("json string", '"pay"', "k", "demo-user-1", 400, "invalid_json"),
    ("order_id as string", '{"order_id": "1", "method": "wallet"}', "k", "demo-user-1", 422, "validation_error"),
    ("order_id float", '{"order_id": 1.5, "method": "wallet"}', "k", "demo-user-1", 422, "validation_error"),
    ("order_id bool", '{"order_id": true, "method": "wallet"}', "k", "demo-user-1", 422, "validation_error"),
    ("order_id zero", '{"order_id": 0, "method": "wallet"}', "k", "demo-user-1", 422, "validation_error"),
    ("order_id negative", '{"order_id": -5, "method": "wallet"}', "k", "demo-user-1", 422, "validation_error"),
    (
        "order_id overflow",
        '{"order_id": 99999999999999999999999, "method": "wallet"}',
        "k",
        "demo-user-1",
        422,
        "validation_error",
    ),
    ("order_id null", '{"order_id": null, "method": "wallet"}', "k", "demo-user-1", 422, "validation_error"),
    ("missing method", '{"order_id": 1}', "k", "demo-user-1", 422, "validation_error"),
    ("unknown method", '{"order_id": 1, "method": "cash"}', "k", "demo-user-1", 422, "validation_error"),
    (
        "gateway method not enabled",
        '{"order_id": 1, "method": "razorpay"}',
        "k",
        "demo-user-1",
        422,
        "method_not_supported",
    ),
    (
        "extra field (user id in body)",
        '{"order_id": 1, "method": "wallet", "user_id": "demo-user-2"}',
        "k",
        "demo-user-1",
        422,
        "validation_error",
    ),
    (
        "sql injection in key",
        '{"order_id": 999999, "method": "wallet"}',
        "'; DROP TABLE wallets; --",
        "demo-user-1",
        404,
        "order_not_found",
    ),
    ("unknown order", '{"order_id": 999999, "method": "wallet"}', "k", "demo-user-1", 404, "order_not_found"),
    (
        "oversize body",
        '{"order_id": 1, "method": "wallet", "pad": "' + "x" * 20_000 + '"}',
        "k",
        "demo-user-1",
        413,
        "payload_too_large",
    ),
    ("no authenticated caller", '{"order_id": 1, "method": "wallet"}', "k", None, 401, "unauthorized"),
]


@pytest.mark.parametrize(
    ("name", "body", "key", "user", "status", "code"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_request_gets_its_4xx_and_changes_nothing(
    app: App, demo: dict[str, int], name: str, body: str, key: str | None, user: str | None, status: int, code: str
) -> None:
    before = row_counts(app.db)
    got_status, got, _ = post_payment(body, key, user)
    assert (got_status, got["error"]["code"]) == (status, code), name
    assert got["error"]["message"]
    assert row_counts(app.db) == before


def test_another_users_order_is_not_found(app: App, demo: dict[str, int]) -> None:
    before = row_counts(app.db)
    theirs = pending_order(app.db, "demo-user-2")
    status, body, _ = post_payment(json.dumps({"order_id": theirs, "method": "wallet"}))
    assert (status, body["error"]["code"]) == (404, "order_not_found")
    assert row_counts(app.db) == before


def test_non_utf8_base64_body_is_a_400(app: App, demo: dict[str, int]) -> None:
    event = http_api_event(
        method="POST",
        path="/v1/payments",
        route_key="POST /v1/payments",
        query="",
        headers={"idempotency-key": "k"},
        body=b"\xff\xfe\xfa",
        claims={"sub": "demo-user-1"},
        scopes=None,
        path_parameters=None,
        source_ip="127.0.0.1",
    )
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\xfe\xfa"
    status, body, _ = call(enqueue_handler, "POST", "/v1/payments", raw_event=event)
    assert (status, body["error"]["code"]) == (400, "invalid_body")


def test_job_status_is_visible_to_its_owner_only(app: App, demo: dict[str, int]) -> None:
    order = pending_order(app.db, "demo-user-1")
    _, accepted, _ = post_payment(json.dumps({"order_id": order, "method": "wallet"}))
    path = f"/v1/payments/{accepted['job_id']}"

    status, mine, _ = call(status_handler, "GET", path)
    assert status == 200 and mine["status"] == "queued" and mine["position"] >= 1

    status, theirs, _ = call(status_handler, "GET", path, user="demo-user-2")
    assert (status, theirs["error"]["code"]) == (404, "job_not_found")
    status, junk, _ = call(status_handler, "GET", "/v1/payments/not-a-uuid")
    assert (status, junk["error"]["code"]) == (404, "job_not_found")


@pytest.mark.parametrize("path", ["/v1/queue/status", "/v1/metrics", "/health/db"])
def test_operator_routes_need_the_operator_scope(app: App, demo: dict[str, int], path: str) -> None:
    status, body, _ = call(status_handler, "GET", path)
    assert (status, body["error"]["code"]) == (403, "forbidden")

    status, body, _ = call(status_handler, "GET", path, user="ops", scopes=[OPERATOR])
    assert status == 200, body


def test_queue_status_and_metrics_report_the_work(app: App, demo: dict[str, int]) -> None:
    order = pending_order(app.db, "demo-user-1")
    post_payment(json.dumps({"order_id": order, "method": "wallet"}))

    _, queue, _ = call(status_handler, "GET", "/v1/queue/status", user="ops", scopes=[OPERATOR])
    assert (queue["depth"], queue["in_flight"], queue["dlq_depth"]) == (1, 0, 0)
    assert queue["oldest_message_age_s"] >= 0
    _, metrics, _ = call(status_handler, "GET", "/v1/metrics", user="ops", scopes=[OPERATOR])
    assert metrics["windows"]["1m"]["processed"] == 0
    _, health, _ = call(status_handler, "GET", "/health/db", user="ops", scopes=[OPERATOR])
    assert health["reachable"] is True and 0 < health["connections_in_use"] <= health["max_connections"]


def test_unknown_route_is_a_404_with_an_error_code(app: App) -> None:
    status, body, _ = call(status_handler, "GET", "/v1/nothing-here")
    assert (status, body["error"]["code"]) == (404, "route_not_found")


def test_a_validation_error_names_a_client_chosen_field_cut_short(app: App, demo: dict[str, int]) -> None:
    # Given a payment body with an unknown field whose name is 10 KB of the client's choosing
    order = pending_order(app.db, "demo-user-1")
    body = json.dumps({"order_id": order, "method": "wallet", "x" * 10_000: 1})

    # When it is posted
    status, answer, _ = post_payment(body)

    # Then it is a 422 naming the field, cut short: the answer does not carry the client's 10 KB back
    assert (status, answer["error"]["code"]) == (422, "validation_error")
    assert answer["error"]["details"]["field"].startswith("x" * 64) and len(json.dumps(answer)) < 400

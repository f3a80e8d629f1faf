"""The one mapping of a refusal's kind to its HTTP status (shared/http.py), as the resolver every handler
installs answers it. The statuses and codes of the real routes are held by tests/integration/test_api_handlers.py
and tests/e2e/test_hostile_api.py."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from local.lambda_shim import LocalContext, http_api_event
from shared.domain import TransientError
from shared.errors import (
    Conflict,
    DomainError,
    ErrorKind,
    Forbidden,
    GatewayFailed,
    Invalid,
    Malformed,
    NotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
    gateway_busy,
)
from shared.http import HTTP_STATUS, install_error_handlers


def answer_to(error: Exception) -> tuple[int, dict[str, str], dict[str, Any]]:
    """(status, headers, body) of a route that raises the error, through the handlers' resolver."""
    resolver = APIGatewayHttpResolver()
    install_error_handlers(resolver)

    @resolver.get("/refuse")
    def refuse() -> Response[object]:
        raise error

    event = http_api_event(
        method="GET",
        path="/refuse",
        route_key="GET /refuse",
        query="",
        headers={},
        body=b"",
        claims=None,
        scopes=None,
        path_parameters=None,
        source_ip="127.0.0.1",
    )
    result = resolver.resolve(event, cast(LambdaContext, LocalContext("test")))
    return result["statusCode"], result.get("headers") or {}, json.loads(result["body"])


def test_every_kind_of_refusal_has_a_status() -> None:
    assert set(HTTP_STATUS) == set(ErrorKind)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (Malformed("invalid_json", "request body is not valid JSON"), 400),
        (Unauthorized("webhook_signature_invalid", "the webhook signature does not verify"), 401),
        (Forbidden("forbidden", "this route needs the 'payments/operator' scope"), 403),
        (NotFound("order_not_found", "no such order for this user"), 404),
        (Conflict("order_not_payable", "order is paid", order_status="paid"), 409),
        (TooLarge("payload_too_large", "request body exceeds 16384 bytes"), 413),
        (Invalid("validation_error", "order_id: Input should be a valid integer", field="order_id"), 422),
        (GatewayFailed("gateway_error", "the payment gateway refused to create the order"), 502),
    ],
)
def test_a_refusal_leaves_with_its_kinds_status_code_message_and_details(error: DomainError, status: int) -> None:
    got_status, headers, body = answer_to(error)

    expected: dict[str, object] = {"code": error.code, "message": error.message}
    if error.details:
        expected["details"] = error.details
    assert (got_status, body) == (status, {"error": expected})
    assert "Retry-After" not in headers


def test_a_refusal_for_now_says_when_to_retry() -> None:
    status, headers, body = answer_to(gateway_busy(3))

    assert (status, headers["Retry-After"], body["error"]) == (
        503,
        "3",
        {"code": "service_busy", "message": "the payment gateway is busy; retry shortly with the same request"},
    )


def test_a_refusal_for_now_with_details_keeps_them() -> None:
    error = Unavailable("gateway_unavailable", "not answering", retry_after_s=5, method="razorpay")

    status, headers, body = answer_to(error)

    assert (status, headers["Retry-After"], body["error"]["details"]) == (503, "5", {"method": "razorpay"})


def test_a_database_out_of_reach_is_busy_with_retry_after_and_an_unexpected_error_says_nothing_of_itself() -> None:
    busy = answer_to(TransientError("no connection"))
    broken = answer_to(KeyError("secret internals"))

    assert (busy[0], busy[1]["Retry-After"], busy[2]["error"]["code"]) == (503, "1", "service_busy")
    assert (broken[0], broken[2]) == (500, {"error": {"code": "internal_error", "message": "internal error"}})

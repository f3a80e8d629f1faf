"""POST /v1/payments: accept a payment request, queue it, answer 202 at once. POST /v1/checkouts: the
gateway order a gateway payment is made in. POST /v1/webhooks/{razorpay,cashfree}: the gateways' word,
verified, recorded and queued (no JWT on those two routes: the gateway's HMAC is checked instead)."""

# No `from __future__ import annotations`: the route is wrapped by the tracer, whose module globals
# cannot resolve a string annotation when Powertools builds the OpenAPI document.
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from shared.api_models import (
    CHECKOUT_REQUEST_BODY,
    COMMON_ERRORS,
    IDEMPOTENCY_KEY_HEADER,
    PAYMENT_REQUEST_BODY,
    CheckoutView,
    JobView,
    WebhookAck,
    error,
    model_response,
    responses,
)
from shared.bootstrap import bootstrap
from shared.domain import ApiError, CheckoutRequest
from shared.http import caller, install_error_handlers, json_response, read_body, read_raw_body
from shared.observability import log_metrics, logger, metrics, tracer
from shared.services.checkout import open_checkout
from shared.services.intake import accept_payment, parse_json_object, parse_payment_request, validate_idempotency_key
from shared.services.webhooks import receive_webhook

app = APIGatewayHttpResolver()
install_error_handlers(app)


@app.post(
    "/v1/payments",
    summary="Queue a payment for one of the caller's orders",
    status_code=202,
    responses=COMMON_ERRORS
    | responses(
        202,
        "accepted (or the same request replayed): the job and where to poll it",
        JobView,
        e400="idempotency_key_required, idempotency_key_invalid, invalid_json or invalid_body",
        e404="order_not_found",
        e409="idempotency_key_reused, order_not_payable, payment_in_progress, gateway_payment_in_use, "
        "checkout_required or gateway_order_mismatch",
        e413="payload_too_large",
        e422="validation_error, method_not_supported, bare_gateway_reference or gateway_signature_invalid",
    ),
    # Described here, parsed by our own code: its refusals keep their documented codes.
    openapi_extensions=PAYMENT_REQUEST_BODY | {"parameters": [IDEMPOTENCY_KEY_HEADER]},
)
@tracer.capture_method
def create_payment() -> Response[Any]:
    pq = bootstrap()
    event = app.current_event
    user_id = caller(event)
    key = validate_idempotency_key(event.headers.get("idempotency-key"))
    request = parse_payment_request(read_body(event, pq.settings.max_body_bytes), pq.settings.enabled_methods())
    accepted = accept_payment(pq, user_id, key, request)
    logger.info(
        "payment accepted",
        job_id=accepted.body["job_id"],
        user_id=user_id,
        order_id=request.order_id,
        replayed=accepted.replayed,
    )
    metrics.add_metric(
        name="PaymentsReplayed" if accepted.replayed else "PaymentsAccepted", unit=MetricUnit.Count, value=1
    )
    headers = {"Location": accepted.body["status_url"]}
    if accepted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(202, accepted.body, headers)


@app.post(
    "/v1/checkouts",
    summary="Create (or find) the gateway order to pay one of the caller's orders with",
    status_code=201,
    responses=COMMON_ERRORS
    | responses(
        201,
        "created at the gateway: what the page opens the gateway's checkout with",
        CheckoutView,
        e400="invalid_json or invalid_body",
        e404="order_not_found",
        e409="order_not_payable",
        e413="payload_too_large",
        e422="validation_error or method_not_supported",
        e502="gateway_error",
        e503="service_busy (Retry-After)",
    )
    | {200: model_response("the live checkout of this order and method, created before", CheckoutView)},
    openapi_extensions=CHECKOUT_REQUEST_BODY,
)
@tracer.capture_method
def create_checkout() -> Response[Any]:
    pq = bootstrap()
    event = app.current_event
    user_id = caller(event)
    data = parse_json_object(read_body(event, pq.settings.max_body_bytes))
    try:
        request = CheckoutRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(422, "validation_error", f"{where}: {first['msg']}", field=where) from None
    status, view = open_checkout(pq, user_id, request)
    metrics.add_metric(name="CheckoutsCreated" if status == 201 else "CheckoutsReused", unit=MetricUnit.Count, value=1)
    return json_response(status, view, {"Location": f"/v1/checkouts/{view['checkout_id']}"})


def _webhook(gateway: str) -> Response[Any]:
    pq = bootstrap()
    event = app.current_event
    headers = {k.lower(): v for k, v in (event.headers or {}).items()}
    body = receive_webhook(pq, gateway, read_raw_body(event, pq.settings.max_webhook_bytes), headers)
    metrics.add_metric(name="GatewayWebhooks", unit=MetricUnit.Count, value=1)
    return json_response(200, body)


_WEBHOOK_RESPONSES = responses(
    200,
    "verified and recorded (a duplicate too)",
    WebhookAck,
    e400="invalid_body: the base64 body API Gateway handed over does not decode",
    e401="webhook_signature_invalid",
    e413="payload_too_large",
) | {500: error("internal_error: the gateway retries")}


@app.post(
    "/v1/webhooks/razorpay",
    summary="Razorpay webhooks (X-Razorpay-Signature over the raw body; no JWT)",
    responses=_WEBHOOK_RESPONSES,
)
@tracer.capture_method
def razorpay_webhook() -> Response[Any]:
    return _webhook("razorpay")


@app.post(
    "/v1/webhooks/cashfree",
    summary="Cashfree PG webhooks (x-webhook-signature over x-webhook-timestamp + raw body; no JWT)",
    responses=_WEBHOOK_RESPONSES,
)
@tracer.capture_method
def cashfree_webhook() -> Response[Any]:
    return _webhook("cashfree")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

"""POST /v1/payments: accept a payment request, queue it, answer 202 at once. POST /v1/checkouts: the
gateway order a gateway payment is made in. POST /v1/webhooks/<gateway>, one route per gateway package:
the gateways' word, verified, recorded and queued (no JWT on those routes: the gateway's HMAC is checked
instead).
POST /v1/merchant/{orders,payments,wallet-adjustments}: the shop's backend, for a shopper it names."""

# No `from __future__ import annotations`: the route is wrapped by the tracer, whose module globals
# cannot resolve a string annotation when Powertools builds the OpenAPI document.
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from shared.api_models import (
    CHECKOUT_REQUEST_BODY,
    COMMON_ERRORS,
    IDEMPOTENCY_KEY_HEADER,
    MERCHANT_ERRORS,
    PAYMENT_REQUEST_BODY,
    CheckoutView,
    JobView,
    MerchantJobView,
    OrderView,
    WalletAdjustment,
    WebhookAck,
    error,
    model_response,
    request_body,
    responses,
)
from shared.api_models import JSON as JSON_TYPE
from shared.bootstrap import bootstrap
from shared.domain import (
    CheckoutRequest,
    MerchantOrderRequest,
    MerchantPaymentRequest,
    WalletAdjustmentRequest,
    validated,
)
from shared.gateways.port import GatewayPackage
from shared.gateways.registry import GATEWAYS
from shared.http import caller, install_error_handlers, json_response, read_body, read_raw_body, require_scope
from shared.observability import log_metrics, logger, metrics, tracer
from shared.services import merchant
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
        "checkout_required, gateway_order_mismatch, or sold_out (product_ids: what has no unit left; no job is made)",
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
    request = parse_payment_request(read_body(event, pq.settings.max_body_bytes), pq.methods())
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
    summary="Create (or find) the gateway order to pay one of the caller's orders with, at the gateway named or "
    'the first one up ("auto", or a list in order of preference)',
    status_code=201,
    responses=COMMON_ERRORS
    | responses(
        201,
        "created at the gateway: what the page opens the gateway's checkout with",
        CheckoutView,
        e400="invalid_json or invalid_body",
        e404="order_not_found",
        e409="order_not_payable, or sold_out (product_ids: what has no unit left; no checkout is opened)",
        e413="payload_too_large",
        e422="validation_error or method_not_supported",
        e502="gateway_error",
        e503='service_busy, gateway_unavailable (the gateway named is down: ask again with "auto") or '
        "gateways_unavailable (every gateway allowed is down or busy), with Retry-After",
    )
    | {200: model_response("a live checkout of this order at a gateway allowed, created before", CheckoutView)},
    openapi_extensions=CHECKOUT_REQUEST_BODY,
)
@tracer.capture_method
def create_checkout() -> Response[Any]:
    pq = bootstrap()
    event = app.current_event
    user_id = caller(event)
    request = _body(CheckoutRequest)
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


def _webhook_openapi(signature_headers: dict[str, str]) -> dict[str, Any]:
    """A webhook takes no bearer token: the gateway signs the raw body, and its headers say how."""
    return {
        "security": [],
        "parameters": [
            {"name": name, "in": "header", "required": True, "description": text, "schema": {"type": "string"}}
            for name, text in signature_headers.items()
        ],
        "requestBody": {
            "required": True,
            "content": {
                JSON_TYPE: {
                    "schema": {
                        "type": "object",
                        "description": "the gateway's event, verified over its raw bytes before it is read",
                    }
                }
            },
        },
    }


_WEBHOOK_RESPONSES = responses(
    200,
    "verified and recorded (a duplicate too)",
    WebhookAck,
    e400="invalid_body: the base64 body API Gateway handed over does not decode",
    e401="webhook_signature_invalid",
    e413="payload_too_large",
) | {500: error("internal_error: the gateway retries")}


def _webhook_route(package: GatewayPackage) -> None:
    """POST /v1/webhooks/<name>, documented by the gateway's package."""

    def receive() -> Response[Any]:
        return _webhook(package.name)

    receive.__name__ = receive.__qualname__ = f"{package.name}_webhook"
    app.post(
        f"/v1/webhooks/{package.name}",
        summary=package.webhook.summary,
        responses=_WEBHOOK_RESPONSES,
        openapi_extensions=_webhook_openapi(dict(package.webhook.headers)),
    )(tracer.capture_method(receive))


for _package in GATEWAYS.values():
    _webhook_route(_package)


Body = TypeVar("Body", bound=BaseModel)


def _body(model: type[Body]) -> Body:
    """The request body as the model takes it: 400 for what is not a JSON object, 422 naming the field."""
    event = app.current_event
    return validated(model, parse_json_object(read_body(event, bootstrap().settings.max_body_bytes)))


def _merchant() -> tuple[str, str]:
    """The merchant client (its token's subject, with the merchant scope) and the request's key."""
    event = app.current_event
    require_scope(event, bootstrap().settings.merchant_scope)
    return caller(event), validate_idempotency_key(event.headers.get("idempotency-key"))


_MERCHANT_WRITE = {"parameters": [IDEMPOTENCY_KEY_HEADER]}


@app.post(
    "/v1/merchant/orders",
    summary="Merchant: create an order for a shopper from product ids and quantities (prices and stock are ours)",
    status_code=201,
    responses=MERCHANT_ERRORS
    | responses(
        201,
        "created",
        OrderView,
        e400="idempotency_key_required, idempotency_key_invalid, invalid_json or invalid_body",
        e404="product_not_found (details.product_id)",
        e409="idempotency_key_reused, or out_of_stock (details.product_id, details.available)",
        e413="payload_too_large",
        e422="validation_error",
    )
    | {200: model_response("the same key and body again: the order it made", OrderView)},
    openapi_extensions=request_body(MerchantOrderRequest) | _MERCHANT_WRITE,
)
@tracer.capture_method
def merchant_create_order() -> Response[Any]:
    client_id, key = _merchant()
    written = merchant.create_order(bootstrap(), client_id, key, _body(MerchantOrderRequest))
    logger.info("merchant order", client_id=client_id, order_id=written.body["order_id"], status=written.status)
    return json_response(written.status, written.body)


@app.post(
    "/v1/merchant/payments",
    summary="Merchant: start a wallet payment of a shopper's order on their behalf (recorded as yours)",
    status_code=202,
    responses=MERCHANT_ERRORS
    | responses(
        202,
        "accepted: the shopper's job, requested_by the client",
        MerchantJobView,
        e400="idempotency_key_required, idempotency_key_invalid, invalid_json or invalid_body",
        e404="order_not_found (no such order for this shopper)",
        e409="idempotency_key_reused, order_not_payable, payment_in_progress, or sold_out (product_ids: what has "
        "no unit left; no job is made)",
        e413="payload_too_large",
        e422="validation_error (method: wallet only; a gateway payment needs the shopper at its checkout)",
    )
    | {200: model_response("the same key and body again: the job it made", MerchantJobView)},
    openapi_extensions=request_body(MerchantPaymentRequest) | _MERCHANT_WRITE,
)
@tracer.capture_method
def merchant_payment() -> Response[Any]:
    client_id, key = _merchant()
    request = _body(MerchantPaymentRequest)
    written = merchant.pay_on_behalf(bootstrap(), client_id, key, request)
    logger.info(
        "payment accepted on behalf",
        job_id=written.body["job_id"],
        user_id=request.user_id,
        order_id=request.order_id,
        requested_by=client_id,
    )
    # The client's own route to the job: status_url is the shopper's, which a merchant token cannot read.
    return json_response(written.status, written.body, {"Location": f"/v1/merchant/payments/{written.body['job_id']}"})


@app.post(
    "/v1/merchant/wallet-adjustments",
    summary="Merchant: top up (amount_paise > 0) or debit (< 0) a shopper's wallet, with a reason",
    status_code=201,
    responses=MERCHANT_ERRORS
    | responses(
        201,
        "adjusted: the ledger entry and the balance after it",
        WalletAdjustment,
        e400="idempotency_key_required, idempotency_key_invalid, invalid_json or invalid_body",
        e409="idempotency_key_reused, insufficient_balance (details.balance_paise) or currency_mismatch",
        e413="payload_too_large",
        e422="validation_error",
    )
    | {200: model_response("the same key and body again: the entry it made", WalletAdjustment)},
    openapi_extensions=request_body(WalletAdjustmentRequest) | _MERCHANT_WRITE,
)
@tracer.capture_method
def merchant_wallet_adjustment() -> Response[Any]:
    client_id, key = _merchant()
    request = _body(WalletAdjustmentRequest)
    written = merchant.adjust_wallet(bootstrap(), client_id, key, request)
    logger.info(
        "wallet adjusted",
        client_id=client_id,
        user_id=request.user_id,
        amount_paise=request.amount_paise,
        wallet_transaction_id=written.body["wallet_transaction_id"],
    )
    return json_response(written.status, written.body)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

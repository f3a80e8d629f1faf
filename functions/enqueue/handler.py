"""POST /v1/payments: accept a payment request, queue it, answer 202 at once."""

# No `from __future__ import annotations`: the route is wrapped by the tracer, whose module globals
# cannot resolve a string annotation when Powertools builds the OpenAPI document.
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.api_models import COMMON_ERRORS, IDEMPOTENCY_KEY_HEADER, PAYMENT_REQUEST_BODY, JobView, responses
from shared.bootstrap import bootstrap
from shared.http import caller, install_error_handlers, json_response, read_body
from shared.observability import logger, metrics, tracer
from shared.services.intake import accept_payment, parse_payment_request, validate_idempotency_key

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
        e409="idempotency_key_reused, order_not_payable, payment_in_progress or gateway_payment_in_use",
        e413="payload_too_large",
        e422="validation_error or method_not_supported",
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


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

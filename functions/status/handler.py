"""A job's status and an order for their owner; the operator views, the DLQ redrive, the drop of a poison
message and the retry of an owed refund; the shop backend's reads (a shopper's orders, payments and wallet)
and our events."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.api_models import (
    COMMON_ERRORS,
    MERCHANT_ERRORS,
    OPERATOR_ERRORS,
    CheckoutView,
    DbHealth,
    DlqDrop,
    EventList,
    JobView,
    MerchantPayment,
    Metrics,
    NowServing,
    OrderList,
    PaymentEvent,
    PaymentList,
    QueueStatus,
    RedriveResult,
    RefundRetry,
    ShopperOrderView,
    WalletView,
    error,
    model_response,
    responses,
)
from shared.bootstrap import bootstrap
from shared.http import caller, install_error_handlers, json_response, require_scope
from shared.observability import log_metrics, logger, tracer
from shared.routes import NOW_SERVING_CACHE_S
from shared.services import merchant
from shared.services.checkout import get_checkout
from shared.services.line import cancel_job
from shared.services.operator import db_health, drop_dead_letter, metrics_summary, redrive_dlq, retry_refund
from shared.services.orders import get_order, list_orders
from shared.services.reads import get_job, now_serving, queue_status

app = APIGatewayHttpResolver()
install_error_handlers(app)


@app.get(
    "/v1/payments/<job_id>",
    summary="A job of the caller's: its status, place in line and advice on when to poll",
    responses=COMMON_ERRORS | responses(200, "the job", JobView, e404="job_not_found (or someone else's job)"),
)
def payment_status(job_id: str) -> Response[Any]:
    pq = bootstrap()
    return json_response(200, get_job(pq, caller(app.current_event), job_id))


@app.delete(
    "/v1/payments/<job_id>",
    summary="Leave the line: end a job of the caller's that no processor has taken (idempotent)",
    responses=COMMON_ERRORS
    | responses(
        200,
        "the job, cancelled (by this call or an earlier one): failed with reason cancelled",
        JobView,
        e404="job_not_found (or someone else's job)",
        e409="job_processing (a processor has it) or job_finished (it ended otherwise); details.job_status is "
        "the job's",
    )
    | responses(
        202,
        "a gateway job, asked to leave (by this call or an earlier one; cancel_requested): its money is at the "
        "gateway, so its turn releases or refunds it, and it then fails with reason cancelled",
        JobView,
    ),
)
def leave_line(job_id: str) -> Response[Any]:
    pq = bootstrap()
    view = cancel_job(pq, caller(app.current_event), job_id)
    return json_response(202 if view.get("cancel_requested") else 200, view)


@app.get(
    "/v1/checkouts/<checkout_id>",
    summary="A checkout of the caller's: its status and, once one exists, its payment job",
    responses=COMMON_ERRORS
    | responses(200, "the checkout", CheckoutView, e404="checkout_not_found (or someone else's checkout)"),
)
def checkout_status(checkout_id: str) -> Response[Any]:
    pq = bootstrap()
    return json_response(200, get_checkout(pq, caller(app.current_event), checkout_id))


@app.get(
    "/v1/orders/<order_id>",
    summary="An order of the caller's: its items, total, latest job and the ways it can be paid",
    responses=COMMON_ERRORS
    | responses(200, "the order", ShopperOrderView, e404="order_not_found (or someone else's order)"),
)
def order(order_id: str) -> Response[Any]:
    pq = bootstrap()
    return json_response(200, get_order(pq, caller(app.current_event), order_id))


@app.get(
    "/v1/queue/now-serving",
    summary="How far the line has moved and how fast: one figure for every waiting shopper (no JWT, cached)",
    responses={
        200: model_response(
            f"the figure; Cache-Control: public, max-age={NOW_SERVING_CACHE_S} (CloudFront on AWS)", NowServing
        ),
        500: error("internal_error"),
        503: error("service_busy (Retry-After)"),
    },
    security=[{}],  # no token: the figure is the same for everyone (OpenAPI's empty requirement)
)
def queue_now_serving() -> Response[Any]:
    pq = bootstrap()
    # The same for everyone, so a shared cache answers nearly every poll: CloudFront in front of this
    # route on AWS (infra/components/waiting.py), the local API's own cache locally (local/api.py).
    return json_response(200, now_serving(pq), {"Cache-Control": f"public, max-age={NOW_SERVING_CACHE_S}"})


@app.get(
    "/v1/queue/status",
    summary="Operator: queue depth, in flight, DLQ depth, oldest message, throughput",
    responses=OPERATOR_ERRORS | responses(200, "the queue now", QueueStatus),
)
def queue() -> Response[Any]:
    pq = bootstrap()
    require_scope(app.current_event, pq.settings.operator_scope)
    return json_response(200, queue_status(pq))


@app.get(
    "/v1/metrics",
    summary="Operator: processed, success and error rates, waits per window",
    responses=OPERATOR_ERRORS | responses(200, "per window: 1m, 5m, 60m", Metrics),
)
def payment_metrics() -> Response[Any]:
    pq = bootstrap()
    require_scope(app.current_event, pq.settings.operator_scope)
    return json_response(200, metrics_summary(pq))


@app.get(
    "/health/db",
    summary="Operator: is the database reachable, how busy",
    responses=OPERATOR_ERRORS | responses(200, "reachable", DbHealth) | {503: model_response("unreachable", DbHealth)},
)
def health() -> Response[Any]:
    pq = bootstrap()
    require_scope(app.current_event, pq.settings.operator_scope)
    report = db_health(pq)
    return json_response(200 if report["reachable"] else 503, report)


@app.post(
    "/v1/dlq/redrive",
    summary="Operator: move every dead-lettered job back to the queue",
    responses=OPERATOR_ERRORS
    | responses(200, "moved (PGMQ)", RedriveResult)
    | {202: model_response("a move task started (SQS)", RedriveResult)},
)
def dlq_redrive() -> Response[Any]:
    pq = bootstrap()
    require_scope(app.current_event, pq.settings.operator_scope)
    result = redrive_dlq(pq)
    # PGMQ moves at once (200); an SQS move task runs on after the answer (202).
    return json_response(200 if result["status"] == "completed" else 202, result)


@app.post(
    "/v1/dlq/jobs/<job_id>/drop",
    summary="Operator: drop a job's message from the DLQ for good; the job ends failed, dropped_by_operator "
    "(idempotent: a second call answers the first drop)",
    responses=OPERATOR_ERRORS
    | responses(
        200,
        "dropped, by this call or an earlier one: who and when",
        DlqDrop,
        e404="job_not_found (no such job, and no message of it in the DLQ)",
        e409="job_not_dead_lettered (it waits in line, a processor has it, or it ended; details.job_status) or "
        "gateway_money_unsettled (a gateway job whose captured money is not applied or refunded in our books, "
        "or never read: redrive it; details.money)",
    ),
)
def dlq_drop(job_id: str) -> Response[Any]:
    pq = bootstrap()
    require_scope(app.current_event, pq.settings.operator_scope)
    return json_response(200, drop_dead_letter(pq, job_id, caller(app.current_event)))


@app.post(
    "/v1/refunds/<refund_id>/retry",
    summary="Operator: try an owed gateway refund again (idempotent; the sweeper sends it within a minute)",
    responses=OPERATOR_ERRORS
    | responses(202, "scheduled, or not owed: answered as it stands", RefundRetry, e404="refund_not_found"),
)
def refund_retry(refund_id: str) -> Response[Any]:
    pq = bootstrap()
    require_scope(app.current_event, pq.settings.operator_scope)
    return json_response(202, retry_refund(pq, refund_id, caller(app.current_event)))


def _merchant_query() -> dict[str, str]:
    """The query of a merchant route, once its scope is checked (the authorizer did; this checks again)."""
    event = app.current_event
    require_scope(event, bootstrap().settings.merchant_scope)
    return dict(event.query_string_parameters or {})


_USER_QUERY = {
    "parameters": [
        {"name": "user_id", "in": "query", "required": True, "schema": {"type": "string", "maxLength": 255}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": merchant.MAX_PAGE}},
    ]
}


@app.get(
    "/v1/merchant/orders",
    summary="Merchant: a shopper's orders, newest first",
    responses=MERCHANT_ERRORS | responses(200, "the orders", OrderList, e422="validation_error (user_id, limit)"),
    openapi_extensions=_USER_QUERY,
)
def merchant_orders() -> Response[Any]:
    query = _merchant_query()
    user_id, limit = merchant.query_user(query.get("user_id")), merchant.query_limit(query.get("limit"))
    return json_response(200, list_orders(bootstrap(), user_id, limit))


@app.get(
    "/v1/merchant/payments",
    summary="Merchant: a shopper's payment jobs, newest first, with what each paid and who asked for it",
    responses=MERCHANT_ERRORS | responses(200, "the payments", PaymentList, e422="validation_error (user_id, limit)"),
    openapi_extensions=_USER_QUERY,
)
def merchant_payments() -> Response[Any]:
    query = _merchant_query()
    user_id, limit = merchant.query_user(query.get("user_id")), merchant.query_limit(query.get("limit"))
    return json_response(200, merchant.list_payments(bootstrap(), user_id, limit))


@app.get(
    "/v1/merchant/payments/<job_id>",
    summary="Merchant: one payment job, any shopper's (where POST /v1/merchant/payments's Location points)",
    responses=MERCHANT_ERRORS | responses(200, "the payment and its shopper", MerchantPayment, e404="job_not_found"),
)
def merchant_payment(job_id: str) -> Response[Any]:
    _merchant_query()
    return json_response(200, merchant.get_payment(bootstrap(), job_id))


@app.get(
    "/v1/merchant/wallet",
    summary="Merchant: a shopper's wallet balance and latest ledger entries",
    responses=MERCHANT_ERRORS
    | responses(200, "the wallet", WalletView, e404="wallet_not_found", e422="validation_error (user_id)"),
    openapi_extensions={"parameters": _USER_QUERY["parameters"][:1]},
)
def merchant_wallet() -> Response[Any]:
    query = _merchant_query()
    return json_response(200, merchant.get_wallet(bootstrap(), merchant.query_user(query.get("user_id"))))


@app.get(
    "/v1/merchant/events",
    summary="Merchant: our PaymentSucceeded / PaymentFailed events since a time, with their delivery state",
    responses=MERCHANT_ERRORS | responses(200, "the events", EventList, e422="validation_error (since, after, limit)"),
    openapi_extensions={
        "parameters": [
            {"name": "since", "in": "query", "required": True, "schema": {"type": "string", "format": "date-time"}},
            {
                "name": "after",
                "in": "query",
                "description": "the page before's next_after: the events past that one at `since`",
                "schema": {"type": "string", "format": "uuid"},
            },
            _USER_QUERY["parameters"][1],
        ]
    },
)
def merchant_events() -> Response[Any]:
    query = _merchant_query()
    since, limit = merchant.query_since(query.get("since")), merchant.query_limit(query.get("limit"))
    after = merchant.query_after(query.get("after"))
    return json_response(200, merchant.list_events(bootstrap(), since, limit, after))


@app.post(
    "/v1/merchant/events/<event_id>/redeliver",
    summary="Merchant: publish an event again (the sweeper sends it within a minute, under the same id)",
    responses=MERCHANT_ERRORS | responses(202, "scheduled", PaymentEvent, e404="event_not_found"),
)
def merchant_redeliver(event_id: str) -> Response[Any]:
    _merchant_query()
    redelivered = merchant.redeliver_event(bootstrap(), event_id)
    logger.info("event redelivery asked", event_id=event_id, client_id=caller(app.current_event))
    return json_response(202, redelivered)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

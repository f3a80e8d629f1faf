"""A job's status for its owner; the operator views and the operator's DLQ redrive."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import bootstrap
from shared.http import caller, install_error_handlers, json_response, require_scope
from shared.observability import logger, metrics, tracer
from shared.services import db_health, get_job, metrics_summary, queue_status, redrive_dlq

app = APIGatewayHttpResolver()
install_error_handlers(app)


@app.get("/v1/payments/<job_id>")
def payment_status(job_id: str) -> Response[Any]:
    pq = bootstrap()
    return json_response(200, get_job(pq, caller(app.current_event), job_id))


@app.get("/v1/queue/status")
def queue() -> Response[Any]:
    pq = bootstrap()
    require_scope(app.current_event, pq.settings.operator_scope)
    return json_response(200, queue_status(pq))


@app.get("/v1/metrics")
def payment_metrics() -> Response[Any]:
    pq = bootstrap()
    require_scope(app.current_event, pq.settings.operator_scope)
    return json_response(200, metrics_summary(pq))


@app.get("/health/db")
def health() -> Response[Any]:
    pq = bootstrap()
    require_scope(app.current_event, pq.settings.operator_scope)
    report = db_health(pq)
    return json_response(200 if report["reachable"] else 503, report)


@app.post("/v1/dlq/redrive")
def dlq_redrive() -> Response[Any]:
    pq = bootstrap()
    require_scope(app.current_event, pq.settings.operator_scope)
    result = redrive_dlq(pq)
    # PGMQ moves at once (200); an SQS move task runs on after the answer (202).
    return json_response(200 if result["status"] == "completed" else 202, result)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

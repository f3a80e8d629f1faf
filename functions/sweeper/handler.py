"""Runs every minute: sends jobs whose queue send was never confirmed, re-publishes outbox events."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import bootstrap
from shared.observability import logger, metrics, tracer
from shared.services.outbox import sweep


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    result = sweep(bootstrap())
    metrics.add_metric(name="JobsResent", unit=MetricUnit.Count, value=result["jobs_resent"])
    metrics.add_metric(name="EventsRepublished", unit=MetricUnit.Count, value=result["events_republished"])
    return result

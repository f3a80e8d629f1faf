"""Runs every minute: sends jobs whose queue send was never confirmed, re-publishes outbox events, ends
the queued jobs of sold-out products, and reconciles what the gateways' webhooks did not settle
(parked jobs, checkouts, refunds)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import bootstrap
from shared.observability import log_metrics, logger, metrics, tracer
from shared.services.line import end_sold_out_jobs
from shared.services.outbox import sweep
from shared.services.reconcile import reconcile


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    app = bootstrap()
    result = sweep(app)
    metrics.add_metric(name="JobsResent", unit=MetricUnit.Count, value=result["jobs_resent"])
    metrics.add_metric(name="EventsRepublished", unit=MetricUnit.Count, value=result["events_republished"])
    # Products sold out by what the processors' own after-batch step missed (a gateway payment took the
    # last unit, two shards emptied at once): their queued jobs end here.
    sold_out_ended = end_sold_out_jobs(app, None)
    metrics.add_metric(name="SoldOutJobsEnded", unit=MetricUnit.Count, value=sold_out_ended)
    reconciled = reconcile(app)
    metrics.add_metric(name="CheckoutsReconciled", unit=MetricUnit.Count, value=reconciled["checkouts_reconciled"])
    metrics.add_metric(name="ParkedJobsWoken", unit=MetricUnit.Count, value=reconciled["parked_jobs_woken"])
    return result | reconciled | {"sold_out_jobs_ended": sold_out_ended}

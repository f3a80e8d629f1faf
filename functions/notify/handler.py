"""Consumes PaymentSucceeded / PaymentFailed (SNS carrying EventBridge events) and delivers them.

It never touches payment data. A failed webhook delivery raises, so the invocation is retried and
finally lands in this function's own failure destination; receivers dedupe on the event id.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SNSEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.notifications import WebhookError, deliver, unwrap
from shared.observability import log_metrics, logger, metrics, tracer
from shared.settings import get_settings


def _webhook_secret() -> str | None:
    settings = get_settings()
    if settings.webhook_secret_arn:
        from aws_lambda_powertools.utilities.parameters import get_secret

        return str(get_secret(settings.webhook_secret_arn, max_age=300))
    return settings.webhook_secret


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    delivered = 0
    for record in SNSEvent(event).records:
        payment_event = unwrap(record.sns.message)
        data = payment_event["data"]
        # One line per event with its delivery's answer (None: no webhook is configured). A failed delivery
        # logs a warning of its own instead and raises, so the invocation is retried.
        fields = {
            "event_id": payment_event["id"],
            "event_type": payment_event["type"],
            "job_id": data.get("job_id"),
            "user_id": data.get("user_id"),
            "order_id": data.get("order_id"),
            "reason": data.get("reason"),
        }
        status = None
        if settings.webhook_url:
            try:
                status = deliver(settings.webhook_url, _webhook_secret(), payment_event, settings.webhook_timeout_s)
            except WebhookError as exc:  # its text names no URL
                logger.warning("payment event not delivered", **fields, webhook_status=exc.status, error=str(exc))
                raise
            except Exception as exc:  # named by its class only: its text may quote what it failed on
                logger.warning("payment event not delivered", **fields, error=type(exc).__name__)
                raise
        logger.info("payment event", **fields, webhook_status=status)
        delivered += 1
        metrics.add_metric(name="NotificationsDelivered", unit=MetricUnit.Count, value=1)
    return {"delivered": delivered}

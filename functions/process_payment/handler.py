"""SQS FIFO consumer: one payment transaction per message, partial batch response.

A raised exception fails the record; with skip_group_on_error the rest of that user's messages
in the batch fail too, so one user's payments are never applied out of order. Business failures
do not raise: the job ends `failed` and the message is consumed. A message that can never
succeed goes to the DLQ on its first delivery and counts as handled (shared/poison.py).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import App, bootstrap
from shared.domain import PoisonMessageError
from shared.observability import log_metrics, logger, metrics, tracer
from shared.poison import dead_letter_poison
from shared.services.line import end_sold_out_jobs
from shared.services.outbox import OutboxRelay
from shared.services.processing import process_message, record_failure

processor = SqsFifoPartialProcessor(skip_group_on_error=True)
# A batch whose every record failed is still a partial response (every item listed), not an
# invocation error; the queue retries exactly those records either way. (The FIFO processor's
# constructor does not take this flag, the base processor reads the attribute.)
processor.raise_on_entire_batch_failure = False

_OUTCOME_METRIC = {
    "succeeded": "PaymentsSucceeded",
    "failed": "PaymentsFailed",
    "already_succeeded": "PaymentsRedelivered",
    "already_failed": "PaymentsRedelivered",
    "parked": "PaymentsAwaitingGateway",
}


def record_handler(
    record: SQSRecord, app: App, relay: OutboxRelay, context: LambdaContext, errors: dict[str, Exception]
) -> None:
    try:
        _pay(record, app, relay, context)
    except Exception as exc:
        errors[record.message_id] = exc  # explained after the batch, with the records it held back
        raise


def _pay(record: SQSRecord, app: App, relay: OutboxRelay, context: LambdaContext) -> None:
    # A 429/5xx at the gateway, or too little time left for this record, raises RetryLater after
    # handing the message back, which fails the record (and the rest of its group in this batch).
    try:
        outcome = process_message(
            app,
            record.body,
            receipt_handle=record.receipt_handle,
            receive_count=int(record.attributes.approximate_receive_count),
            remaining_ms=context.get_remaining_time_in_millis(),
        )
    except PoisonMessageError as exc:
        dead_letter_poison(app, record, exc)
        return
    relay.add(outcome.event, outcome.sold_out)
    metrics.add_metric(name=_OUTCOME_METRIC[outcome.outcome], unit=MetricUnit.Count, value=1)
    # A wallet payment logs at DEBUG and its batch gets one INFO line (in a flash sale a line per
    # wallet payment was a large share of this function's CPU, and of its CloudWatch Logs bill).
    logger.debug(
        "payment processed",
        job_id=outcome.job_id,
        outcome=outcome.outcome,
        reason=outcome.reason,
        receive_count=record.attributes.approximate_receive_count,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    # The App for the records' payments, and the relay that publishes their events after the batch.
    app = bootstrap()
    relay = OutboxRelay(app)
    errors: dict[str, Exception] = {}
    try:
        response = process_partial_response(
            event=event,
            record_handler=partial(record_handler, app=app, relay=relay, context=context, errors=errors),
            processor=processor,
            context=context,
        )
    finally:
        # After every commit of the batch: publish its events in one call, mark them published.
        relay.flush()
        if relay.sold_out:
            _end_line_of(app, relay)
    records = event.get("Records", [])
    failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
    if failed:
        metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=len(failed))
        failed_records = [SQSRecord(r) for r in records if r["messageId"] in failed]
        _hand_back_held_back(app, [r for r in failed_records if r.message_id not in errors])
        _explain(app, failed_records, errors)
    logger.info("batch processed", records=len(records), failed=len(failed))
    return response


def _hand_back_held_back(app: App, held_back: list[SQSRecord]) -> None:
    """Records that never ran, held back behind a failed record of their group, visible again at once.

    Failed as they are, they would stay in flight for the whole visibility timeout (6 x the function's
    timeout, 720 s), and a FIFO group with a message in flight delivers none of its messages: the
    failed record's own backoff (1-300 s, set by the gateway path) would be waited out 12 minutes
    later. Visible now, they follow the failed record as soon as its backoff ends, in order: FIFO
    hands out no message of a group before the older ones. The failed record keeps its visibility."""
    for record in held_back:
        try:
            app.queue.change_visibility(record.receipt_handle, 0)
        except Exception:  # the visibility timeout hands it back anyway, later
            logger.exception("could not hand a held-back record back", message_id=record.message_id)


def _end_line_of(app: App, relay: OutboxRelay) -> None:
    """The batch took the last units of some products (or failed for want of them): everyone else
    waiting for them leaves the line now, in one statement after the batch's commits, never inside a
    payment's transaction. What this misses (it failed, another batch held a job) the sweeper ends."""
    try:
        ended = end_sold_out_jobs(app, relay.sold_out)
    except Exception:
        logger.exception("ending the line of sold-out products failed; left for the sweeper")
        return
    if ended:
        metrics.add_metric(name="SoldOutJobsEnded", unit=MetricUnit.Count, value=ended)
        logger.info("sold out: queued jobs ended", products=sorted(relay.sold_out), jobs=ended)


def _explain(app: App, failed: list[SQSRecord], errors: dict[str, Exception]) -> None:
    """Every failed record, logged and recorded: its own error, or the earlier failure of its group
    that held it back (skip_group_on_error). The last delivery maxReceiveCount allows goes to the DLQ."""
    for record in failed:
        receive_count = int(record.attributes.approximate_receive_count)
        record_failure(
            app,
            record.body,
            message_id=record.message_id,
            receive_count=receive_count,
            error=errors.get(record.message_id, "held back behind a failed message of its group"),
            dead_lettered=receive_count >= app.settings.max_receive_count,
        )

"""Poison messages to the DLQ at first sight.

A message that can never succeed (a malformed body, a job that does not exist, a job on the
wrong payment path) would fail every delivery until maxReceiveCount, and in a FIFO queue hold
back the rest of its user's group each time. Retrying cannot help it, so the processor moves it
to the DLQ on its first delivery and counts the record as handled: the user's later jobs go on.
Transient errors are not caught here; they keep the retry path.
"""

from __future__ import annotations

from typing import Protocol

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.domain import PoisonMessageError
from shared.observability import metrics
from shared.ports import HasDb, HasQueue, ReceivedMessage
from shared.services.processing import record_failure


class PoisonDeps(HasDb, HasQueue, Protocol):
    """What dead-lettering a poison message uses: the queue to move it, the books to explain it."""


def received(record: SQSRecord) -> ReceivedMessage:
    """What the processor holds of one SQS (or local, SQS-shaped) delivery."""
    attributes = record.attributes
    return ReceivedMessage(
        body=record.body,
        group_id=attributes.message_group_id or "",
        # FIFO deliveries carry both; a queue with content-based deduplication still names the message.
        deduplication_id=attributes.message_deduplication_id or record.message_id,
        message_id=record.message_id,
        receipt_handle=record.receipt_handle,
        receive_count=int(attributes.approximate_receive_count),
    )


def dead_letter_poison(deps: PoisonDeps, record: SQSRecord, error: PoisonMessageError) -> None:
    """Move the record's message to the DLQ now, then explain it as every dead-lettered delivery is
    explained (a WARNING "message moved to the DLQ" with the job, the reason and the delivery, and a
    row for the operator's view). If the move itself fails, that error propagates and the record
    takes the retry path: the next delivery tries the move again."""
    message = received(record)
    deps.queue.dead_letter(message, str(error))
    metrics.add_metric(name="PoisonMessages", unit=MetricUnit.Count, value=1)
    record_failure(
        deps,
        message.body,
        message_id=message.message_id,
        receive_count=message.receive_count,
        error=error,
        dead_lettered=True,
    )

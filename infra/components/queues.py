"""The payment queue (SQS FIFO, high-throughput mode) and its dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.components.common import removal_policy
from infra.config import EnvironmentConfig


class PaymentQueues(Construct):
    """`payments.fifo`: one message group per user keeps each user's payments in order while
    different users proceed in parallel; deduplication per group with the job id as the
    deduplication id makes a client's retried enqueue a no-op.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, construct_id)
        prefix = f"payment-queue-{config.name}"
        self.dlq = sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=f"{prefix}-payments-dlq.fifo",
            fifo=True,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # The SQS maximum: operators get two weeks to inspect and redrive.
            retention_period=Duration.days(14),
            removal_policy=removal_policy(config),
        )
        self.queue = sqs.Queue(
            self,
            "PaymentsQueue",
            queue_name=f"{prefix}-payments.fifo",
            fifo=True,
            content_based_deduplication=False,
            deduplication_scope=sqs.DeduplicationScope.MESSAGE_GROUP,
            fifo_throughput_limit=sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
            visibility_timeout=Duration.seconds(config.processor.visibility_timeout_seconds),
            retention_period=Duration.days(config.queue_retention_days),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=config.max_receive_count),
            removal_policy=removal_policy(config),
        )

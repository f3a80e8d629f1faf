"""payments.fifo: high-throughput FIFO, a FIFO DLQ, visibility sized to the processor."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match

from tests.infra.conftest import Synthesized


def _payments_queue(stack: Synthesized) -> tuple[str, dict[str, Any]]:
    queue_id = stack.queue("-payments.fifo")
    return queue_id, stack.json["Resources"][queue_id]


def test_payments_queue_is_fifo_in_high_throughput_mode(stack: Synthesized) -> None:
    stack.template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": f"payment-queue-{stack.config.name}-payments.fifo",
            "FifoQueue": True,
            "DeduplicationScope": "messageGroup",
            "FifoThroughputLimit": "perMessageGroupId",
        },
    )


def test_failed_payments_move_to_a_fifo_dlq_after_max_receive_count(stack: Synthesized) -> None:
    _, queue = _payments_queue(stack)
    redrive = queue["Properties"]["RedrivePolicy"]
    dlq_id = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    dlq = stack.json["Resources"][dlq_id]["Properties"]

    assert redrive["maxReceiveCount"] == stack.config.max_receive_count >= 5
    assert dlq["FifoQueue"] is True
    assert dlq["QueueName"].endswith("-payments-dlq.fifo")
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_visibility_timeout_is_at_least_six_processor_timeouts(stack: Synthesized) -> None:
    _, queue = _payments_queue(stack)
    _, processor = stack.function("process_payment")

    assert queue["Properties"]["VisibilityTimeout"] >= 6 * processor["Properties"]["Timeout"]


def test_every_queue_is_encrypted_and_refuses_plain_http(stack: Synthesized) -> None:
    queues = stack.resources("AWS::SQS::Queue")
    policies = stack.resources("AWS::SQS::QueuePolicy")
    tls_only = {
        queue_ref["Ref"]
        for policy in policies.values()
        if any(
            s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )
        for queue_ref in policy["Properties"]["Queues"]
    }

    assert all(q["Properties"].get("SqsManagedSseEnabled") is True for q in queues.values())
    assert tls_only == set(queues)


def test_processor_consumes_with_partial_batch_responses_under_a_concurrency_cap(stack: Synthesized) -> None:
    processor_id, processor = stack.function("process_payment")
    queue_id, _ = _payments_queue(stack)
    processor_config = stack.config.processor

    stack.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": {"Ref": processor_id},
            "EventSourceArn": {"Fn::GetAtt": [queue_id, "Arn"]},
            "BatchSize": processor_config.batch_size,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": processor_config.max_concurrency},
            "MaximumBatchingWindowInSeconds": Match.absent(),
        },
    )
    # Where the environment reserves, the reservation never throttles the event source; dev reserves
    # nothing and the event source's maximum concurrency alone caps the processor.
    reserved = processor["Properties"].get("ReservedConcurrentExecutions")
    if stack.config.reserve_concurrency:
        assert reserved == processor_config.reserved_concurrency
        assert processor_config.max_concurrency <= reserved
    else:
        assert reserved is None

"""The boto3 adapters against moto: what they send to SQS FIFO and EventBridge."""

from __future__ import annotations

import json
from typing import Any

import boto3

from shared.adapters.aws import EventBridgeBus, SqsJobQueue
from shared.ports import QueueMessage
from tests.integration.conftest import AWS_REGION as REGION


def test_sqs_send_groups_by_user_and_deduplicates_by_job(queues: tuple[Any, str, str]) -> None:
    sqs, url, dlq = queues
    queue = SqsJobQueue(sqs, url, dlq)
    messages = [QueueMessage(f"job-{i}", f"user-{i % 3}", {"job_id": f"job-{i}"}) for i in range(25)]

    sent = queue.send(messages)  # three batch calls of at most ten
    again = queue.send(messages[:5])  # a re-send inside the deduplication window

    assert sent == [m.job_id for m in messages]
    assert again == [m.job_id for m in messages[:5]]
    stats = queue.stats()
    assert (stats.depth, stats.in_flight, stats.dlq_depth) == (25, 0, 0)
    received = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"]
    )
    first = received["Messages"][0]
    body = json.loads(first["Body"])
    assert first["Attributes"]["MessageDeduplicationId"] == body["job_id"]
    assert first["Attributes"]["MessageGroupId"] == f"user-{int(body['job_id'].split('-')[1]) % 3}"
    assert queue.stats().in_flight == len(received["Messages"])


def test_eventbridge_publish_sends_versioned_events_with_their_type(aws: None) -> None:
    # Given a bus whose rule for payment events feeds a queue we can read
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    events.create_event_bus(Name="payment-queue")
    sink = sqs.create_queue(QueueName="sink")["QueueUrl"]
    sink_arn = sqs.get_queue_attributes(QueueUrl=sink, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="payments",
        EventBusName="payment-queue",
        EventPattern=json.dumps({"source": ["payment-queue"], "detail-type": ["PaymentSucceeded", "PaymentFailed"]}),
    )
    events.put_targets(Rule="payments", EventBusName="payment-queue", Targets=[{"Id": "sink", "Arn": sink_arn}])
    bus = EventBridgeBus(events, "payment-queue")
    batch = [
        {
            "version": "1",
            "id": f"evt-{i}",
            "type": "PaymentFailed" if i % 2 else "PaymentSucceeded",
            "source": "payment-queue",
            "occurred_at": "2026-01-01T00:00:00+00:00",
            "data": {"job_id": f"job-{i}"},
        }
        for i in range(12)
    ]

    # When the adapter publishes twelve events (two calls of at most ten)
    published = bus.publish(batch)

    # Then all are accepted and arrive with their type as detail-type and the event as detail
    assert published == [e["id"] for e in batch]
    delivered = []
    while got := sqs.receive_message(QueueUrl=sink, MaxNumberOfMessages=10).get("Messages", []):
        delivered += [json.loads(m["Body"]) for m in got]
        sqs.delete_message_batch(
            QueueUrl=sink, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
        )
    assert sorted(d["detail"]["id"] for d in delivered) == sorted(str(e["id"]) for e in batch)
    assert all(d["detail-type"] == d["detail"]["type"] and d["source"] == "payment-queue" for d in delivered)

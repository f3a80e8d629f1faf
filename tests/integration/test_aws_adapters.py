"""The boto3 adapters against moto: what they send to SQS FIFO and EventBridge."""

from __future__ import annotations

import json
from typing import Any

import boto3

from shared.adapters.aws import EventBridgeBus, SqsJobQueue
from shared.ports import QueueMessage, ReceivedMessage
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


def test_sqs_dead_letter_moves_a_message_to_the_dlq_with_its_group_and_deduplication_id(
    queues: tuple[Any, str, str],
) -> None:
    # Given a received message of user-1's, another of user-2's still queued
    sqs, url, dlq = queues
    queue = SqsJobQueue(sqs, url, dlq)
    queue.send(
        [QueueMessage("job-1", "user-1", {"job_id": "job-1"}), QueueMessage("job-2", "user-2", {"job_id": "job-2"})]
    )
    got = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=1,
        MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId", "ApproximateReceiveCount"],
    )["Messages"][0]
    received = ReceivedMessage(
        body=got["Body"],
        group_id=got["Attributes"]["MessageGroupId"],
        deduplication_id=got["Attributes"]["MessageDeduplicationId"],
        message_id=got["MessageId"],
        receipt_handle=got["ReceiptHandle"],
        receive_count=int(got["Attributes"]["ApproximateReceiveCount"]),
    )

    # When the processor dead-letters it
    queue.dead_letter(received, "job job-1 does not exist")

    # Then it is gone from payments.fifo (only user-2's message is left) ...
    stats = queue.stats()
    assert (stats.depth, stats.in_flight, stats.dlq_depth) == (1, 0, 1)
    # ... and in the DLQ with the same body, group and deduplication id, saying where from and why
    moved = sqs.receive_message(
        QueueUrl=dlq,
        MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        MessageAttributeNames=["All"],
    )["Messages"][0]
    assert moved["Body"] == got["Body"]
    assert moved["Attributes"]["MessageGroupId"] == "user-1"
    assert moved["Attributes"]["MessageDeduplicationId"] == "job-1"
    assert {k: v["StringValue"] for k, v in moved["MessageAttributes"].items()} == {
        "SourceQueueUrl": url,
        "DeadLetterReason": "job job-1 does not exist",
        "ReceiveCount": "1",
    }


def test_sqs_dead_letter_sent_twice_leaves_one_copy_in_the_dlq(queues: tuple[Any, str, str]) -> None:
    # Given a poison message moved once, whose delete was lost, so it is delivered and moved again
    sqs, url, dlq = queues
    queue = SqsJobQueue(sqs, url, dlq)
    queue.send([QueueMessage("job-1", "user-1", {"job_id": "job-1"})])
    got = sqs.receive_message(QueueUrl=url)["Messages"][0]
    received = ReceivedMessage(got["Body"], "user-1", "job-1", got["MessageId"], got["ReceiptHandle"], 1)
    sqs.send_message(QueueUrl=dlq, MessageBody=got["Body"], MessageGroupId="user-1", MessageDeduplicationId="job-1")

    # When the move runs
    queue.dead_letter(received, "poison")

    # Then the DLQ's deduplication keeps one copy and the source queue is empty
    stats = queue.stats()
    assert (stats.depth, stats.in_flight, stats.dlq_depth) == (0, 0, 1)


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


def _dlq_message(sqs: Any, dlq: str, job_id: str, group: str, dedup: str) -> None:
    sqs.send_message(
        QueueUrl=dlq,
        MessageBody=json.dumps({"job_id": job_id}),
        MessageGroupId=group,
        MessageDeduplicationId=dedup,
    )


def test_sqs_holds_a_jobs_dlq_messages_and_gives_every_other_back(queues: tuple[Any, str, str]) -> None:
    # Given a DLQ with a job's message twice (a crash between the copy and the delete), the same user's
    # other job, another user's job, and a message naming no job
    sqs, url, dlq = queues
    queue = SqsJobQueue(sqs, url, dlq)
    job = "6f1c0a56-3b9e-4f39-9d53-0d3c2a3c5c11"
    _dlq_message(sqs, dlq, job, "user-1", job)
    _dlq_message(sqs, dlq, "7a2d1b67-4c0f-4a4a-8e64-1e4d3b4d6d22", "user-1", "other-job")
    _dlq_message(sqs, dlq, job.upper(), "user-1", f"{job}.1")
    _dlq_message(sqs, dlq, "8b3e2c78-5d1a-4b5b-9f75-2f5e4c5e7e33", "user-2", "third-job")
    sqs.send_message(QueueUrl=dlq, MessageBody="not json", MessageGroupId="user-3", MessageDeduplicationId="junk")

    # When a drop holds the job's messages
    held = queue.hold_dead_letters(job)

    # Then it holds both of the job's, and every other message is visible again at once
    assert len(held) == 2
    assert queue.stats().dlq_depth == 3

    # And a release gives the job's back, a delete removes them for good
    queue.release_dead_letters(held)
    assert queue.stats().dlq_depth == 5
    queue.delete_dead_letters(queue.hold_dead_letters(job))
    attributes = sqs.get_queue_attributes(
        QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
        "3",
        "0",
    )
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]]
    assert job not in " ".join(bodies).lower()


def test_sqs_holds_nothing_of_a_job_with_no_message_in_the_dlq(queues: tuple[Any, str, str]) -> None:
    sqs, url, dlq = queues
    queue = SqsJobQueue(sqs, url, dlq)
    _dlq_message(sqs, dlq, "8b3e2c78-5d1a-4b5b-9f75-2f5e4c5e7e33", "user-2", "third-job")

    assert queue.hold_dead_letters("6f1c0a56-3b9e-4f39-9d53-0d3c2a3c5c11") == []
    assert queue.stats().dlq_depth == 1

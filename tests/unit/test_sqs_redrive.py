"""The SQS adapter's call shapes and their order: the redrive (moto does not implement message
move tasks) and the move of a poison message to the DLQ."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from shared.adapters.aws import SqsJobQueue
from shared.ports import ReceivedMessage

MAIN_URL = "https://sqs.ap-south-1.amazonaws.com/123456789012/payments.fifo"
DLQ_URL = "https://sqs.ap-south-1.amazonaws.com/123456789012/payments-dlq.fifo"
DLQ_ARN = "arn:aws:sqs:ap-south-1:123456789012:payments-dlq.fifo"
MAIN_ARN = "arn:aws:sqs:ap-south-1:123456789012:payments.fifo"


@pytest.fixture
def sqs() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sqs", region_name="ap-south-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def expect_dlq_arn(stub: Stubber) -> None:
    stub.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": DLQ_ARN}},
        {"QueueUrl": DLQ_URL, "AttributeNames": ["QueueArn"]},
    )


def test_redrive_starts_a_move_task_from_the_dlq_to_payments_fifo_named_as_destination(
    sqs: tuple[Any, Stubber],
) -> None:
    client, stub = sqs
    expect_dlq_arn(stub)
    stub.add_response(
        "list_message_move_tasks",
        {"Results": [{"Status": "COMPLETED", "SourceArn": DLQ_ARN, "ApproximateNumberOfMessagesMoved": 3}]},
        {"SourceArn": DLQ_ARN, "MaxResults": 1},
    )
    # The destination named: poison messages were sent to the DLQ by us, not dead-lettered by SQS,
    # so SQS knows no source queue to send them back to.
    stub.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": MAIN_ARN}},
        {"QueueUrl": MAIN_URL, "AttributeNames": ["QueueArn"]},
    )
    stub.add_response(
        "start_message_move_task", {"TaskHandle": "task-1"}, {"SourceArn": DLQ_ARN, "DestinationArn": MAIN_ARN}
    )

    result = SqsJobQueue(client, MAIN_URL, DLQ_URL).redrive()

    assert (result.status, result.moved, result.task_handle) == ("started", None, "task-1")


def test_redrive_reports_the_running_task_instead_of_starting_another(sqs: tuple[Any, Stubber]) -> None:
    client, stub = sqs
    expect_dlq_arn(stub)
    stub.add_response(
        "list_message_move_tasks",
        {
            "Results": [
                {
                    "TaskHandle": "task-0",
                    "Status": "RUNNING",
                    "SourceArn": DLQ_ARN,
                    "ApproximateNumberOfMessagesMoved": 7,
                    "ApproximateNumberOfMessagesToMove": 20,
                }
            ]
        },
        {"SourceArn": DLQ_ARN, "MaxResults": 1},
    )

    result = SqsJobQueue(client, MAIN_URL, DLQ_URL).redrive()

    assert (result.status, result.moved, result.task_handle) == ("running", 7, "task-0")


def test_redrive_without_a_dlq_url_is_a_configuration_error(sqs: tuple[Any, Stubber]) -> None:
    client, _ = sqs
    with pytest.raises(RuntimeError, match="PQ_DLQ_URL"):
        SqsJobQueue(client, MAIN_URL).redrive()


POISON = ReceivedMessage(
    body='{"job_id":"not-a-uuid"}',
    group_id="user-1",
    deduplication_id="not-a-uuid",
    message_id="m-1",
    receipt_handle="handle-1",
    receive_count=1,
)
SEND_TO_DLQ = {
    "QueueUrl": DLQ_URL,
    "MessageBody": POISON.body,
    "MessageGroupId": "user-1",
    "MessageDeduplicationId": "not-a-uuid",
    "MessageAttributes": {
        "SourceQueueUrl": {"DataType": "String", "StringValue": MAIN_URL},
        "DeadLetterReason": {"DataType": "String", "StringValue": "malformed message body: ValueError"},
        "ReceiveCount": {"DataType": "Number", "StringValue": "1"},
    },
}


def test_dead_letter_sends_to_the_dlq_before_it_deletes_from_the_queue(sqs: tuple[Any, Stubber]) -> None:
    client, stub = sqs
    # The Stubber holds the calls to this order.
    stub.add_response("send_message", {"MessageId": "d-1", "MD5OfMessageBody": "x"}, SEND_TO_DLQ)
    stub.add_response("delete_message", {}, {"QueueUrl": MAIN_URL, "ReceiptHandle": "handle-1"})

    SqsJobQueue(client, MAIN_URL, DLQ_URL).dead_letter(POISON, "malformed message body: ValueError")


def test_dead_letter_whose_send_fails_leaves_the_message_in_the_queue(sqs: tuple[Any, Stubber]) -> None:
    client, stub = sqs
    stub.add_client_error("send_message", "AWS.SimpleQueueService.NonExistentQueue", expected_params=SEND_TO_DLQ)

    with pytest.raises(ClientError):
        SqsJobQueue(client, MAIN_URL, DLQ_URL).dead_letter(POISON, "malformed message body: ValueError")
    # No delete_message was stubbed: had the adapter called it, the Stubber would have raised.


def test_dead_letter_without_a_dlq_url_is_a_configuration_error(sqs: tuple[Any, Stubber]) -> None:
    client, _ = sqs
    with pytest.raises(RuntimeError, match="PQ_DLQ_URL"):
        SqsJobQueue(client, MAIN_URL).dead_letter(POISON, "poison")

"""The SQS adapter's redrive call shape (moto does not implement message move tasks)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from shared.adapters.aws import SqsJobQueue

MAIN_URL = "https://sqs.ap-south-1.amazonaws.com/123456789012/payments.fifo"
DLQ_URL = "https://sqs.ap-south-1.amazonaws.com/123456789012/payments-dlq.fifo"
DLQ_ARN = "arn:aws:sqs:ap-south-1:123456789012:payments-dlq.fifo"


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


def test_redrive_starts_a_move_task_from_the_dlq_back_to_its_source(sqs: tuple[Any, Stubber]) -> None:
    client, stub = sqs
    expect_dlq_arn(stub)
    stub.add_response(
        "list_message_move_tasks",
        {"Results": [{"Status": "COMPLETED", "SourceArn": DLQ_ARN, "ApproximateNumberOfMessagesMoved": 3}]},
        {"SourceArn": DLQ_ARN, "MaxResults": 1},
    )
    # Only SourceArn: without a DestinationArn SQS sends each message back to the queue it came from.
    stub.add_response("start_message_move_task", {"TaskHandle": "task-1"}, {"SourceArn": DLQ_ARN})

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

"""SQS FIFO and EventBridge adapters (boto3)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from shared.domain import EVENT_SOURCE
from shared.ports import QueueMessage, QueueStats, ReceivedMessage, RedriveResult, SendInTransaction

# Both APIs take at most 10 entries per batch call.
_BATCH = 10
# SQS caps a message attribute's value with the message (256 KiB); a reason needs far less.
_REASON_CHARS = 256

# A drop holds the DLQ messages it receives this long: the drop's one database call and its delete take
# far less, and the messages of a drop that died are visible again within it.
DEAD_LETTER_HOLD_S = 30
# The receives a drop spends looking through the DLQ for a job's messages, 10 messages each. A FIFO queue
# returns no more of a message group while one of its messages is held (the DLQ of a job whose user has
# more than 10 messages there is seen only in part): the job is ended all the same, on the processor's
# record, and a message the look missed is acknowledged without work when a redrive delivers it.
DEAD_LETTER_RECEIVES = 10

T = TypeVar("T")


def _chunks(items: Sequence[T], size: int = _BATCH) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class SqsJobQueue:
    """payments.fifo: group = user, deduplication id = job id (a re-send is dropped by SQS)."""

    def __init__(self, client: Any, queue_url: str, dlq_url: str | None = None) -> None:
        self._sqs = client
        self._url = queue_url
        self._dlq_url = dlq_url

    def send(self, messages: Sequence[QueueMessage]) -> list[str]:
        sent: list[str] = []
        for chunk in _chunks(messages):
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": json.dumps(m.body, separators=(",", ":")),
                    "MessageGroupId": m.group_id,
                    "MessageDeduplicationId": m.dedup_id or m.job_id,
                }
                for i, m in enumerate(chunk)
            ]
            # Throttled calls are retried by botocore (standard mode, exponential backoff);
            # entries that still fail stay unsent and the sweeper sends them again.
            resp = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
            sent.extend(chunk[int(ok["Id"])].job_id for ok in resp.get("Successful", []))
        return sent

    def in_transaction(self, message: QueueMessage) -> SendInTransaction | None:
        """SQS is not in the database: the intake sends after its commit (shared/services/intake.py)."""
        return None

    def change_visibility(self, receipt_handle: str, delay_s: int) -> None:
        # SQS counts the visibility from now; 12 hours is its maximum.
        self._sqs.change_message_visibility(
            QueueUrl=self._url, ReceiptHandle=receipt_handle, VisibilityTimeout=max(0, min(delay_s, 43_200))
        )

    def dead_letter(self, message: ReceivedMessage, reason: str) -> None:
        """SendMessage to the DLQ, then DeleteMessage from payments.fifo: in that order, so a crash
        between them leaves a duplicate in the DLQ (the same deduplication id within SQS's 5-minute
        window drops a second copy), never a lost message.

        The group and deduplication id stay the job's, so a redrive puts the job back in its
        user's group; the attributes say where it came from and why, for the operator.
        """
        self._sqs.send_message(
            QueueUrl=self._require_dlq("dead-letter a message"),
            MessageBody=message.body,
            MessageGroupId=message.group_id,
            MessageDeduplicationId=message.deduplication_id,
            MessageAttributes={
                "SourceQueueUrl": {"DataType": "String", "StringValue": self._url},
                "DeadLetterReason": {"DataType": "String", "StringValue": reason[:_REASON_CHARS] or "poison"},
                "ReceiveCount": {"DataType": "Number", "StringValue": str(message.receive_count)},
            },
        )
        self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message.receipt_handle)

    def hold_dead_letters(self, job_id: str) -> list[str]:
        """Receive the DLQ's messages, keep those naming the job hidden for DEAD_LETTER_HOLD_S and give
        the rest back at once. Long polls of 1 s: a short poll samples a subset of SQS's servers and may
        answer empty while messages wait ("Setting-up long polling in Amazon SQS"); the look ends at the
        first empty answer."""
        dlq = self._require_dlq("drop a dead-lettered message")
        held: list[str] = []
        others: list[str] = []
        for _ in range(DEAD_LETTER_RECEIVES):
            received = self._sqs.receive_message(
                QueueUrl=dlq, MaxNumberOfMessages=_BATCH, VisibilityTimeout=DEAD_LETTER_HOLD_S, WaitTimeSeconds=1
            ).get("Messages", [])
            if not received:
                break
            for message in received:
                (held if _names_job(message["Body"], job_id) else others).append(message["ReceiptHandle"])
        self.release_dead_letters(others)
        return held

    def delete_dead_letters(self, handles: Sequence[str]) -> None:
        dlq = self._require_dlq("drop a dead-lettered message")
        for chunk in _chunks(handles):
            self._sqs.delete_message_batch(
                QueueUrl=dlq, Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)]
            )

    def release_dead_letters(self, handles: Sequence[str]) -> None:
        dlq = self._require_dlq("release a dead-lettered message")
        for chunk in _chunks(handles):
            self._sqs.change_message_visibility_batch(
                QueueUrl=dlq,
                Entries=[{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(chunk)],
            )

    def _require_dlq(self, action: str) -> str:
        if not self._dlq_url:
            raise RuntimeError(f"PQ_DLQ_URL is required to {action}")
        return self._dlq_url

    def _arn(self, url: str) -> str:
        attrs = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    def _attrs(self, url: str) -> dict[str, str]:
        resp = self._sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        attrs: dict[str, str] = resp["Attributes"]
        return attrs

    def stats(self) -> QueueStats:
        main = self._attrs(self._url)
        dlq = self._attrs(self._dlq_url) if self._dlq_url else {}
        return QueueStats(
            depth=int(main.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(main.get("ApproximateNumberOfMessagesNotVisible", 0)),
            dlq_depth=int(dlq.get("ApproximateNumberOfMessages", 0)),
        )

    def redrive(self) -> RedriveResult:
        """Start an SQS message move task from the DLQ back to payments.fifo.

        SQS runs one move task per queue at a time, so a running one is reported, not restarted.
        A FIFO redrive keeps each message's group; the payment function ignores a job it has
        already finished, so a redriven duplicate charges nothing.
        """
        dlq_arn = self._arn(self._require_dlq("redrive the dead-letter queue"))
        latest = self._sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1).get("Results", [])
        if latest and latest[0].get("Status") == "RUNNING":
            return RedriveResult(
                status="running",
                moved=int(latest[0].get("ApproximateNumberOfMessagesMoved", 0)),
                task_handle=latest[0].get("TaskHandle"),
            )
        # DestinationArn named: left blank, SQS sends each message back to "their respective original
        # source queues" (API_StartMessageMoveTask), the queue SQS itself dead-lettered it from. A
        # poison message we moved with SendMessage (dead_letter) was never dead-lettered by SQS, so it
        # has no such source queue; every message in this DLQ belongs in payments.fifo.
        started = self._sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=self._arn(self._url))
        return RedriveResult(status="started", moved=None, task_handle=started["TaskHandle"])


def _names_job(body: str, job_id: str) -> bool:
    """Whether a message's body names the job (shared/services/intake.job_message wrote it; a poison body
    may name none, or not be JSON at all)."""
    try:
        data = json.loads(body)
        return isinstance(data, dict) and str(uuid.UUID(str(data.get("job_id")))) == job_id
    except (ValueError, RecursionError):
        return False


class EventBridgeBus:
    def __init__(self, client: Any, bus_name: str) -> None:
        self._events = client
        self._bus = bus_name

    def publish(self, events: Sequence[dict[str, Any]]) -> list[str]:
        published: list[str] = []
        for chunk in _chunks(events):
            entries = [
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": e["type"],
                    "Detail": json.dumps(e, separators=(",", ":")),
                    "EventBusName": self._bus,
                }
                for e in chunk
            ]
            resp = self._events.put_events(Entries=entries)
            published.extend(str(e["id"]) for e, r in zip(chunk, resp["Entries"], strict=True) if "EventId" in r)
        return published

"""The AWS-shaped run: the Lambda handlers with their AWS adapters, as AWS would run them.

What stands in for what:

- Lambda: one process per function (tests/aws/lambda_container.py) with the function's environment
  from the synthesized template; the harness invokes it with the events AWS would send.
- RDS Proxy: PgBouncer in transaction pooling mode (local/pgbouncer.py). The functions log in as
  their own roles with an IAM token, which PgBouncer takes unchecked; migrate with the credentials of
  a Secrets Manager secret in RDS's format. ConnectionRelay below stands for the network in between
  where a test needs the pool's goodbyes lost.
- SQS FIFO + DLQ, EventBridge, SNS, Secrets Manager: moto's server over HTTP (AWS_ENDPOINT_URL).
- The SQS event source mapping: `EventSourceMapping` below.
- EventBridge -> SNS -> notify: moto 5.2.5 matches events against the rules but does not deliver to
  SNS targets, so each rule gets a second target, an SQS "tap" queue, and `EventDelivery` does what
  the rule's SNS target would: publishes the matched event to the topic (in moto), whose SQS tap
  subscription yields the SNS notification, which is handed to notify as Lambda's SNS event.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.aws.template import Resolver, Template

ROOT = Path(__file__).resolve().parents[2]


class FunctionError(Exception):
    """The handler raised: what Lambda reports as an Unhandled function error."""


class LambdaContainer:
    """One warm Lambda container of one function; stop() always ends its process."""

    def __init__(self, name: str, env: dict[str, str], timeout_s: float, log_dir: Path) -> None:
        self.name = name
        self.env = env
        self.timeout_s = timeout_s
        self.log_path = log_dir / f"{name}.log"
        self.invocations = 0
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> LambdaContainer:
        with open(self.log_path, "a") as log:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.aws.lambda_container",
                    f"functions.{self.name}.handler",
                    self.env["AWS_LAMBDA_FUNCTION_NAME"],
                    str(self.timeout_s),
                ],
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        return self

    def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], timeout_s)
        line = self._process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"{self.name} gave no answer; see {self.log_path}:\n{self.log_tail()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        assert self._read(timeout_s) == {"ready": True}

    def invoke(self, event: dict[str, Any]) -> Any:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(json.dumps(event) + "\n")
        self._process.stdin.flush()
        self.invocations += 1
        answer = self._read(self.timeout_s + 5)
        if "error" in answer:
            raise FunctionError(f"{self.name}: {answer['error']['type']}: {answer['error']['message']}")
        return answer["result"]

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text()[-chars:] if self.log_path.exists() else ""

    def close(self) -> None:
        """End the invocations: the container exits once it has read the last one."""
        if self._process is not None and self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()

    def stop(self) -> None:
        self.close()
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


class ConnectionRelay:
    """A TCP relay between the functions and the pool, standing for the network between a Lambda container
    and RDS Proxy. The pool's goodbye to a client it closes while idle (an error message, then EOF) reaches
    the function, or, with `lose_goodbyes` set, does not: the connection then looks open to the function,
    which learns that it is gone only from the statement it sends on it (closed then, unanswered). That
    is the race a container meets when RDS Proxy closes its connection a moment before it sends.

    Between a response's ReadyForQuery and the client's next message nothing is owed to the client: what
    the pool sends then is its goodbye, and is what a lost goodbye loses."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self.lose_goodbyes = False
        self._lock = threading.Lock()
        self._pool_open = 0  # connections whose pool side is open
        self.opened = 0
        # statements a function sent on a connection the pool had closed, its goodbye lost
        self.sent_on_closed = 0
        self._stopped = threading.Event()

    def start(self) -> ConnectionRelay:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()

    def all_dropped_by_the_pool(self) -> bool:
        """Whether the pool has closed every connection the functions left open (once they have used one)."""
        with self._lock:
            return self.opened > 0 and self._pool_open == 0

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            with self._lock:
                self.opened += 1
                self._pool_open += 1
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        pool_open, owed, tail = True, False, b""
        try:
            while not self._stopped.is_set():
                readable, _, _ = select.select([client, upstream] if pool_open else [client], [], [], 0.5)
                if client in readable:
                    data = client.recv(65536)
                    if data and not pool_open:
                        with self._lock:
                            self.sent_on_closed += 1
                    if not data or not pool_open:
                        return  # the function left, or spoke on a connection the pool had closed
                    owed = True
                    upstream.sendall(data)
                if pool_open and upstream in readable:
                    data = upstream.recv(65536)
                    if not data:
                        pool_open = False
                        with self._lock:
                            self._pool_open -= 1
                        if not self.lose_goodbyes:
                            return
                    elif owed or not self.lose_goodbyes:
                        client.sendall(data)
                        tail = (tail + data)[-6:]
                        # ReadyForQuery ('Z', length 5, status): the answer is complete
                        owed = tail[:5] != b"Z\x00\x00\x00\x05"
        except OSError:
            return
        finally:
            if pool_open:
                with self._lock:
                    self._pool_open -= 1
            client.close()
            upstream.close()


def sqs_event_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """A received SQS message as the event source mapping hands it to the function."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            name: attributes[name]
            for name in (
                "ApproximateReceiveCount",
                "SentTimestamp",
                "SenderId",
                "ApproximateFirstReceiveTimestamp",
                "SequenceNumber",
                "MessageGroupId",
                "MessageDeduplicationId",
            )
            if name in attributes
        },
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody")
        or hashlib.md5(message["Body"].encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


@dataclass
class MappingFigures:
    received: int = 0
    invocations: int = 0
    deleted: int = 0
    failed: int = 0
    dead_lettered: int = 0
    # Received while an older message of the same group was still outstanding (moto does not keep
    # FIFO order within a group after a visibility change): handed back unprocessed.
    held_back: int = 0


@dataclass
class EventSourceMapping:
    """The SQS event source mapping of a FIFO queue with ReportBatchItemFailures, one poller.

    Receives a batch with its system attributes, hands it to the function as Lambda's SQS event,
    deletes what succeeded, and leaves the failures to come back when their visibility ends -- the
    queue's, or what the handler set with ChangeMessageVisibility. SQS itself moves a message to the
    DLQ once it has been received maxReceiveCount times (moto does too, at the next receive); the
    mapping only stops waiting for it. Per-group order is kept here, not trusted to moto: a message
    whose group has an older message still outstanding is handed back unprocessed.
    """

    sqs: Any
    queue_url: str
    queue_arn: str
    function: LambdaContainer
    batch_size: int
    max_receive_count: int
    region: str
    figures: MappingFigures = field(default_factory=MappingFigures)
    # group -> message id -> order of first receipt, for every message received and not yet done
    outstanding: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    _seen: int = 0

    def poll(self) -> int:
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            return 0
        self.figures.received += len(messages)

        def group(m: dict[str, Any]) -> str:
            return str(m["Attributes"]["MessageGroupId"])

        # moto's SequenceNumber is 20 random digits, not increasing as SQS's is: order by the order
        # moto returns messages in (the order they were sent), remembered from their first receipt.
        for m in messages:
            if m["MessageId"] not in self.outstanding[group(m)]:
                self._seen += 1
                self.outstanding[group(m)][m["MessageId"]] = self._seen
        batch: list[dict[str, Any]] = []
        for m in messages:
            mine = self.outstanding[group(m)][m["MessageId"]]
            ahead = {b["MessageId"] for b in batch}
            older = [mid for mid, s in self.outstanding[group(m)].items() if s < mine and mid not in ahead]
            if older:
                self.figures.held_back += 1
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                batch.append(m)
        if not batch:
            return len(messages)
        self.figures.invocations += 1
        try:
            response = self.function.invoke(
                {"Records": [sqs_event_record(m, self.queue_arn, self.region) for m in batch]}
            )
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        except FunctionError:
            failed = {m["MessageId"] for m in batch}  # an invocation error fails the whole batch
        done = [m for m in batch if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        for m in done:
            self.outstanding[group(m)].pop(m["MessageId"], None)
        self.figures.deleted += len(done)
        for m in batch:
            if m["MessageId"] in failed:
                self.figures.failed += 1
                if int(m["Attributes"]["ApproximateReceiveCount"]) >= self.max_receive_count:
                    self.outstanding[group(m)].pop(m["MessageId"], None)
                    self.figures.dead_lettered += 1
        return len(messages)

    def idle(self) -> bool:
        return not any(self.outstanding.values())


def sns_lambda_event(notification: dict[str, Any], subscription_arn: str) -> dict[str, Any]:
    """An SNS notification (as SNS delivers it to an SQS subscriber) in Lambda's SNS event shape."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": subscription_arn,
                "Sns": {
                    "Type": notification["Type"],
                    "MessageId": notification["MessageId"],
                    "TopicArn": notification["TopicArn"],
                    "Subject": notification.get("Subject"),
                    "Message": notification["Message"],
                    "Timestamp": notification["Timestamp"],
                    "SignatureVersion": notification.get("SignatureVersion", "1"),
                    "Signature": notification.get("Signature", ""),
                    "SigningCertUrl": notification.get("SigningCertURL", ""),
                    "UnsubscribeUrl": notification.get("UnsubscribeURL", ""),
                    "MessageAttributes": notification.get("MessageAttributes", {}),
                },
            }
        ]
    }


def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message now in a standard queue, deleted as read."""
    found: list[dict[str, Any]] = []
    while got := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        found += got
        sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
        )
    return found


@dataclass
class EventDelivery:
    """What each EventBridge rule's SNS target and the topic's Lambda subscription would deliver."""

    sqs: Any
    sns: Any
    rule_taps: dict[str, str]  # rule name -> tap queue URL (what the rule matched)
    rule_topics: dict[str, str]  # rule name -> the topic ARN its target names in the template
    topic_taps: dict[str, str]  # topic ARN -> tap queue URL of an SQS subscription
    notify: LambdaContainer
    subscription_arn: str
    matched: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    delivered: int = 0

    def pump(self) -> int:
        moved = 0
        for rule, tap in self.rule_taps.items():
            for message in drain(self.sqs, tap):
                self.matched[rule] += 1
                # The rule's SNS target publishes the event (its JSON) as the message.
                self.sns.publish(TopicArn=self.rule_topics[rule], Message=message["Body"])
                moved += 1
        for tap in self.topic_taps.values():
            for message in drain(self.sqs, tap):
                self.notify.invoke(sns_lambda_event(json.loads(message["Body"]), self.subscription_arn))
                self.delivered += 1
        return moved


class WebhookReceiver:
    """The merchant's webhook endpoint on loopback: records what notify POSTs."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/payments"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def queue_attributes(properties: dict[str, Any], resolve: Resolver) -> dict[str, str]:
    """An AWS::SQS::Queue's properties as CreateQueue attributes (KMS keys have no local stand-in)."""
    names = (
        "FifoQueue",
        "ContentBasedDeduplication",
        "DeduplicationScope",
        "FifoThroughputLimit",
        "MessageRetentionPeriod",
        "VisibilityTimeout",
        "DelaySeconds",
        "ReceiveMessageWaitTimeSeconds",
        "MaximumMessageSize",
        "SqsManagedSseEnabled",
    )
    attributes = {
        n: str(properties[n]).lower() if isinstance(properties[n], bool) else str(properties[n])
        for n in names
        if n in properties
    }
    if policy := properties.get("RedrivePolicy"):
        attributes["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": resolve(policy["deadLetterTargetArn"]),
                "maxReceiveCount": policy["maxReceiveCount"],
            }
        )
    return attributes


def lambda_runtime_env(function_name: str, memory_mb: int, region: str, endpoint_url: str) -> dict[str, str]:
    """What the Lambda service puts in every function's environment, plus moto's endpoint."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": endpoint_url,
        # No X-Ray daemon here: the template turns active tracing on.
        "POWERTOOLS_TRACE_DISABLED": "true",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "LANG": "C.UTF-8",
    }


def wait_until(condition: Callable[[], bool], step: Callable[[], int], timeout_s: float) -> None:
    """Run step() until condition() holds; sleep briefly whenever a step found nothing to do."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the AWS-shaped run did not settle in time")
        if step() == 0:
            time.sleep(0.05)


__all__ = [
    "ConnectionRelay",
    "EventDelivery",
    "EventSourceMapping",
    "FunctionError",
    "LambdaContainer",
    "Template",
    "WebhookReceiver",
    "drain",
    "lambda_runtime_env",
    "queue_attributes",
    "wait_until",
]

"""What the Lambda service hands a function: a context object and the event shapes we build."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

REGION = "ap-south-1"
ACCOUNT = "000000000000"


@dataclass
class LocalContext:
    """Duck-types aws_lambda_powertools.utilities.typing.LambdaContext."""

    function_name: str
    # The processor's timeout in every environment (infra/config.py), which the processor budgets
    # its records against (shared/services/processing.py).
    timeout_s: float = 120.0
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    @property
    def function_version(self) -> str:
        return "$LATEST"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


def sqs_record(msg: dict[str, Any], queue: str) -> dict[str, Any]:
    """A PGMQ message as the SQS event source mapping would deliver it from payments.fifo."""
    body = json.dumps(msg["message"], separators=(",", ":"))
    headers = msg.get("headers") or {}
    enqueued_ms = str(int(msg["enqueued_at"].timestamp() * 1000))
    return {
        "messageId": str(msg["msg_id"]),
        "receiptHandle": f"{queue}:{msg['msg_id']}:{msg['read_ct']}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(msg["read_ct"]),
            "SentTimestamp": enqueued_ms,
            "SenderId": ACCOUNT,
            "ApproximateFirstReceiveTimestamp": enqueued_ms,
            "SequenceNumber": str(msg["msg_id"]),
            "MessageGroupId": headers.get("x-pgmq-group", "_default"),
            "MessageDeduplicationId": headers.get("job_id", str(msg["msg_id"])),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}.fifo",
        "awsRegion": REGION,
    }


def sns_event(message: dict[str, Any], topic: str) -> dict[str, Any]:
    """One SNS notification carrying an EventBridge event, as SNS invokes a subscribed function."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic}:local",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": str(uuid.uuid4()),
                    "TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic}",
                    "Subject": None,
                    "Message": json.dumps(message, separators=(",", ":")),
                    "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                    "SignatureVersion": "1",
                    "Signature": "",
                    "SigningCertUrl": "",
                    "UnsubscribeUrl": "",
                    "MessageAttributes": {},
                },
            }
        ]
    }


def http_api_event(
    *,
    method: str,
    path: str,
    route_key: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    claims: dict[str, Any] | None,
    scopes: list[str] | None,
    path_parameters: dict[str, str] | None,
    source_ip: str,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, as the JWT authorizer leaves it."""
    now = time.time()
    text: str
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "domainName": headers.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if claims is not None:
        # The authorizer hands claims on as strings, lists as "[a b]".
        flat = {k: (f"[{' '.join(map(str, v))}]" if isinstance(v, list) else str(v)) for k, v in claims.items()}
        event["requestContext"]["authorizer"] = {"jwt": {"claims": flat, "scopes": scopes}}
    if query:
        event["queryStringParameters"] = dict(parse_qsl(query))
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = text
    return event

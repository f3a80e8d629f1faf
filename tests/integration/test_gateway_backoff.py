"""Handing a message back for later: SQS ChangeMessageVisibility, PGMQ set_vt, and the backoff."""

from __future__ import annotations

from typing import Any

import pytest

from local.workers import read_fifo, settle
from shared.adapters.aws import SqsJobQueue
from shared.bootstrap import App
from shared.domain import full_jitter_backoff
from shared.ports import QueueMessage
from tests.integration.helpers import pay


def test_sqs_change_visibility_hides_the_received_message(queues: tuple[Any, str, str]) -> None:
    sqs, url, _ = queues
    queue = SqsJobQueue(sqs, url)
    queue.send([QueueMessage("j1", "u1", {"job_id": "j1"})])
    received = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"][0]

    queue.change_visibility(received["ReceiptHandle"], 30)

    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []


def test_local_settle_keeps_a_visibility_the_handler_extended(app: App, demo: dict[str, int]) -> None:
    # Given two failed records, one of which the handler handed back for 20 s
    pay(app, "demo-user-1", "k1")
    pay(app, "demo-user-2", "k2")
    messages = read_fifo(app.db, "payments", visibility_timeout_s=30, qty=10)
    backed_off, plain = messages
    app.queue.change_visibility(f"payments:{backed_off['msg_id']}:{backed_off['read_ct']}", 20)

    # When the batch is settled with a retry delay of 0
    settle(
        app.db,
        messages,
        {str(m["msg_id"]) for m in messages},
        queue="payments",
        dlq="payments_dlq",
        max_receive_count=5,
        retry_delay_s=0,
    )

    # Then only the plain failure is visible again; the backed-off one waits its 20 s
    visible = read_fifo(app.db, "payments", visibility_timeout_s=30, qty=10)
    assert [m["msg_id"] for m in visible] == [plain["msg_id"]]


def test_a_stale_receipt_handle_changes_nothing(app: App, demo: dict[str, int]) -> None:
    pay(app, "demo-user-1", "k1")
    (message,) = read_fifo(app.db, "payments", visibility_timeout_s=0, qty=1)
    app.queue.change_visibility(f"payments:{message['msg_id']}:{message['read_ct'] + 5}", 60)
    assert len(read_fifo(app.db, "payments", visibility_timeout_s=0, qty=1)) == 1
    with pytest.raises(ValueError, match="another queue"):
        app.queue.change_visibility(f"elsewhere:{message['msg_id']}:1", 60)


def test_backoff_is_full_jitter_capped_and_never_sooner_than_retry_after() -> None:
    delays = [full_jitter_backoff(4, None, base_s=1.0, cap_s=300) for _ in range(200)]
    assert min(delays) >= 0 and max(delays) <= 8 and len(set(delays)) > 3
    assert all(full_jitter_backoff(1, 7.2, base_s=1.0, cap_s=300) == 8 for _ in range(20))
    assert full_jitter_backoff(30, None, base_s=1.0, cap_s=60) <= 60
    assert full_jitter_backoff(1, 10_000, base_s=1.0, cap_s=60) == 60

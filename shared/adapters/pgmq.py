"""PGMQ adapters: the local stand-ins for SQS FIFO and EventBridge + SNS.

They call PGMQ's SQL functions on the same PostgreSQL through psycopg2, so the local runtime
needs no second driver. The FIFO group travels in the x-pgmq-group header, which PGMQ's
grouped reads honour.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shared.db import Database
from shared.domain import EVENT_SOURCE
from shared.ports import QueueMessage, QueueStats, RedriveResult

# Headers the local event source mapping adds when it dead-letters a message; a redriven message
# starts afresh, as one moved by an SQS message move task does.
_DEAD_LETTER_HEADERS = ("x-source-queue", "x-receive-count")


def _jsonb_array(items: Sequence[Any]) -> list[str]:
    return [json.dumps(i, separators=(",", ":")) for i in items]


class PgmqJobQueue:
    def __init__(self, db: Database, queue: str, dlq: str) -> None:
        self._db = db
        self.queue = queue
        self.dlq = dlq

    def send(self, messages: Sequence[QueueMessage]) -> list[str]:
        if not messages:
            return []
        # Relaxed commit (shared/sql/local_queue.sql): the job row is already durable, and a message
        # lost in a crash takes the job's later "sent" mark with it, so the sweeper sends it again.
        # The enqueue path then waits for one WAL flush, not three.
        self._db.execute(
            "SELECT pq_local_send(%s, %s::jsonb[], %s::jsonb[])",
            (
                self.queue,
                _jsonb_array([m.body for m in messages]),
                _jsonb_array([{"x-pgmq-group": m.group_id, "job_id": m.job_id} for m in messages]),
            ),
        )
        return [m.job_id for m in messages]

    def change_visibility(self, receipt_handle: str, delay_s: int) -> None:
        """The local receipt handle is "<queue>:<msg_id>:<read_ct>" (local/lambda_shim.sqs_record).

        Like SQS, a stale handle (the message was received again since) changes nothing.
        """
        queue, msg_id, read_ct = receipt_handle.rsplit(":", 2)
        if queue != self.queue:
            raise ValueError("receipt handle of another queue")
        self._db.execute(
            f"""UPDATE pgmq.q_{self.queue} SET vt = clock_timestamp() + make_interval(secs => %s)
                 WHERE msg_id = %s AND read_ct = %s""",
            (max(0, delay_s), int(msg_id), int(read_ct)),
        )

    def stats(self) -> QueueStats:
        row = self._db.fetch_one(
            f"""SELECT (SELECT count(*) FILTER (WHERE vt <= clock_timestamp()) FROM pgmq.q_{self.queue}) AS depth,
                       (SELECT count(*) FILTER (WHERE vt > clock_timestamp()) FROM pgmq.q_{self.queue}) AS in_flight,
                       (SELECT count(*) FROM pgmq.q_{self.dlq}) AS dlq_depth"""
        )
        assert row is not None
        return QueueStats(depth=row["depth"], in_flight=row["in_flight"], dlq_depth=row["dlq_depth"])

    def redrive(self) -> RedriveResult:
        """Move the whole DLQ back in one transaction, oldest first, keeping x-pgmq-group and job_id.

        Rows another redrive is moving right now are skipped rather than waited for, so two
        clicks never move a message twice.
        """
        with self._db.transaction() as cur:
            cur.execute(
                f"""DELETE FROM pgmq.q_{self.dlq}
                     WHERE msg_id IN (SELECT msg_id FROM pgmq.q_{self.dlq} FOR UPDATE SKIP LOCKED)
                 RETURNING msg_id, message, headers"""
            )
            dead = sorted(cur.fetchall(), key=lambda r: r["msg_id"])
            if dead:
                cur.execute(
                    "SELECT pgmq.send_batch(%s, %s::jsonb[], %s::jsonb[])",
                    (
                        self.queue,
                        _jsonb_array([r["message"] for r in dead]),
                        _jsonb_array(
                            [
                                {k: v for k, v in (r["headers"] or {}).items() if k not in _DEAD_LETTER_HEADERS}
                                for r in dead
                            ]
                        ),
                    ),
                )
        return RedriveResult(status="completed", moved=len(dead))


class PgmqEventBus:
    """Publishes the same envelope EventBridge would deliver through SNS to the notify function."""

    def __init__(self, db: Database, queue: str) -> None:
        self._db = db
        self.queue = queue

    def publish(self, events: Sequence[dict[str, Any]]) -> list[str]:
        if not events:
            return []
        envelopes = [{"source": EVENT_SOURCE, "detail-type": e["type"], "id": e["id"], "detail": e} for e in events]
        # Relaxed commit: the outbox row is durable and stays unpublished if this is lost.
        self._db.execute("SELECT pq_local_send(%s, %s::jsonb[], NULL)", (self.queue, _jsonb_array(envelopes)))
        return [str(e["id"]) for e in events]

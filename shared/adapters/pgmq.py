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
from shared.ports import QueueMessage, QueueStats, ReceivedMessage, RedriveResult, SendInTransaction

# Headers a move to the DLQ adds; a redriven message starts afresh, as one moved by an SQS message
# move task does.
_DEAD_LETTER_HEADERS = ("x-source-queue", "x-receive-count", "x-dead-letter-reason")


def _json(item: Any) -> str:
    return json.dumps(item, separators=(",", ":"))


def _jsonb_array(items: Sequence[Any]) -> list[str]:
    return [_json(i) for i in items]


def _headers(message: QueueMessage) -> dict[str, str]:
    """The FIFO group (which the local FIFO read honours) and the job, as SQS's attributes carry them."""
    return {"x-pgmq-group": message.group_id, "job_id": message.job_id}


def move_to_dlq(db: Database, received: Sequence[tuple[int, int, str | None]], *, queue: str, dlq: str) -> list[int]:
    """Move received messages, given as (msg_id, read_ct, reason), to the DLQ in one transaction:
    same message and headers, plus where it came from, after how many deliveries and why.

    Only the delivery that was read moves: a message received again since (another read_ct) stays,
    as SQS ignores a stale receipt handle. Returns the msg_ids moved. (Queue names validated.)
    """
    if not received:
        return []
    with db.transaction() as cur:
        cur.execute(
            f"""DELETE FROM pgmq.q_{queue} q
                 USING unnest(%s::bigint[], %s::int[], %s::text[]) AS r(msg_id, read_ct, reason)
                 WHERE q.msg_id = r.msg_id AND q.read_ct = r.read_ct
             RETURNING q.msg_id, q.read_ct, q.message, q.headers, r.reason""",
            ([m for m, _, _ in received], [c for _, c, _ in received], [r for _, _, r in received]),
        )
        gone = sorted(cur.fetchall(), key=lambda r: r["msg_id"])
        if gone:
            cur.execute(
                "SELECT pgmq.send_batch(%s, %s::jsonb[], %s::jsonb[])",
                (
                    dlq,
                    _jsonb_array([g["message"] for g in gone]),
                    _jsonb_array(
                        [
                            (g["headers"] or {})
                            | {"x-source-queue": queue, "x-receive-count": g["read_ct"]}
                            | ({"x-dead-letter-reason": g["reason"]} if g["reason"] else {})
                            for g in gone
                        ]
                    ),
                ),
            )
    return [g["msg_id"] for g in gone]


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
                _jsonb_array([_headers(m) for m in messages]),
            ),
        )
        return [m.job_id for m in messages]

    def in_transaction(self, message: QueueMessage) -> SendInTransaction:
        """The queue is a table of the jobs' own database: the intake inserts the message with the job."""
        return SendInTransaction(queue=self.queue, body=_json(message.body), headers=_json(_headers(message)))

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

    def dead_letter(self, message: ReceivedMessage, reason: str) -> None:
        """The local move is one transaction, so it has no crash window between copy and delete."""
        queue, msg_id, read_ct = message.receipt_handle.rsplit(":", 2)
        if queue != self.queue:
            raise ValueError("receipt handle of another queue")
        move_to_dlq(self._db, [(int(msg_id), int(read_ct), reason)], queue=self.queue, dlq=self.dlq)

    def hold_dead_letters(self, job_id: str) -> list[str]:
        """The DLQ's messages naming the job (its job_id header, or the body's, for a message that came
        without one), as "<dlq>:<msg_id>". The DLQ is small: read whole, never on the payment path."""
        rows = self._db.fetch_all(
            f"""SELECT msg_id FROM pgmq.q_{self.dlq}
                 WHERE headers->>'job_id' = %s OR lower(message->>'job_id') = %s ORDER BY msg_id""",
            (job_id, job_id.lower()),
        )
        return [f"{self.dlq}:{r['msg_id']}" for r in rows]

    def delete_dead_letters(self, handles: Sequence[str]) -> None:
        if handles:
            self._db.execute(
                f"DELETE FROM pgmq.q_{self.dlq} WHERE msg_id = ANY(%s::bigint[])",
                ([self._dlq_msg_id(h) for h in handles],),
            )

    def release_dead_letters(self, handles: Sequence[str]) -> None:
        """Nothing was held (hold_dead_letters)."""

    def _dlq_msg_id(self, handle: str) -> int:
        queue, msg_id = handle.rsplit(":", 1)
        if queue != self.dlq:
            raise ValueError("handle of another queue")
        return int(msg_id)

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

"""The local stand-in for the SQS event source mapping and for SNS: loops over PGMQ queues that
hand SQS- and SNS-shaped events to the real handlers.

Like the event source mapping: read a batch (FIFO per group, see read_fifo),
invoke the handler, delete what succeeded, let failures come back later, and move a message to
the DLQ once it has been received max_receive_count times.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from local.config import LocalSettings
from local.lambda_shim import LocalContext, sns_event, sqs_record
from shared.adapters.pgmq import move_to_dlq
from shared.bootstrap import bootstrap
from shared.db import Database
from shared.domain import full_jitter_backoff
from shared.observability import logger
from shared.services.processing import parse_job_message
from shared.services.wallet import process_wallet_job

_stop = False


def _request_stop(*_: Any) -> None:
    global _stop
    _stop = True


# SQS FIFO's rule, in O(batch): take a visible message only if no older message of its group is
# still in the queue (visible or in flight). PGMQ's read_grouped_rr aggregates the whole queue on
# every call -- about 50 ms a read with 5,000 one-message groups here -- while this walks the
# primary key from the oldest message and probes the (group, msg_id) index that install_pgmq
# creates: about 1.3 ms for ten messages from the same queue. Plain SQL rather than a PL/pgSQL
# function with EXECUTE, which would plan it again on every call.
_READ_FIFO = """
    WITH picked AS (
        SELECT m.msg_id FROM pgmq.q_{queue} m
         WHERE m.vt <= clock_timestamp()
           AND NOT EXISTS (SELECT 1 FROM pgmq.q_{queue} older
                            WHERE older.headers->>'x-pgmq-group' = m.headers->>'x-pgmq-group'
                              AND older.msg_id < m.msg_id)
         ORDER BY m.msg_id
         LIMIT %(qty)s
         FOR UPDATE SKIP LOCKED)
    UPDATE pgmq.q_{queue} m
       SET vt = clock_timestamp() + make_interval(secs => %(vt)s),
           read_ct = m.read_ct + 1,
           last_read_at = clock_timestamp()
      FROM picked
     WHERE m.msg_id = picked.msg_id
    RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers"""


def read_fifo(db: Database, queue: str, *, visibility_timeout_s: int, qty: int) -> list[dict[str, Any]]:
    """Receive up to qty messages, oldest first, never two groups' order broken (queue name validated)."""
    rows = db.fetch_all(_READ_FIFO.format(queue=queue), {"qty": qty, "vt": visibility_timeout_s})
    return sorted(rows, key=lambda m: m["msg_id"])


def settle(
    db: Database,
    messages: list[dict[str, Any]],
    failed: set[str],
    *,
    queue: str,
    dlq: str,
    max_receive_count: int,
    retry_delay_s: int,
) -> dict[str, int]:
    """Delete the successes; send exhausted failures to the DLQ; make the rest visible again soon."""
    done = [m["msg_id"] for m in messages if str(m["msg_id"]) not in failed]
    dead = [m for m in messages if str(m["msg_id"]) in failed and m["read_ct"] >= max_receive_count]
    retry = [m for m in messages if str(m["msg_id"]) in failed and m["read_ct"] < max_receive_count]
    if done:
        # Relaxed commit (shared/sql/local_queue.sql): a delete lost in a crash only redelivers
        # messages whose jobs are done, which the payment functions acknowledge without a second charge.
        db.execute("SELECT pq_local_delete(%s, %s::bigint[])", (queue, done))
    if dead:
        moved = move_to_dlq(db, [(m["msg_id"], m["read_ct"], None) for m in dead], queue=queue, dlq=dlq)
        # The processor logged each one's last error as it failed ("message moved to the DLQ").
        logger.warning(
            "moved to DLQ",
            queue=queue,
            message_ids=moved,
            job_ids=[
                m["message"].get("job_id") for m in dead if m["msg_id"] in moved and isinstance(m["message"], dict)
            ],
        )
    if retry:
        # Only where the visibility is still the one the read set: a handler that handed a message
        # back for later (ChangeMessageVisibility: a gateway backoff) has already decided when.
        db.execute(
            f"""UPDATE pgmq.q_{queue} q SET vt = clock_timestamp() + make_interval(secs => %s)
                  FROM unnest(%s::bigint[], %s::timestamptz[]) AS r(msg_id, vt)
                 WHERE q.msg_id = r.msg_id AND q.vt = r.vt""",
            (retry_delay_s, [m["msg_id"] for m in retry], [m["vt"] for m in retry]),
        )
    return {"deleted": len(done), "dead": len(dead), "retried": len(retry)}


def dead_letter(db: Database, messages: list[dict[str, Any]], *, queue: str, dlq: str) -> None:
    """Move received messages to the DLQ now, as after their last failed delivery (tools, tests)."""
    settle(
        db, messages, {str(m["msg_id"]) for m in messages}, queue=queue, dlq=dlq, max_receive_count=1, retry_delay_s=0
    )


def _poll(loop_once: Callable[[], int], idle_sleep_s: float = 0.05, max_idle_s: float = 0.25) -> None:
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    # Everything the start-up made (the handlers, Powertools, boto3, pydantic's models) lives as long as
    # the process: out of the collector's way, so its full collections walk only what the work allocates.
    gc.freeze()
    idle = idle_sleep_s
    while not _stop:
        try:
            handled = loop_once()
        except Exception:
            logger.exception("worker iteration failed; backing off")
            handled = 0
            time.sleep(1.0)
        if handled:
            idle = idle_sleep_s
        else:
            time.sleep(idle)
            idle = min(max_idle_s, idle * 2)


def run_processor(local: LocalSettings) -> None:
    from functions.process_payment.handler import handler

    app = bootstrap()
    queue, dlq = app.settings.queue_name, app.settings.dlq_name

    batches = 0

    def once() -> int:
        nonlocal batches
        messages = read_fifo(app.db, queue, visibility_timeout_s=local.visibility_timeout_s, qty=local.batch_size)
        if not messages:
            return 0
        batches += 1
        if local.fault_kill == "mid_batch" and batches == local.fault_after_batches:
            _die_mid_batch(app, messages)
        event = {"Records": [sqs_record(m, queue) for m in messages]}
        try:
            response = handler(event, LocalContext(function_name="payment-queue-process-payment"))
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        except Exception:
            # A whole-invocation failure: every record comes back, as with SQS.
            logger.exception("process_payment invocation failed")
            failed = {str(m["msg_id"]) for m in messages}
        if local.fault_kill == "before_delete" and batches == local.fault_after_batches:
            _die("before_delete", messages)
        settle(
            app.db,
            messages,
            failed,
            queue=queue,
            dlq=dlq,
            max_receive_count=app.settings.max_receive_count,
            retry_delay_s=local.retry_delay_s,
        )
        return len(messages)

    _poll(once)


def _die(point: str, messages: list[dict[str, Any]]) -> None:
    logger.warning("fault injection: SIGKILL", point=point, message_ids=[m["msg_id"] for m in messages])
    os.kill(os.getpid(), signal.SIGKILL)


def _die_mid_batch(app: Any, messages: list[dict[str, Any]]) -> None:
    """Commit the first half of the batch as the handler would, then die before the rest, before
    publishing their events and before deleting anything: a Lambda killed mid-batch."""
    for m in messages[: max(1, len(messages) // 2)]:
        try:
            process_wallet_job(app, parse_job_message(json.dumps(m["message"])).job_id)
        except Exception:
            logger.exception("fault injection: payment before the kill failed", message_id=m["msg_id"])
    _die("mid_batch", messages)


# The notifier's niceness. On AWS it runs on compute of its own (SNS invokes the notify function); here it
# shares the cores with the payment path, and what it does can wait a moment: deliveries of events already
# committed, and the sweeper's repairs. At the default priority it took its share of the cores while a sale's
# payments queued; niced, a 5,000-shopper sale on 2 cores drained ~12 % sooner, every event still delivered
# (docs/benchmark.md). It changes nothing on an idle machine.
NOTIFIER_NICENESS = 10


def run_notifier(local: LocalSettings, sweep_every_s: float = 5.0) -> None:
    """Delivers events to the notify handler (SNS's part) and runs the sweeper on a schedule, at a lower
    priority than the payment path (NOTIFIER_NICENESS)."""
    from functions.notify.handler import handler as notify
    from functions.sweeper.handler import handler as sweeper

    os.nice(NOTIFIER_NICENESS)
    app = bootstrap()
    queue = app.settings.events_queue_name
    dlq = f"{queue}_dlq"
    next_sweep = 0.0

    def once() -> int:
        nonlocal next_sweep
        if time.monotonic() >= next_sweep:
            next_sweep = time.monotonic() + sweep_every_s
            try:
                sweeper(
                    {"source": "aws.events", "detail-type": "Scheduled Event"},
                    LocalContext(function_name="payment-queue-sweeper"),
                )
            except Exception:  # a failed run, as EventBridge's is on AWS: logged, the next one on schedule
                logger.exception("sweeper run failed")
        messages = app.db.fetch_all("SELECT * FROM pgmq.read(%s, %s, %s)", (queue, local.visibility_timeout_s, 10))
        failed: set[str] = set()
        for m in messages:
            try:
                notify(sns_event(m["message"], "payment-events"), LocalContext(function_name="payment-queue-notify"))
            except Exception as exc:
                # Exponential backoff with full jitter, as Lambda retries an async invocation;
                # after max_receive_count deliveries the event goes to payment_events_dlq.
                delay = full_jitter_backoff(m["read_ct"], None, base_s=local.retry_delay_s, cap_s=300)
                logger.warning("notify failed; will retry", message_id=m["msg_id"], delay_s=delay, error=str(exc)[:200])
                app.db.execute("SELECT pgmq.set_vt(%s, %s::bigint, %s)", (queue, m["msg_id"], delay))
                failed.add(str(m["msg_id"]))
        if messages:
            settle(
                app.db,
                messages,
                failed,
                queue=queue,
                dlq=dlq,
                max_receive_count=app.settings.max_receive_count,
                retry_delay_s=local.retry_delay_s,
            )
        return len(messages)

    _poll(once)


def main() -> None:
    parser = argparse.ArgumentParser(description="local queue workers")
    parser.add_argument("role", choices=["processor", "notifier"])
    args = parser.parse_args()
    local = LocalSettings()
    if args.role == "processor":
        run_processor(local)
    else:
        run_notifier(local)


if __name__ == "__main__":
    main()

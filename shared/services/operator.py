"""The operator's routes (functions/status): metrics, DLQ redrive and drop, database health, refund retry."""

from __future__ import annotations

import time
import uuid
from typing import Any, Protocol

from shared.domain import build_event
from shared.errors import Conflict, NotFound, job_not_found
from shared.observability import logger
from shared.outcomes import DlqDropOutcome, RefundRetryOutcome
from shared.ports import HasBus, HasDb, HasQueue
from shared.services.outbox import publish_events

_WINDOWS_MIN = (1, 5, 60)


class DropDeps(HasDb, HasQueue, HasBus, Protocol):
    """What dropping a dead letter uses: the DLQ, the books, and the bus for the job's event."""


def metrics_summary(deps: HasDb) -> dict[str, Any]:
    row = deps.db.fetch_one(
        " , ".join(
            f"""count(*) FILTER (WHERE finished_at > now() - interval '{m} minutes') AS processed_{m},
                count(*) FILTER (WHERE finished_at > now() - interval '{m} minutes' AND status = 'succeeded')
                    AS succeeded_{m},
                avg(extract(epoch FROM finished_at - created_at))
                    FILTER (WHERE finished_at > now() - interval '{m} minutes') AS avg_wait_{m},
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at))
                    FILTER (WHERE finished_at > now() - interval '{m} minutes') AS p50_wait_{m},
                percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at))
                    FILTER (WHERE finished_at > now() - interval '{m} minutes') AS p95_wait_{m}"""
            for m in _WINDOWS_MIN
        ).join(["SELECT ", " FROM payment_jobs WHERE finished_at > now() - interval '60 minutes'"])
    )
    # Failed deliveries (transient errors, backoffs, poison), which business failures do not count.
    deliveries = deps.db.fetch_one(
        "SELECT "
        + ", ".join(
            f"count(*) FILTER (WHERE created_at > now() - interval '{m} minutes') AS d_{m}" for m in _WINDOWS_MIN
        )
        + " FROM delivery_failures WHERE created_at > now() - interval '60 minutes'"
    )
    assert row is not None and deliveries is not None
    windows: dict[str, Any] = {}
    for m in _WINDOWS_MIN:
        processed, succeeded = row[f"processed_{m}"], row[f"succeeded_{m}"]
        failed, failed_deliveries = processed - succeeded, deliveries[f"d_{m}"]
        # Errors are ours: deliveries that failed (a fault, the gateway or the database away), out of every
        # delivery (each processed job's last, and each failed one). A declined payment (no money, sold out)
        # is the system working: its share is decline_rate, and it never raises the error rate.
        attempts = processed + failed_deliveries
        windows[f"{m}m"] = {
            "processed": processed,
            "succeeded": succeeded,
            "failed": failed,
            "success_rate": round(succeeded / processed, 4) if processed else None,
            "decline_rate": round(failed / processed, 4) if processed else None,
            "error_rate": round(failed_deliveries / attempts, 4) if attempts else None,
            "failed_deliveries": failed_deliveries,
            "avg_wait_s": None if row[f"avg_wait_{m}"] is None else round(float(row[f"avg_wait_{m}"]), 3),
            "p50_wait_s": None if row[f"p50_wait_{m}"] is None else round(float(row[f"p50_wait_{m}"]), 3),
            "p95_wait_s": None if row[f"p95_wait_{m}"] is None else round(float(row[f"p95_wait_{m}"]), 3),
        }
    return {"windows": windows}


def redrive_dlq(deps: HasQueue) -> dict[str, Any]:
    """Operator action: send dead-lettered jobs back to the queue once their cause is fixed.

    Safe to repeat: a job that already reached a terminal state is acknowledged as is when
    its message comes round again.
    """
    result = deps.queue.redrive()
    logger.info("dlq redrive", status=result.status, moved=result.moved, task_handle=result.task_handle)
    body: dict[str, Any] = {"status": result.status, "moved": result.moved}
    if result.task_handle:
        body["task_handle"] = result.task_handle
    return body


def db_health(deps: HasDb) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        row = deps.db.fetch_one(
            """SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS in_use,
                      current_setting('max_connections')::int AS max_connections"""
        )
    except Exception as exc:
        logger.warning("database health check failed", error=type(exc).__name__)
        return {"reachable": False, "error": type(exc).__name__}
    assert row is not None
    return {
        "reachable": True,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "connections_in_use": row["in_use"],
        "max_connections": row["max_connections"],
    }


def retry_refund(deps: HasDb, refund_id: str, operator: str) -> dict[str, Any]:
    """Operator action: try an owed refund again (one attempt more, due at once; the sweeper sends it).
    Idempotent: a refund that is not owed (already scheduled, pending, returned) is answered as it stands."""
    if not refund_id.isdigit() or len(refund_id) > 18:
        raise _refund_not_found()
    row = deps.db.fetch_one("SELECT * FROM pq_refund_operator_retry(%s)", (int(refund_id),))
    assert row is not None
    if row["outcome"] == RefundRetryOutcome.NOT_FOUND:
        raise _refund_not_found()
    logger.warning("refund retry asked", refund_id=int(refund_id), outcome=row["outcome"], operator=operator)
    return {
        "refund_id": int(refund_id),
        "outcome": row["outcome"],
        "state": row["state"],
        "amount_paise": row["amount_paise"],
    }


def _refund_not_found() -> NotFound:
    return NotFound("refund_not_found", "no such refund")


def drop_dead_letter(deps: DropDeps, job_id: str, operator: str) -> dict[str, Any]:
    """Operator action: drop a job's message from the DLQ for good (a poison message a redrive would only
    send back there). The job ends failed, reason dropped_by_operator, and the drop is recorded with who
    made it and when (shared/sql/failures.sql, pq_drop_dead_letter). Idempotent: a job dropped already is
    answered with that drop, and any message of it still in the DLQ is deleted.

    The job's messages are held first, the job ended in one transaction, then the messages deleted: a
    crash between leaves a message of a finished job (acknowledged without work by a redrive's delivery),
    never a live job with no message."""
    try:
        job_uuid = uuid.UUID(job_id)
    except ValueError:
        raise job_not_found() from None
    held = deps.queue.hold_dead_letters(str(job_uuid))
    outcome: DlqDropOutcome | None = None
    try:
        row = deps.db.fetch_one("SELECT * FROM pq_drop_dead_letter(%s, %s, %s)", (job_uuid, operator, bool(held)))
        assert row is not None
        outcome = DlqDropOutcome(row["outcome"])
    finally:
        if outcome not in (DlqDropOutcome.DROPPED, DlqDropOutcome.ALREADY_DROPPED):
            deps.queue.release_dead_letters(held)
    if outcome is DlqDropOutcome.JOB_NOT_FOUND:
        raise job_not_found()
    if outcome is DlqDropOutcome.NOT_DEAD_LETTERED:
        raise Conflict(
            "job_not_dead_lettered",
            "this job has no message in the DLQ: it waits in line, a processor has it, or it has ended",
            job_status=row["status"],
            reason=row["reason"],
        )
    if outcome is DlqDropOutcome.GATEWAY_MONEY_UNSETTLED:
        raise Conflict(
            "gateway_money_unsettled",
            "this gateway job's money is not settled in our books (captured and not applied or refunded, or "
            "never read from the gateway): fix the cause and redrive it, and its processor applies or refunds it",
            job_status=row["status"],
            money=row["money"],
        )
    deps.queue.delete_dead_letters(held)
    if outcome is DlqDropOutcome.DROPPED and row["event"] is not None:
        publish_events(deps, [build_event(row["event"])])  # if the bus is down, the sweeper publishes it
    logger.warning(
        "dead-lettered job dropped",
        job_id=str(job_uuid),
        operator=operator,
        outcome=outcome.value,
        job_status=row["job_status"],
        messages_deleted=len(held),
    )
    return {
        "job_id": str(job_uuid),
        "status": row["status"],
        "reason": row["reason"],
        "status_when_dropped": row["job_status"],
        "dropped_by": row["dropped_by"],
        "dropped_at": row["dropped_at"].isoformat(),
    }

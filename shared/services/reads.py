"""Reading a job and the queue (functions/status): one statement each."""

from __future__ import annotations

import uuid
from typing import Any

from shared.bootstrap import App
from shared.domain import ApiError, JobStatus

# Fraction of the ETA a client is told to wait before its next poll.
POLL_AT_ETA = 0.75
# The operator's queue view lists this many of the DLQ's jobs, newest first.
DLQ_JOBS_SHOWN = 20
# A status poll's one statement (bench/capacity.py measures its cost for docs/capacity.md).
JOB_QUERY = """SELECT id, user_id, order_id, status, reason, payment_id, queue_seq, pq_finished_count() AS finished
                 FROM payment_jobs WHERE id = %s AND user_id = %s"""


def job_view(app: App, row: dict[str, Any]) -> dict[str, Any]:
    """The JSON a client sees for a job: status, and while queued its position and advice."""
    job_id = str(row["id"])
    status = row["status"]
    view: dict[str, Any] = {
        "job_id": job_id,
        "status": status,
        "order_id": row["order_id"],
        "status_url": f"/v1/payments/{job_id}",
    }
    if status in (JobStatus.QUEUED, JobStatus.PROCESSING):
        app.throughput.observe(row["finished"])
        # Never increases: queue_seq is fixed and the finished counter only grows.
        position = max(1, row["queue_seq"] - row["finished"])
        # No measured rate (just started, or stalled): no ETA, rather than a guess.
        per_s = app.throughput.rate()
        eta_s = position / (per_s or app.settings.assumed_payments_per_s)
        # Come back when the job is about due: at 5,000 waiting shoppers every extra poll is load
        # on the API and the database that the payments themselves need.
        poll_ms = int(min(app.settings.poll_max_ms, max(app.settings.poll_min_ms, eta_s * 1000 * POLL_AT_ETA)))
        eta = round(eta_s, 1) if per_s else None
        view |= {"position": position, "eta_seconds": eta, "poll_after_ms": poll_ms}
    elif status == JobStatus.FAILED:
        view["reason"] = row["reason"]
    elif status == JobStatus.SUCCEEDED:
        view["payment_id"] = row["payment_id"]
    return view


def get_job(app: App, user_id: str, job_id: str) -> dict[str, Any]:
    try:
        job_uuid = uuid.UUID(job_id)
    except ValueError:
        raise ApiError(404, "job_not_found", "no such payment job") from None
    row = app.db.fetch_one(JOB_QUERY, (job_uuid, user_id))
    if row is None:  # someone else's job looks exactly like a missing one
        raise ApiError(404, "job_not_found", "no such payment job")
    return job_view(app, row)


def queue_status(app: App) -> dict[str, Any]:
    stats = app.queue.stats()
    row = app.db.fetch_one(
        """SELECT extract(epoch FROM now() - min(created_at) FILTER (WHERE status IN ('queued','processing')))
                      AS oldest_age_s,
                  count(*) FILTER (WHERE finished_at > now() - interval '60 seconds') AS finished_last_minute,
                  count(*) FILTER (WHERE parked_at IS NOT NULL) AS awaiting_gateway,
                  (SELECT count(*) FROM gateway_refunds WHERE state = 'failed') AS refunds_failed
             FROM payment_jobs
            WHERE status IN ('queued','processing') OR finished_at > now() - interval '60 seconds'"""
    )
    assert row is not None
    per_s = row["finished_last_minute"] / 60.0
    backlog = stats.depth + stats.in_flight
    dead = app.db.fetch_all("SELECT * FROM pq_dead_lettered_jobs(%s)", (DLQ_JOBS_SHOWN,)) if stats.dlq_depth else []
    return {
        "depth": stats.depth,
        "in_flight": stats.in_flight,
        "dlq_depth": stats.dlq_depth,
        # Gateway jobs waiting for their gateway's verdict with no queue message (a Cashfree order still
        # ACTIVE), and gateway refunds that ended failed (money to return by hand at the gateway).
        "awaiting_gateway": row["awaiting_gateway"],
        "gateway_refunds_failed": row["refunds_failed"],
        # What the DLQ holds, as far as the processor saw it go there (the runbook's first step).
        "dlq_jobs": [
            {
                "job_id": None if r["job_id"] is None else str(r["job_id"]),
                "user_id": r["user_id"],
                "order_id": r["order_id"],
                "status": r["status"],
                "last_error": r["last_error"],
                "deliveries": r["deliveries"],
                "age_s": round(float(r["age_s"]), 1),
            }
            for r in dead
        ],
        "oldest_message_age_s": round(float(row["oldest_age_s"] or 0.0), 3),
        "throughput_per_minute": row["finished_last_minute"],
        "eta_to_drain_s": round(backlog / per_s, 1) if per_s > 0 else (0.0 if backlog == 0 else None),
    }

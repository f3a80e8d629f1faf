"""Reading a job and the queue (functions/status): one statement each."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from shared.domain import JobStatus
from shared.errors import job_not_found
from shared.ports import HasDb, HasQueue, HasSettings, HasThroughput

# Fraction of the ETA a client is told to wait before its next poll.
POLL_AT_ETA = 0.75
# The operator's queue view lists this many of the DLQ's jobs, newest first.
DLQ_JOBS_SHOWN = 20
# A status poll's one statement (bench/capacity.py measures its cost for docs/capacity.md).
# Its place is measured against the jobs known to have ended ahead of it (pq_job_ended_ahead): never too low.
JOB_QUERY = """SELECT id, user_id, order_id, status, reason, payment_id, queue_seq, method, gateway_ref,
                        dead_lettered_at, cancel_requested_at, pq_job_ended_ahead(ended_ahead) AS finished
                 FROM payment_jobs WHERE id = %s AND user_id = %s"""
# The "now serving" figure's one statement: what every position is measured against (pq_line_serving: the
# jobs that ended in their turn and the leavers the line's front has passed), and the jobs that ended in
# their turn in the last RATE_WINDOW_S (the partial index on finished_at): the rate the line moves at, which
# a bulk end of a sold-out product's line does not make. Nothing of any one shopper's: one answer for all.
NOW_SERVING_QUERY = """SELECT pq_line_serving() AS serving, now() AS as_of,
                              (SELECT count(*) FROM payment_jobs
                                WHERE finished_at > now() - make_interval(secs => %s) AND NOT left_line) AS recent"""
# Long enough to smooth a batch's commits, short enough that a stalled line shows within seconds.
RATE_WINDOW_S = 10
# Refunds on their way back or owed, for the operator: partial indexes keep this off the books' history.
REFUNDS_OPEN_QUERY = """
    SELECT count(*) FILTER (WHERE owed_at IS NULL) AS refunding,
           coalesce(sum(amount_paise) FILTER (WHERE owed_at IS NULL), 0)::bigint AS refunding_paise,
           extract(epoch FROM now() - min(created_at) FILTER (WHERE owed_at IS NULL)) AS refunding_age_s,
           count(*) FILTER (WHERE owed_at IS NOT NULL) AS owed,
           coalesce(sum(amount_paise) FILTER (WHERE owed_at IS NOT NULL), 0)::bigint AS owed_paise,
           extract(epoch FROM now() - min(owed_at)) AS owed_age_s
      FROM gateway_refunds
     WHERE state IN ('requested', 'pending') OR retry_at IS NOT NULL OR owed_at IS NOT NULL"""
# The owed refunds the operator's view lists, oldest first.
OWED_REFUNDS_SHOWN = 20
# Refunds made at the gateway for orders we had fulfilled (the merchant's, e.g. from its dashboard), newest
# first: the order stays paid, so only the operator can tell the shop (migration 0018).
AFTER_FULFILMENT_QUERY = """
    SELECT id, job_id, order_id, method, amount_paise, state, gateway_status,
           extract(epoch FROM now() - after_applied_at) AS age_s,
           count(*) OVER () AS total, sum(amount_paise) OVER ()::bigint AS total_paise
      FROM gateway_refunds
     WHERE after_applied_at > now() - make_interval(days => %s) AND state <> 'failed'
     ORDER BY after_applied_at DESC
     LIMIT %s"""
AFTER_FULFILMENT_DAYS = 30


class JobViewDeps(HasDb, HasSettings, HasThroughput, Protocol):
    """What a job's view uses: the books, the poll settings, and the line's measured rate."""


class QueueStatusDeps(HasDb, HasQueue, Protocol):
    """What the operator's queue view uses: the queue's own counts, and the books."""


def job_view(deps: JobViewDeps, row: dict[str, Any]) -> dict[str, Any]:
    """The JSON a client sees for a job: status, and while queued its position and advice."""
    job_id = str(row["id"])
    status = row["status"]
    view: dict[str, Any] = {
        "job_id": job_id,
        "status": status,
        "order_id": row["order_id"],
        "status_url": f"/v1/payments/{job_id}",
    }
    if status in (JobStatus.QUEUED, JobStatus.PROCESSING) and row.get("cancel_requested_at"):
        view["cancel_requested"] = True  # its shopper left the line: its turn returns the money
    if status in (JobStatus.QUEUED, JobStatus.PROCESSING) and row.get("dead_lettered_at"):
        # Its message is in the DLQ: no place in line until an operator redrives it. A gateway job says where
        # its money is (captured and held, on its way back, owed).
        view["dead_lettered"] = True
        if row.get("gateway_ref"):
            money = deps.db.fetch_one(
                """SELECT captured_paise, applied_paise, refunded_paise, refunding_paise, owed_paise
                     FROM pq_gateway_books() WHERE method = %s AND gateway_ref = %s""",
                (row["method"], row["gateway_ref"]),
            )
            if money is not None:
                view["money"] = money
    elif status in (JobStatus.QUEUED, JobStatus.PROCESSING):
        deps.throughput.observe(row["finished"])
        # Never increases: queue_seq is fixed and the counter only grows. Measured against the jobs known to
        # have ended ahead of it (pq_job_ended_ahead), it is never too low: a leaver behind this job moves it up
        # only in the shared figure, once the line's front passes the leaver (pq_line_serving).
        position = max(1, row["queue_seq"] - row["finished"])
        # No measured rate (just started, or stalled): no ETA, rather than a guess.
        per_s = deps.throughput.rate()
        eta_s = position / (per_s or deps.settings.assumed_payments_per_s)
        # Come back when the job is about due: at 5,000 waiting shoppers every extra poll is load
        # on the API and the database that the payments themselves need.
        poll_ms = int(min(deps.settings.poll_max_ms, max(deps.settings.poll_min_ms, eta_s * 1000 * POLL_AT_ETA)))
        eta = round(eta_s, 1) if per_s else None
        # queue_number against the shared figure (now_serving_url) gives its position with no read of this
        # job (as close, or closer: the figure counts the leavers passed): a waiting client asks about its own
        # job only when its number comes up.
        view |= {
            "position": position,
            "eta_seconds": eta,
            "poll_after_ms": poll_ms,
            "queue_number": row["queue_seq"],
            # The counter this position was measured against: a figure read later may come from a cache
            # older than this answer, so a client measures against the largest serving it has seen.
            "serving": row["finished"],
            "now_serving_url": deps.settings.now_serving_url,
        }
    elif status == JobStatus.FAILED:
        view["reason"] = row["reason"]
        if row.get("gateway_ref"):  # money the gateway took comes back: say how far it has got
            refund = deps.db.fetch_one("SELECT * FROM pq_refund_status(%s, %s)", (row["method"], row["gateway_ref"]))
            if refund is not None and refund["status"] is not None:
                view["refund"] = {"status": refund["status"], "amount_paise": refund["amount_paise"]}
    elif status == JobStatus.SUCCEEDED:
        view["payment_id"] = row["payment_id"]
    return view


def get_job(deps: JobViewDeps, user_id: str, job_id: str) -> dict[str, Any]:
    try:
        job_uuid = uuid.UUID(job_id)
    except ValueError:
        raise job_not_found() from None
    # A read: sent again on a fresh connection if the one it went out on had been dropped while idle.
    row = deps.db.fetch_one(JOB_QUERY, (job_uuid, user_id), idempotent=True)
    if row is None:  # someone else's job looks exactly like a missing one
        raise job_not_found()
    return job_view(deps, row)


def now_serving(deps: HasDb) -> dict[str, Any]:
    """How far the line has moved and how fast, the same for everyone: a waiting shopper's position is
    their queue_number less serving (never rising: serving only grows), their wait position / per_s."""
    row = deps.db.fetch_one(NOW_SERVING_QUERY, (RATE_WINDOW_S,))
    assert row is not None
    # None while nothing ended in the window (just started, or stalled): no wait is promised then.
    per_s = round(row["recent"] / RATE_WINDOW_S, 1) if row["recent"] else None
    return {"serving": row["serving"], "per_s": per_s, "as_of": row["as_of"].isoformat()}


def queue_status(deps: QueueStatusDeps) -> dict[str, Any]:
    stats = deps.queue.stats()
    row = deps.db.fetch_one(
        """SELECT extract(epoch FROM now() - min(created_at) FILTER (WHERE status IN ('queued','processing')))
                      AS oldest_age_s,
                  count(*) FILTER (WHERE finished_at > now() - interval '60 seconds') AS finished_last_minute,
                  count(*) FILTER (WHERE parked_at IS NOT NULL) AS awaiting_gateway
             FROM payment_jobs
            WHERE status IN ('queued','processing') OR finished_at > now() - interval '60 seconds'"""
    )
    assert row is not None
    per_s = row["finished_last_minute"] / 60.0
    backlog = stats.depth + stats.in_flight
    dead = deps.db.fetch_all("SELECT * FROM pq_dead_lettered_jobs(%s)", (DLQ_JOBS_SHOWN,)) if stats.dlq_depth else []
    refunds = deps.db.fetch_one(REFUNDS_OPEN_QUERY)
    assert refunds is not None
    owed = (
        deps.db.fetch_all(
            """SELECT id, job_id, order_id, method, amount_paise, attempt, last_error, gateway_status,
                      extract(epoch FROM now() - owed_at) AS age_s
                 FROM gateway_refunds WHERE owed_at IS NOT NULL ORDER BY owed_at LIMIT %s""",
            (OWED_REFUNDS_SHOWN,),
        )
        if refunds["owed"]
        else []
    )
    after = deps.db.fetch_all(AFTER_FULFILMENT_QUERY, (AFTER_FULFILMENT_DAYS, OWED_REFUNDS_SHOWN))
    return {
        "depth": stats.depth,
        "in_flight": stats.in_flight,
        "dlq_depth": stats.dlq_depth,
        # Gateway jobs waiting for their gateway's verdict with no queue message (a Cashfree order still
        # ACTIVE); refunds on their way back (pending at the gateway, or failed and due to be sent again)
        # and refunds owed (attempts spent: an operator retries them, POST /v1/refunds/{id}/retry).
        "awaiting_gateway": row["awaiting_gateway"],
        "gateway_refunds_failed": refunds["owed"],
        "refunds": {
            "refunding": refunds["refunding"],
            "refunding_paise": refunds["refunding_paise"],
            "oldest_refunding_age_s": _age(refunds["refunding_age_s"]),
            "owed": refunds["owed"],
            "owed_paise": refunds["owed_paise"],
            "oldest_owed_age_s": _age(refunds["owed_age_s"]),
            "owed_refunds": [
                {
                    "refund_id": r["id"],
                    "job_id": str(r["job_id"]),
                    "order_id": r["order_id"],
                    "gateway": r["method"],
                    "amount_paise": r["amount_paise"],
                    "attempts": r["attempt"],
                    "last_error": r["last_error"] or r["gateway_status"],
                    "age_s": _age(r["age_s"]),
                }
                for r in owed
            ],
            # Not owed by us: money the merchant gave back at the gateway after we fulfilled its order.
            "after_fulfilment": int(after[0]["total"]) if after else 0,
            "after_fulfilment_paise": int(after[0]["total_paise"]) if after else 0,
            "refunds_after_fulfilment": [
                {
                    "refund_id": r["id"],
                    "job_id": str(r["job_id"]),
                    "order_id": r["order_id"],
                    "gateway": r["method"],
                    "amount_paise": r["amount_paise"],
                    "state": r["state"],
                    "age_s": _age(r["age_s"]),
                }
                for r in after
            ],
        },
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


def _age(seconds: Any) -> float | None:
    return None if seconds is None else round(float(seconds), 1)

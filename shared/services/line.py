"""Leaving the line (shared/sql/line.sql): a shopper who cancels, and the shoppers of a sold-out product."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any, Protocol

from shared.domain import build_event
from shared.errors import Conflict, job_not_found
from shared.outcomes import CancelOutcome
from shared.ports import HasBus
from shared.services.outbox import PublishDeps, publish_events
from shared.services.reads import JobViewDeps, job_view

# Jobs of a sold-out product ended per statement. A statement's time follows the jobs it ends (line.sql), about
# half a millisecond of server CPU each (docs/capacity.md), so a batch fits the functions' 5 s statement
# timeout (migration 0005) many times over even on a busy database: a statement cut off ends none, and every
# later one would be cut off alike. One statement ends a 5,000-shopper sale's line (700 held its hot product);
# a longer line is ended by the next processor batches that meet its buyers, and by the sweeper.
SOLD_OUT_BATCH = 1_000


class LineDeps(JobViewDeps, HasBus, Protocol):
    """What leaving the line uses: the books, the bus for the job's event, and what a job's view needs."""


def cancel_job(deps: LineDeps, user_id: str, job_id: str) -> dict[str, Any]:
    """End a queued job of the caller's as cancelled (idempotent): the job as it now stands. A gateway job
    is asked to leave instead (its view says cancel_requested): its turn returns the money and ends it."""
    try:
        job_uuid = uuid.UUID(job_id)
    except ValueError:
        raise job_not_found() from None
    row = deps.db.fetch_one("SELECT * FROM pq_leave_line(%s, %s, true)", (user_id, job_uuid))
    assert row is not None
    outcome = CancelOutcome(row["outcome"])
    if outcome is CancelOutcome.JOB_NOT_FOUND:  # someone else's job looks exactly like a missing one
        raise job_not_found()
    if outcome is CancelOutcome.JOB_TAKEN:
        raise Conflict("job_processing", "a processor has this job already", job_status=row["status"])
    if outcome is CancelOutcome.JOB_FINISHED:
        raise Conflict(
            "job_finished", f"this job has {row['status']} already", job_status=row["status"], reason=row["reason"]
        )
    if outcome is CancelOutcome.PAID_AT_GATEWAY:
        raise Conflict(
            "paid_at_gateway",
            "this job carries a payment made at the gateway: it is applied, or refunded, in its turn",
            job_status=row["status"],
        )
    if outcome is CancelOutcome.CANCELLED:
        publish_events(deps, [build_event(row["event"])])  # if the bus is down, the sweeper publishes it
    return job_view(deps, row | {"id": job_uuid})  # as its reads show it (pq_leave_line returns their columns)


def end_sold_out_jobs(deps: PublishDeps, products: Collection[int] | None) -> int:
    """End the queued jobs whose order holds a sold-out product (products None: any) and publish their
    events; the number ended. Off the payment path: after the batch that sold the last unit commits."""
    rows = deps.db.fetch_all(
        "SELECT job_id, event FROM pq_end_sold_out_jobs(%s::bigint[], %s)",
        (None if products is None else sorted(products), SOLD_OUT_BATCH),
    )
    publish_events(deps, [build_event(r["event"]) for r in rows])
    return len(rows)

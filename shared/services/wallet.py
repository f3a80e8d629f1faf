"""The wallet path: the whole payment as one transaction in one round trip (pq_process_payment)."""

from __future__ import annotations

import uuid

from shared.domain import PaymentOutcome, PoisonMessageError, build_event
from shared.outcomes import WalletOutcome
from shared.ports import HasDb


def process_wallet_job(deps: HasDb, job_id: str) -> PaymentOutcome:
    # Idempotent, so sent again on a fresh connection if the one it went out on had been dropped: the
    # function locks the job and pays it only while it is queued; a second call for a job the first one
    # finished answers already_succeeded / already_failed with the same event, and charges nothing.
    row = deps.db.fetch_one("SELECT * FROM pq_process_payment(%s)", (uuid.UUID(job_id),), idempotent=True)
    assert row is not None
    outcome = WalletOutcome(row["outcome"])
    if outcome in (WalletOutcome.JOB_NOT_FOUND, WalletOutcome.NOT_A_WALLET_JOB):
        raise PoisonMessageError(f"job {job_id}: {outcome}")
    return PaymentOutcome(
        job_id=job_id,
        outcome=outcome,
        reason=row["reason"],
        payment_id=row["payment_id"],
        event=build_event(row["event"]) if row["event"] else None,
        sold_out=tuple(row["sold_out"] or ()),
    )

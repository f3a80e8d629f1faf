"""What each money-moving SQL function can answer: one enum per PostgreSQL outcome type.

The types are defined in shared/sql/outcomes.sql; tests/integration/test_sql_layout.py fails if a
function can return an outcome its enum here lacks (or the other way round).
"""

from __future__ import annotations

from enum import StrEnum


class EnqueueOutcome(StrEnum):
    """pq_enqueue_job."""

    CREATED = "created"
    REPLAYED = "replayed"
    KEY_REUSED = "key_reused"
    ORDER_NOT_FOUND = "order_not_found"
    ORDER_NOT_PAYABLE = "order_not_payable"
    PAYMENT_IN_PROGRESS = "payment_in_progress"
    GATEWAY_REF_IN_USE = "gateway_ref_in_use"


class WalletOutcome(StrEnum):
    """pq_process_payment."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ALREADY_SUCCEEDED = "already_succeeded"
    ALREADY_FAILED = "already_failed"
    JOB_NOT_FOUND = "job_not_found"
    NOT_A_WALLET_JOB = "not_a_wallet_job"


class GatewayBeginOutcome(StrEnum):
    """pq_gateway_begin."""

    PROCEED = "proceed"
    ALREADY_SUCCEEDED = "already_succeeded"
    ALREADY_FAILED = "already_failed"
    JOB_NOT_FOUND = "job_not_found"
    NOT_A_GATEWAY_JOB = "not_a_gateway_job"


class GatewayEndOutcome(StrEnum):
    """pq_gateway_fail, pq_complete_gateway_payment, pq_gateway_refunded (and pq_gateway_lock, which they share)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ALREADY_SUCCEEDED = "already_succeeded"
    ALREADY_FAILED = "already_failed"
    REFUND_REQUIRED = "refund_required"


# The PostgreSQL type behind each enum (shared/sql/outcomes.sql).
SQL_TYPES: dict[str, type[StrEnum]] = {
    "pq_enqueue_outcome": EnqueueOutcome,
    "pq_wallet_outcome": WalletOutcome,
    "pq_gateway_begin_outcome": GatewayBeginOutcome,
    "pq_gateway_end_outcome": GatewayEndOutcome,
}

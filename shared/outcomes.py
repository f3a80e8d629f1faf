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
    CHECKOUT_REQUIRED = "checkout_required"  # pq_enqueue_gateway_job only
    GATEWAY_ORDER_MISMATCH = "gateway_order_mismatch"  # pq_enqueue_gateway_job only
    SOLD_OUT = "sold_out"  # a product of the order has no unit left: no job, nothing recorded


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
    """pq_gateway_fail, pq_complete_gateway_payment, pq_gateway_refunded, pq_gateway_park."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ALREADY_SUCCEEDED = "already_succeeded"
    ALREADY_FAILED = "already_failed"
    REFUND_REQUIRED = "refund_required"
    PARKED = "parked"  # pq_gateway_park: waiting for the gateway's verdict, no queue message


class CheckoutOutcome(StrEnum):
    """pq_checkout_for_order (pq_checkout_route, pq_checkout_open: the previous release's calls),
    pq_checkout_created."""

    EXISTING = "existing"
    PENDING = "pending"
    CREATED = "created"
    ORDER_NOT_FOUND = "order_not_found"
    ORDER_NOT_PAYABLE = "order_not_payable"
    GATEWAY_ORDER_MISMATCH = "gateway_order_mismatch"
    CLAIMED = "claimed"  # pq_checkout_route: another request is making the gateway create call
    UNAVAILABLE = "unavailable"  # pq_checkout_route: no gateway asked for can be called now
    SOLD_OUT = "sold_out"  # pq_checkout_for_order: a product of the order has no unit left; no checkout


class WebhookOutcome(StrEnum):
    """pq_webhook_record, pq_checkout_settle."""

    DUPLICATE = "duplicate"
    UNKNOWN_CHECKOUT = "unknown_checkout"
    JOB_CREATED = "job_created"
    JOB_WOKEN = "job_woken"
    JOB_LIVE = "job_live"
    ALREADY_HANDLED = "already_handled"
    REFUND_UPDATED = "refund_updated"
    REFUND_FAILED = "refund_failed"
    REFUND_AFTER_FULFILMENT = "refund_after_fulfilment"  # the merchant's refund of a fulfilled order
    REFUND_UNMATCHED = "refund_unmatched"  # a refund of a payment no job holds yet, kept for the job to come
    IGNORED = "ignored"
    UNREADABLE = "unreadable"
    STALE = "stale"
    WAKE_DEFERRED = "wake_deferred"


class CancelOutcome(StrEnum):
    """pq_leave_line (and the previous release's pq_cancel_job): a shopper leaving the line (DELETE
    /v1/payments/{job_id})."""

    CANCELLED = "cancelled"
    ALREADY_CANCELLED = "already_cancelled"
    JOB_NOT_FOUND = "job_not_found"
    JOB_TAKEN = "job_taken"  # a processor has it (processing): too late to leave
    JOB_FINISHED = "job_finished"  # it ended otherwise (succeeded, or failed for another reason)
    CANCEL_REQUESTED = "cancel_requested"  # a gateway job: its delivery returns the money and fails it cancelled
    PAID_AT_GATEWAY = "paid_at_gateway"  # a gateway job: its money is at the gateway, the job applies or refunds it


# The PostgreSQL type behind each enum (shared/sql/outcomes.sql).
class RefundRetryOutcome(StrEnum):
    """pq_refund_operator_retry: an operator's retry of an owed refund."""

    SCHEDULED = "scheduled"
    NOT_OWED = "not_owed"
    NOT_FOUND = "not_found"


class MerchantOrderOutcome(StrEnum):
    """pq_merchant_create_order: an order a merchant client creates for a shopper."""

    CREATED = "created"
    REPLAYED = "replayed"
    KEY_REUSED = "key_reused"
    PRODUCT_NOT_FOUND = "product_not_found"
    OUT_OF_STOCK = "out_of_stock"
    TOTAL_TOO_LARGE = "total_too_large"


class WalletAdjustOutcome(StrEnum):
    """pq_merchant_adjust_wallet: a top-up or adjustment of a shopper's wallet."""

    ADJUSTED = "adjusted"
    REPLAYED = "replayed"
    KEY_REUSED = "key_reused"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    CURRENCY_MISMATCH = "currency_mismatch"
    BALANCE_TOO_LARGE = "balance_too_large"


class DlqDropOutcome(StrEnum):
    """pq_drop_dead_letter: an operator drops a job's message from the DLQ (POST /v1/dlq/jobs/{job_id}/drop)."""

    DROPPED = "dropped"
    ALREADY_DROPPED = "already_dropped"  # an earlier call did: the same record, nothing changed
    JOB_NOT_FOUND = "job_not_found"  # no such job, and no message of it in the DLQ
    NOT_DEAD_LETTERED = "not_dead_lettered"  # waiting in line, taken by a processor, or finished
    # A gateway job whose money at the gateway our books do not show settled (captured and neither applied
    # nor on its way back, an authorisation nobody released, or its payment never read): a redrive settles it.
    GATEWAY_MONEY_UNSETTLED = "gateway_money_unsettled"


SQL_TYPES: dict[str, type[StrEnum]] = {
    "pq_enqueue_outcome": EnqueueOutcome,
    "pq_wallet_outcome": WalletOutcome,
    "pq_gateway_begin_outcome": GatewayBeginOutcome,
    "pq_gateway_end_outcome": GatewayEndOutcome,
    "pq_checkout_outcome": CheckoutOutcome,
    "pq_webhook_outcome": WebhookOutcome,
    "pq_refund_retry_outcome": RefundRetryOutcome,
    "pq_merchant_order_outcome": MerchantOrderOutcome,
    "pq_wallet_adjust_outcome": WalletAdjustOutcome,
    "pq_cancel_outcome": CancelOutcome,
    "pq_dlq_drop_outcome": DlqDropOutcome,
}

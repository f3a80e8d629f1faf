"""One queue message (functions/process_payment): parsed once, dispatched to its payment path."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from shared.bootstrap import App
from shared.domain import GATEWAY_METHODS, PaymentOutcome, PoisonMessageError, RetryLater
from shared.services.gateway import process_gateway_job
from shared.services.wallet import process_wallet_job


@dataclass(frozen=True)
class JobMessage:
    job_id: str
    method: str  # as the message says; each path checks it against the stored job


def parse_job_message(body: str) -> JobMessage:
    """The job a queue message names (shared/services/intake.job_message wrote it)."""
    try:
        data = json.loads(body)
        job_id = str(uuid.UUID(str(data["job_id"])))
        method = str(data.get("method", "wallet"))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PoisonMessageError(f"malformed message body: {type(exc).__name__}") from None
    return JobMessage(job_id=job_id, method=method)


def process_message(
    app: App, body: str, *, receipt_handle: str, receive_count: int, remaining_ms: int | None = None
) -> PaymentOutcome:
    """Pay the job a message names.

    Raises PoisonMessageError for a message that can never succeed, RetryLater after handing the
    message back to the queue (a gateway's backoff, or too little time left in this invocation for
    the record: remaining_ms), TransientError for the rest worth a retry.
    """
    message = parse_job_message(body)
    gateway = message.method in GATEWAY_METHODS
    budget_ms = app.settings.gateway_record_budget_ms if gateway else app.settings.wallet_record_budget_ms
    if remaining_ms is not None and remaining_ms < budget_ms:
        # Visible again at once, for the next invocation: no delivery is spent waiting out a timeout.
        app.queue.change_visibility(receipt_handle, 0)
        raise RetryLater(f"{remaining_ms} ms left in the invocation, {budget_ms} ms needed", 0)
    if gateway:
        return process_gateway_job(
            app, message.job_id, message.method, receipt_handle=receipt_handle, receive_count=receive_count
        )
    return process_wallet_job(app, message.job_id)

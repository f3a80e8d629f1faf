"""One queue message (functions/process_payment): parsed once, dispatched to its payment path."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from shared.domain import PaymentOutcome, PoisonMessageError, RetryLater
from shared.gateways import GATEWAY_NAMES
from shared.observability import logger
from shared.ports import HasDb
from shared.services.gateway import GatewayJobDeps, process_gateway_job
from shared.services.wallet import process_wallet_job


class ProcessDeps(GatewayJobDeps, Protocol):
    """What paying a message's job uses: the gateway path's (the books, the queue, the gateways, the
    settings), of which the wallet path needs only the books."""


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
    deps: ProcessDeps, body: str, *, receipt_handle: str, receive_count: int, remaining_ms: int | None = None
) -> PaymentOutcome:
    """Pay the job a message names.

    Raises PoisonMessageError for a message that can never succeed, RetryLater after handing the
    message back to the queue (a gateway's backoff, or too little time left in this invocation for
    the record: remaining_ms), TransientError for the rest worth a retry.
    """
    message = parse_job_message(body)
    # A gateway known to this release (enabled here or not: its path says which) or registered at bootstrap.
    gateway = message.method in GATEWAY_NAMES or message.method in deps.gateways
    budget_ms = deps.settings.gateway_record_budget_ms if gateway else deps.settings.wallet_record_budget_ms
    if remaining_ms is not None and remaining_ms < budget_ms:
        # Visible again at once, for the next invocation: no delivery is spent waiting out a timeout.
        deps.queue.change_visibility(receipt_handle, 0)
        raise RetryLater(f"{remaining_ms} ms left in the invocation, {budget_ms} ms needed", 0)
    if gateway:
        return process_gateway_job(
            deps, message.job_id, message.method, receipt_handle=receipt_handle, receive_count=receive_count
        )
    return process_wallet_job(deps, message.job_id)


def message_fields(body: str) -> dict[str, Any]:
    """What a message says of its job, for logs, whatever state the body is in (a poison one may name none)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    fields = {name: data.get(name) for name in ("job_id", "user_id", "order_id", "method")}
    return {name: value for name, value in fields.items() if isinstance(value, str | int)}


def record_failure(
    deps: HasDb, body: str, *, message_id: str, receive_count: int, error: BaseException | str, dead_lettered: bool
) -> None:
    """A failed delivery, explained: logged at WARNING with the job and the error, and recorded for the
    operator's view (shared/sql/failures.sql). dead_lettered: this delivery sends the message to the DLQ."""
    fields = message_fields(body)
    error_class = error if isinstance(error, str) else type(error).__name__
    detail = error_class if isinstance(error, str) else f"{error_class}: {error}"[:500]
    logger.warning(
        "message moved to the DLQ" if dead_lettered else "delivery failed; the queue will retry it",
        **fields,
        message_id=message_id,
        receive_count=receive_count,
        error=error_class,
        detail=detail,
    )
    try:
        job_id = uuid.UUID(str(fields["job_id"])) if "job_id" in fields else None
    except ValueError:
        job_id = None
    try:
        deps.db.execute(
            "SELECT pq_record_delivery_failure(%s, %s, %s, %s, %s, %s)",
            (job_id, message_id, receive_count, error_class, detail, dead_lettered),
        )
    except Exception:  # the log line above already says it all; the queue keeps the message either way
        logger.exception("could not record the failed delivery", message_id=message_id)

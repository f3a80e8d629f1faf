"""Service functions: what each handler does, written against the ports, never against boto3."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.bootstrap import App
from shared.domain import (
    GATEWAY_METHODS,
    GATEWAY_REF_FIELD,
    ApiError,
    JobStatus,
    PaymentOutcome,
    PaymentRequest,
    PoisonMessageError,
    build_event,
)
from shared.observability import logger
from shared.ports import QueueMessage

IDEMPOTENCY_KEY_MAX = 255
# Fraction of the ETA a client is told to wait before its next poll.
POLL_AT_ETA = 0.75


# --- accepting a payment (functions/enqueue) -------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    body: dict[str, Any]
    replayed: bool


def parse_payment_request(raw_body: str | None, enabled_methods: Collection[str] = ("wallet",)) -> PaymentRequest:
    if not raw_body:
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    try:
        data = json.loads(raw_body)
    except (json.JSONDecodeError, RecursionError):
        raise ApiError(400, "invalid_json", "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    method = data.get("method")
    if method in GATEWAY_METHODS:
        if method not in enabled_methods:
            raise ApiError(422, "method_not_supported", f"payment method {method!r} is not enabled", field="method")
        ref_field = GATEWAY_REF_FIELD[method]
        if data.get(ref_field) is None:
            raise ApiError(422, "validation_error", f"{ref_field} is required with method {method}", field=ref_field)
    try:
        return PaymentRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(422, "validation_error", f"{where}: {first['msg']}", field=where) from None


def validate_idempotency_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise ApiError(400, "idempotency_key_required", "the Idempotency-Key header is required")
    if len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise ApiError(
            400, "idempotency_key_invalid", f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} printable characters"
        )
    return key


def job_message(job_id: str, user_id: str, order_id: int, method: str) -> QueueMessage:
    """The queue message for a job: grouped by user (per-user order), deduplicated by job id."""
    return QueueMessage(
        job_id=job_id,
        group_id=user_id,
        body={"job_id": job_id, "user_id": user_id, "order_id": order_id, "method": method},
    )


def accept_payment(app: App, user_id: str, idempotency_key: str, request: PaymentRequest) -> Accepted:
    """Record the job (one round trip), send it to the queue, mark it sent.

    If the send fails or this process dies before marking, the job stays unsent and the
    sweeper sends it again: an accepted job is never lost.
    """
    row = app.db.fetch_one(
        "SELECT * FROM pq_enqueue_job(%s, %s, %s, %s, %s, %s)",
        (user_id, idempotency_key, request.fingerprint(), request.order_id, request.method, request.gateway_ref),
    )
    assert row is not None
    outcome = row["outcome"]
    if outcome == "order_not_found":
        raise ApiError(404, "order_not_found", "no such order for this user")
    if outcome == "order_not_payable":
        raise ApiError(409, "order_not_payable", f"order is {row['reason']}", order_status=row["reason"])
    if outcome == "key_reused":
        raise ApiError(409, "idempotency_key_reused", "this Idempotency-Key was used with a different request body")
    if outcome == "gateway_ref_in_use":
        raise ApiError(
            409, "gateway_payment_in_use", "this gateway payment already pays another job", job_id=str(row["job_id"])
        )
    if outcome == "payment_in_progress":
        raise ApiError(
            409, "payment_in_progress", "a payment for this order is already queued", job_id=str(row["job_id"])
        )

    job_id = str(row["job_id"])
    if outcome == "created":
        message = job_message(job_id, user_id, request.order_id, request.method)
        try:
            if app.queue.send([message]):
                # Relaxed: if this mark is lost in a crash, the sweeper sends the job again and the
                # duplicate is dropped (SQS deduplication) or ignored (the job is already done).
                app.db.execute_relaxed("UPDATE payment_jobs SET sent_at = now() WHERE id = %s", (job_id,))
        except Exception:  # the job is recorded; the sweeper will deliver it
            logger.exception("queue send failed; left for the sweeper", job_id=job_id, user_id=user_id)
    body = job_view(app, row | {"id": job_id, "user_id": user_id, "order_id": request.order_id})
    return Accepted(body=body, replayed=outcome == "replayed")


# --- reading a job (functions/status) ---------------------------------------------------------


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
        view["payment_id"] = row.get("payment_id")
    return view


def get_job(app: App, user_id: str, job_id: str) -> dict[str, Any]:
    try:
        job_uuid = uuid.UUID(job_id)
    except ValueError:
        raise ApiError(404, "job_not_found", "no such payment job") from None
    row = app.db.fetch_one(
        """SELECT id, user_id, order_id, status, reason, payment_id, queue_seq, pq_finished_count() AS finished
             FROM payment_jobs WHERE id = %s AND user_id = %s""",
        (job_uuid, user_id),
    )
    if row is None:  # someone else's job looks exactly like a missing one
        raise ApiError(404, "job_not_found", "no such payment job")
    return job_view(app, row)


def queue_status(app: App) -> dict[str, Any]:
    stats = app.queue.stats()
    row = app.db.fetch_one(
        """SELECT extract(epoch FROM now() - min(created_at) FILTER (WHERE status IN ('queued','processing')))
                      AS oldest_age_s,
                  count(*) FILTER (WHERE finished_at > now() - interval '60 seconds') AS finished_last_minute
             FROM payment_jobs
            WHERE status IN ('queued','processing') OR finished_at > now() - interval '60 seconds'"""
    )
    assert row is not None
    per_s = row["finished_last_minute"] / 60.0
    backlog = stats.depth + stats.in_flight
    return {
        "depth": stats.depth,
        "in_flight": stats.in_flight,
        "dlq_depth": stats.dlq_depth,
        "oldest_message_age_s": round(float(row["oldest_age_s"] or 0.0), 3),
        "throughput_per_minute": row["finished_last_minute"],
        "eta_to_drain_s": round(backlog / per_s, 1) if per_s > 0 else (0.0 if backlog == 0 else None),
    }


_WINDOWS_MIN = (1, 5, 60)


def metrics_summary(app: App) -> dict[str, Any]:
    row = app.db.fetch_one(
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
    assert row is not None
    windows: dict[str, Any] = {}
    for m in _WINDOWS_MIN:
        processed, succeeded = row[f"processed_{m}"], row[f"succeeded_{m}"]
        failed = processed - succeeded
        windows[f"{m}m"] = {
            "processed": processed,
            "succeeded": succeeded,
            "failed": failed,
            "success_rate": round(succeeded / processed, 4) if processed else None,
            "error_rate": round(failed / processed, 4) if processed else None,
            "avg_wait_s": None if row[f"avg_wait_{m}"] is None else round(float(row[f"avg_wait_{m}"]), 3),
            "p50_wait_s": None if row[f"p50_wait_{m}"] is None else round(float(row[f"p50_wait_{m}"]), 3),
            "p95_wait_s": None if row[f"p95_wait_{m}"] is None else round(float(row[f"p95_wait_{m}"]), 3),
        }
    return {"windows": windows}


def redrive_dlq(app: App) -> dict[str, Any]:
    """Operator action: send dead-lettered jobs back to the queue once their cause is fixed.

    Safe to repeat: a job that already reached a terminal state is acknowledged as is when
    its message comes round again.
    """
    result = app.queue.redrive()
    logger.info("dlq redrive", status=result.status, moved=result.moved, task_handle=result.task_handle)
    body: dict[str, Any] = {"status": result.status, "moved": result.moved}
    if result.task_handle:
        body["task_handle"] = result.task_handle
    return body


def db_health(app: App) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        row = app.db.fetch_one(
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


# --- processing (functions/process_payment) ---------------------------------------------------


def parse_job_message(body: str) -> str:
    try:
        data = json.loads(body)
        return str(uuid.UUID(str(data["job_id"])))
    except (ValueError, KeyError, TypeError) as exc:
        raise PoisonMessageError(f"malformed message body: {type(exc).__name__}") from None


def process_job(app: App, job_id: str) -> PaymentOutcome:
    """Run the whole payment as one transaction in one round trip (pq_process_payment)."""
    row = app.db.fetch_one("SELECT * FROM pq_process_payment(%s)", (uuid.UUID(job_id),))
    assert row is not None
    if row["outcome"] == "job_not_found":
        raise PoisonMessageError(f"job {job_id} does not exist")
    if row["outcome"] == "not_a_wallet_job":
        raise PoisonMessageError(f"job {job_id} is not a wallet payment")
    return PaymentOutcome(
        job_id=job_id,
        outcome=row["outcome"],
        reason=row["reason"],
        payment_id=row["payment_id"],
        event=build_event(row["event"]) if row["event"] else None,
    )


class OutboxRelay:
    """Publishes the events of committed payments after the batch, then marks them published.

    Whatever is not marked (bus down, process killed) the sweeper publishes later.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.pending: list[dict[str, Any]] = []

    def add(self, event: dict[str, Any] | None) -> None:
        if event is not None:
            self.pending.append(event)

    def flush(self) -> int:
        events, self.pending = self.pending, []
        return publish_events(self.app, events)


def publish_events(app: App, events: Sequence[dict[str, Any]]) -> int:
    if not events:
        return 0
    try:
        published = app.bus.publish(events)
    except Exception:
        logger.exception("event publish failed; left for the sweeper", events=len(events))
        return 0
    if published:
        # Relaxed: a mark lost in a crash means one more publication; consumers dedupe on the id.
        app.db.execute_relaxed("UPDATE outbox_events SET published_at = now() WHERE id = ANY(%s::uuid[])", (published,))
    return len(published)


# --- the sweeper (functions/sweeper) ----------------------------------------------------------


def sweep(app: App, limit: int = 500) -> dict[str, int]:
    """Send jobs whose queue send was never confirmed; publish events never published."""
    unsent = app.db.fetch_all(
        """SELECT id, user_id, order_id, method FROM payment_jobs
            WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => %s)
            ORDER BY created_at LIMIT %s""",
        (app.settings.sweep_after_s, limit),
    )
    resent = 0
    if unsent:
        messages = [job_message(str(r["id"]), r["user_id"], r["order_id"], r["method"]) for r in unsent]
        sent = app.queue.send(messages)
        if sent:
            app.db.execute_relaxed("UPDATE payment_jobs SET sent_at = now() WHERE id = ANY(%s::uuid[])", (sent,))
        resent = len(sent)
    rows = app.db.fetch_all(
        """SELECT id, event_type AS type, created_at AS occurred_at, payload AS data FROM outbox_events
            WHERE published_at IS NULL AND created_at < now() - make_interval(secs => %s)
            ORDER BY created_at LIMIT %s""",
        (app.settings.sweep_after_s, limit),
    )
    republished = publish_events(app, [build_event(r) for r in rows])
    if resent or republished:
        logger.info("sweep", jobs_resent=resent, events_republished=republished)
    return {"jobs_resent": resent, "events_republished": republished}

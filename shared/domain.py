"""The payment domain: the request, outcomes, reason codes, events and the errors the API returns."""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

MAX_ORDER_ID = 2**63 - 1
EVENT_SOURCE = "payment-queue"
EVENT_VERSION = "1"


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})


class FailureReason(StrEnum):
    """Why a job failed. Business failures: the message is consumed, not retried."""

    INSUFFICIENT_BALANCE = "insufficient_balance"
    OUT_OF_STOCK = "out_of_stock"
    ORDER_NOT_PAYABLE = "order_not_payable"
    INVALID_ORDER = "invalid_order"


class PaymentRequest(BaseModel):
    """Body of POST /v1/payments. Strict: a string where a number belongs is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: StrictInt = Field(gt=0, le=MAX_ORDER_ID)
    method: Literal["wallet"]

    def fingerprint(self) -> str:
        """SHA-256 of the canonical body: equal for equal requests, whatever the key order."""
        canonical = json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class ApiError(Exception):
    """An error the API reports as {"error": {"code", "message"}} with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class TransientError(Exception):
    """A failure worth retrying: the queue redelivers the message later."""


class PoisonMessageError(Exception):
    """A message that can never succeed; it fails every delivery until it reaches the DLQ."""


@dataclass(frozen=True)
class PaymentOutcome:
    job_id: str
    outcome: str  # succeeded | failed | already_succeeded | already_failed
    reason: str | None = None
    payment_id: int | None = None
    event: dict[str, Any] | None = field(default=None, compare=False)


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def build_event(outbox_row: dict[str, Any]) -> dict[str, Any]:
    """The versioned event consumers receive, from an outbox row (id, type, occurred_at, data)."""
    return {
        "version": EVENT_VERSION,
        "id": str(outbox_row["id"]),
        "type": outbox_row["type"],
        "source": EVENT_SOURCE,
        "occurred_at": _iso(outbox_row["occurred_at"]),
        "data": outbox_row["data"],
    }


class ThroughputEstimator:
    """Payments per second from samples of the finished-jobs counter the queries already read.

    Keeps status polls O(1): no query over the jobs table to estimate an ETA.
    """

    WINDOW_S = 60.0

    def __init__(self, fallback_per_s: float) -> None:
        self._fallback = fallback_per_s
        self._samples: deque[tuple[float, int]] = deque()

    def observe(self, finished: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._samples and now - self._samples[-1][0] < 0.5:
            return
        self._samples.append((now, finished))
        while self._samples and now - self._samples[0][0] > self.WINDOW_S:
            self._samples.popleft()

    def rate(self) -> float:
        if len(self._samples) >= 2:
            (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
            if t1 - t0 >= 1.0 and c1 > c0:
                return (c1 - c0) / (t1 - t0)
        return self._fallback

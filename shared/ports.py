"""The ports the services talk to. Adapters: shared/adapters (SQS, EventBridge, PGMQ)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class QueueMessage:
    job_id: str
    group_id: str  # the user: one user's jobs are applied in order
    body: dict[str, Any]


@dataclass(frozen=True)
class ReceivedMessage:
    """One delivery as the consumer holds it: enough to move the message elsewhere intact."""

    body: str  # as received, byte for byte
    group_id: str
    deduplication_id: str  # the job id; the message id where the queue did not say
    message_id: str
    receipt_handle: str  # this delivery's, to delete the message from the queue it came from
    receive_count: int


@dataclass(frozen=True)
class QueueStats:
    depth: int  # visible, waiting for a worker
    in_flight: int  # received by a worker, not yet deleted
    dlq_depth: int


@dataclass(frozen=True)
class RedriveResult:
    """What a DLQ redrive did: PGMQ moves at once ("completed"); SQS starts a move task ("started")
    or reports the one already running ("running"), whose progress it counts as it goes."""

    status: str  # completed | started | running
    moved: int | None  # messages moved so far; None when the queue does not say yet
    task_handle: str | None = None


class JobQueue(Protocol):
    def send(self, messages: Sequence[QueueMessage]) -> list[str]:
        """Send messages (deduplicated by job id); return the job ids the queue accepted."""
        ...

    def stats(self) -> QueueStats: ...

    def change_visibility(self, receipt_handle: str, delay_s: int) -> None:
        """Keep a received message hidden for delay_s more seconds (a retry later, without sleeping)."""
        ...

    def redrive(self) -> RedriveResult:
        """Move every dead-lettered message back to the queue, group and job id intact."""
        ...

    def dead_letter(self, message: ReceivedMessage, reason: str) -> None:
        """Move a message that can never succeed to the DLQ now, group and job id intact.

        The copy lands in the DLQ before the original leaves the queue: a crash between the two
        leaves a duplicate in the DLQ (a redriven one is acknowledged as a finished job), never a
        loss. Where the receipt handle is stale (received again since), the original stays in the
        queue and its next delivery moves it.
        """
        ...


@dataclass(frozen=True)
class GatewayPayment:
    """A payment as the gateway reports it, in our terms (integer paise)."""

    ref: str
    status: str  # created | authorized | captured | pending | failed | refunded
    amount_paise: int
    currency: str


@dataclass(frozen=True)
class GatewayRefund:
    refund_id: str
    amount_paise: int
    currency: str


class PaymentGateway(Protocol):
    """Razorpay or Cashfree. Raises GatewayRetryable (429, 5xx, timeouts) or GatewayRejected (4xx)."""

    name: str

    def fetch(self, ref: str) -> GatewayPayment: ...

    def capture(self, ref: str, amount_paise: int, currency: str) -> GatewayPayment:
        """Capture an authorized payment (Razorpay); never called for a payment fetched as captured."""
        ...

    def refund(self, ref: str, amount_paise: int, currency: str, refund_ref: str) -> GatewayRefund:
        """Refund in full; refund_ref is our idempotency reference, the same on every retry."""
        ...

    def find_refund(self, ref: str, refund_ref: str) -> GatewayRefund | None:
        """The refund sent earlier with refund_ref, if the gateway has it (settles a lost answer)."""
        ...


class EventBus(Protocol):
    def publish(self, events: Sequence[dict[str, Any]]) -> list[str]:
        """Publish versioned events; return the ids of those the bus accepted."""
        ...

"""The ports the services talk to. Adapters: shared/adapters (SQS, EventBridge, PGMQ), shared/db.py (the
database). The gateways' port, and what it speaks in besides the gateway entities below:
shared/gateways/port.py.

A service names what it uses as a Protocol of the Has* below (its db, its queue, the gateways...), never
the whole App: bootstrap's App has them all and is passed as is; a unit test passes a fake with just those."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the gateways' port speaks in this module's entities: named for the type checker only
    from shared.domain import ThroughputEstimator
    from shared.gateways.port import PaymentGateway
    from shared.settings import Settings


@dataclass(frozen=True)
class QueueMessage:
    job_id: str
    group_id: str  # the user: one user's jobs are applied in order
    body: dict[str, Any]
    # The queue's deduplication id: the job id, plus the times it was parked when it is sent again after
    # waiting for a gateway (SQS FIFO drops a second message with one id for 5 minutes).
    dedup_id: str | None = None


@dataclass(frozen=True)
class SendInTransaction:
    """A job's message as the intake statement sends it itself, in the transaction that records the
    job: for a queue that lives in that same database (PGMQ), so that enqueue is one round trip and
    the job cannot be recorded unsent. body and headers are JSON text."""

    queue: str
    body: str
    headers: str


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

    def in_transaction(self, message: QueueMessage) -> SendInTransaction | None:
        """How the intake statement sends the message itself, when the queue lives in the jobs'
        database; None for a queue elsewhere (SQS), which the intake sends to after commit."""
        ...

    def stats(self) -> QueueStats: ...

    def change_visibility(self, receipt_handle: str, delay_s: int) -> None:
        """Keep a received message hidden for delay_s more seconds (a retry later, without sleeping)."""
        ...

    def redrive(self) -> RedriveResult:
        """Move every dead-lettered message back to the queue, group and job id intact."""
        ...

    def hold_dead_letters(self, job_id: str) -> list[str]:
        """The DLQ's messages naming the job, kept from other readers until deleted or released: the
        handles to do either by. SQS receives them hidden for a while (a drop that dies leaves them to
        reappear); PGMQ needs no hold (nothing but a redrive reads its DLQ, and a message it moves
        first is a finished job's, acknowledged without work)."""
        ...

    def delete_dead_letters(self, handles: Sequence[str]) -> None:
        """Delete held DLQ messages for good (an operator dropped their job)."""
        ...

    def release_dead_letters(self, handles: Sequence[str]) -> None:
        """Give held DLQ messages back, as they were (the drop was refused)."""
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
    """A payment (Cashfree: one attempt at an order) as the gateway reports it, in our terms (paise).

    status is ours: created | authorized | captured | pending | failed | refunded; gateway_status is the
    gateway's own word (Razorpay "authorized", Cashfree "USER_DROPPED", ...), kept for the decisions
    that need it. order_id is the gateway order the payment belongs to (Razorpay: None for a payment
    made without an order, which Razorpay will not capture).
    """

    ref: str
    status: str
    amount_paise: int
    currency: str
    order_id: str | None = None
    amount_refunded_paise: int = 0
    gateway_status: str | None = None
    captured: bool = False  # the money was ever captured (Razorpay "captured"; a Cashfree SUCCESS attempt)
    completed_at: datetime | None = None  # when the gateway says it ended (Cashfree payment_completion_time)


class RefundState(StrEnum):
    """A refund's progress in our terms: Razorpay pending/processed/failed, Cashfree PENDING and ONHOLD
    (not final) / SUCCESS / CANCELLED."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class GatewayRefund:
    refund_id: str  # the gateway's id (Razorpay rfnd_..., Cashfree cf_refund_id)
    amount_paise: int
    currency: str
    state: RefundState = RefundState.PENDING
    gateway_status: str | None = None
    merchant_ref: str | None = None  # ours: Cashfree's refund_id, Razorpay's receipt


@dataclass(frozen=True)
class GatewayOrder:
    """A gateway order, in our terms. Razorpay: id order_..., status created | attempted | paid, receipt
    is ours. Cashfree: order_id is ours, status ACTIVE | PAID | EXPIRED | TERMINATED |
    TERMINATION_REQUESTED, payment_session_id opens its checkout."""

    order_id: str
    status: str
    amount_paise: int
    currency: str
    receipt: str | None = None
    notes: dict[str, str] = field(default_factory=dict)  # Razorpay notes / Cashfree order_tags
    payment_session_id: str | None = None
    customer_id: str | None = None
    attempts: int = 0


class EventBus(Protocol):
    def publish(self, events: Sequence[dict[str, Any]]) -> list[str]:
        """Publish versioned events; return the ids of those the bus accepted."""
        ...


SqlParams = Sequence[Any] | dict[str, Any]


class SqlDatabase(Protocol):
    """One statement per call, each its own transaction (shared/db.py). idempotent: may be sent again on a
    fresh connection if the one it went out on had been dropped."""

    def fetch_one(self, sql: str, params: SqlParams = (), *, idempotent: bool = False) -> dict[str, Any] | None: ...

    def fetch_all(self, sql: str, params: SqlParams = (), *, idempotent: bool = False) -> list[dict[str, Any]]: ...

    def execute(self, sql: str, params: SqlParams = (), *, idempotent: bool = False) -> int: ...


# What a service may use, one each: read-only, so that the App (and any fake) provides them as attributes.


class HasDb(Protocol):
    @property
    def db(self) -> SqlDatabase: ...


class HasQueue(Protocol):
    @property
    def queue(self) -> JobQueue: ...


class HasBus(Protocol):
    @property
    def bus(self) -> EventBus: ...


class HasGateways(Protocol):
    @property
    def gateways(self) -> Mapping[str, PaymentGateway]:
        """The enabled gateways by name (shared/gateways/registry.py)."""
        ...


class HasSettings(Protocol):
    @property
    def settings(self) -> Settings: ...


class HasThroughput(Protocol):
    @property
    def throughput(self) -> ThroughputEstimator: ...

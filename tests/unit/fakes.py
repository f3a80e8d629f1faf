"""In-memory fakes of our own ports, for the services' unit tests: what a service asks of the database, the
queue and a gateway, and what it does with the answers, with no socket, no SQL and no simulator. The SQL
functions' own behaviour stays tested against real PostgreSQL (tests/integration)."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain import GatewayRejected, GatewayRetryable, PaymentRequest, ThroughputEstimator
from shared.gateways.port import CheckoutOrder, OrderLook, PaymentGateway, Token, WebhookEvent
from shared.gateways.verdicts import Job, Verdict
from shared.ports import (
    EventBus,
    GatewayOrder,
    GatewayRefund,
    JobQueue,
    QueueMessage,
    QueueStats,
    ReceivedMessage,
    RedriveResult,
    SendInTransaction,
    SqlParams,
)
from shared.settings import Settings

Rows = list[dict[str, Any]]


class FakeDb:
    """The database as a service uses it (shared.ports.SqlDatabase): each statement is answered by the first
    SQL function it names that the script holds -- a list of answers given in turn (the last one again and
    again), or a function of the parameters. A statement the script does not know fails the test."""

    def __init__(self, script: Mapping[str, list[Rows] | Callable[[SqlParams], Rows]] | None = None) -> None:
        self.script = dict(script or {})
        self.calls: list[tuple[str, SqlParams]] = []

    def called(self, function: str) -> list[list[Any]]:
        """The parameters of each statement naming the function, in order (the services pass them by position)."""
        return [list(params) for name, params in self.calls if name == function and not isinstance(params, dict)]

    def fetch_all(self, sql: str, params: SqlParams = (), *, idempotent: bool = False) -> Rows:
        name = next((n for n in self.script if n in sql), None)
        if name is None:
            raise AssertionError(f"unexpected statement: {sql.strip()[:80]}")
        self.calls.append((name, params))
        answer = self.script[name]
        if callable(answer):
            return answer(params)
        return answer.pop(0) if len(answer) > 1 else answer[0]

    def fetch_one(self, sql: str, params: SqlParams = (), *, idempotent: bool = False) -> dict[str, Any] | None:
        rows = self.fetch_all(sql, params, idempotent=idempotent)
        return rows[0] if rows else None

    def execute(self, sql: str, params: SqlParams = (), *, idempotent: bool = False) -> int:
        return len(self.fetch_all(sql, params, idempotent=idempotent))


class FakeQueue:
    """A job queue outside the database (SQS-like), or, with in_database, one the intake statement sends to
    itself (PGMQ-like). fail_sends: every send raises, as a queue that is down; fail_dead_letters: so does
    every move to the DLQ. What it was asked to do with received messages it keeps: visibility (receipt
    handle, delay) and dead_lettered (message, reason)."""

    def __init__(self, *, in_database: bool = False, fail_sends: bool = False, fail_dead_letters: bool = False) -> None:
        self.in_database = in_database
        self.fail_sends = fail_sends
        self.fail_dead_letters = fail_dead_letters
        self.sent: list[QueueMessage] = []
        self.visibility: list[tuple[str, int]] = []
        self.dead_lettered: list[tuple[ReceivedMessage, str]] = []

    def send(self, messages: Sequence[QueueMessage]) -> list[str]:
        if self.fail_sends:
            raise ConnectionError("queue unreachable")
        self.sent.extend(messages)
        return [m.job_id for m in messages]

    def in_transaction(self, message: QueueMessage) -> SendInTransaction | None:
        return SendInTransaction("jobs", json.dumps(message.body), "{}") if self.in_database else None

    def stats(self) -> QueueStats:
        return QueueStats(depth=0, in_flight=0, dlq_depth=0)

    def change_visibility(self, receipt_handle: str, delay_s: int) -> None:
        self.visibility.append((receipt_handle, delay_s))

    def redrive(self) -> RedriveResult:
        raise NotImplementedError

    def hold_dead_letters(self, job_id: str) -> list[str]:
        raise NotImplementedError

    def delete_dead_letters(self, handles: Sequence[str]) -> None:
        raise NotImplementedError

    def release_dead_letters(self, handles: Sequence[str]) -> None:
        raise NotImplementedError

    def dead_letter(self, message: ReceivedMessage, reason: str) -> None:
        if self.fail_dead_letters:
            raise ConnectionError("queue unreachable")
        self.dead_lettered.append((message, reason))


class FakeBus:
    """An event bus that accepts every event but those whose id is in refuses (EventBridge answers per entry),
    or, down, raises for the whole call."""

    def __init__(self, *, refuses: Collection[str] = (), down: bool = False) -> None:
        self.refuses = set(refuses)
        self.down = down
        self.published: list[dict[str, Any]] = []

    def publish(self, events: Sequence[dict[str, Any]]) -> list[str]:
        if self.down:
            raise ConnectionError("bus unreachable")
        accepted = [e for e in events if str(e["id"]) not in self.refuses]
        self.published.extend(accepted)
        return [str(e["id"]) for e in accepted]


@dataclass
class FakeGateway:
    """A gateway behind the port (shared/gateways/port.py), in memory. It answers a create call with an order
    of the checkout's amount (gateway order id "<name>_order_<n>"), or raises `refuses`; before it answers,
    it takes a token of each endpoint in `lookups` (a retried create looks the order up first), as a real
    package does through the token it is given. Named after a registered gateway so that its published
    limits are found (shared/gateway_limits.py)."""

    name: str
    endpoints: Mapping[str, str] = field(default_factory=lambda: {"create": "create_order", "fetch": "fetch"})
    webhook_event_id_header: str = "x-event-id"
    order_expires: bool = True
    refuses: GatewayRetryable | GatewayRejected | None = None
    signature_valid: bool = True
    lookups: tuple[str, ...] = ()
    created: list[tuple[CheckoutOrder, bool]] = field(default_factory=list)

    def create_order(self, checkout: CheckoutOrder, retried: bool, token: Token) -> GatewayOrder:
        if retried:
            for endpoint in self.lookups:
                token(endpoint)
        token(self.endpoints["create"])
        self.created.append((checkout, retried))
        if self.refuses is not None:
            raise self.refuses
        return GatewayOrder(
            order_id=f"{self.name}_order_{len(self.created)}",
            status="created",
            amount_paise=checkout.amount_paise,
            currency=checkout.currency,
            receipt=checkout.merchant_ref,
        )

    def page(self, gateway_order_id: str | None, payment_session_id: str | None) -> dict[str, Any]:
        return {"order_id": gateway_order_id}

    def handed(self, request: PaymentRequest) -> tuple[str | None, str | None]:
        return request.razorpay_order_id, request.razorpay_payment_id

    def checkout_signature_valid(self, request: PaymentRequest) -> bool:
        return self.signature_valid

    def verdict(self, job: Job, token: Token) -> Verdict:
        raise NotImplementedError

    def refund(self, ref: str, amount_paise: int, currency: str, refund_ref: str) -> GatewayRefund:
        raise NotImplementedError

    def find_refund(self, ref: str, refund_ref: str) -> GatewayRefund | None:
        raise NotImplementedError

    def refunds(self, ref: str) -> list[GatewayRefund]:
        raise NotImplementedError

    def follow_refund(self, ref: str, refund_ref: str, gateway_refund_id: str) -> GatewayRefund:
        raise NotImplementedError

    def look_at_order(self, gateway_order_id: str, token: Token) -> OrderLook:
        raise NotImplementedError

    def webhook_signature_valid(self, raw: bytes, headers: Mapping[str, str]) -> bool:
        return self.signature_valid

    def webhook_event(self, body: dict[str, Any]) -> WebhookEvent:
        raise NotImplementedError

    def signed_at(self, headers: Mapping[str, str]) -> datetime | None:
        return None


@dataclass
class FakeDeps:
    """What the services use (shared/ports.py's Has*), each a fake: the App's stand-in."""

    db: FakeDb = field(default_factory=FakeDb)
    queue: JobQueue = field(default_factory=FakeQueue)
    bus: EventBus = field(default_factory=FakeBus)
    gateways: dict[str, PaymentGateway] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)
    throughput: ThroughputEstimator = field(default_factory=ThroughputEstimator)

    def methods(self) -> tuple[str, ...]:
        return ("wallet", *self.gateways)

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
class QueueStats:
    depth: int  # visible, waiting for a worker
    in_flight: int  # received by a worker, not yet deleted
    dlq_depth: int


class JobQueue(Protocol):
    def send(self, messages: Sequence[QueueMessage]) -> list[str]:
        """Send messages (deduplicated by job id); return the job ids the queue accepted."""
        ...

    def stats(self) -> QueueStats: ...


class EventBus(Protocol):
    def publish(self, events: Sequence[dict[str, Any]]) -> list[str]:
        """Publish versioned events; return the ids of those the bus accepted."""
        ...

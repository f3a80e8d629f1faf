"""After commit: events leave through the outbox; the sweeper repairs what a crash or an outage left.

Whatever is not confirmed -- a job whose queue send was never marked, an event never marked
published -- the sweeper (functions/sweeper) sends or publishes again: at least once, and every
consumer dedupes (SQS on the job id, subscribers on the event id).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from shared.domain import build_event
from shared.observability import logger
from shared.ports import HasBus, HasDb, HasQueue, HasSettings
from shared.services.intake import job_message

# psycopg2 sends parameters inside the statement text, and RDS Proxy pins the session of any statement
# over 16 KB (AWS, "Avoiding pinning an RDS Proxy"): ids are marked at most this many per statement
# (a uuid costs about 40 bytes of text).
MARK_CHUNK = 200


class PublishDeps(HasDb, HasBus, Protocol):
    """What publishing events uses: the bus, and the books to mark them published."""


class SweepDeps(PublishDeps, HasQueue, HasSettings, Protocol):
    """What the sweep uses: the books, the queue and the bus, and how long it leaves a send unconfirmed."""


def _mark(deps: HasDb, function: str, ids: Sequence[str]) -> None:
    for start in range(0, len(ids), MARK_CHUNK):
        deps.db.execute(f"SELECT {function}(%s::uuid[])", (list(ids[start : start + MARK_CHUNK]),))


class OutboxRelay:
    """Publishes the events of committed payments after the batch, then marks them published.

    Whatever is not marked (bus down, process killed) the sweeper publishes later.
    """

    def __init__(self, deps: PublishDeps) -> None:
        self.deps = deps
        self.pending: list[dict[str, Any]] = []
        # Products the batch sold out: the processor ends their line after it (shared/services/line.py).
        self.sold_out: set[int] = set()

    def add(self, event: dict[str, Any] | None, sold_out: Sequence[int] = ()) -> None:
        if event is not None:
            self.pending.append(event)
        self.sold_out.update(sold_out)

    def flush(self) -> int:
        events, self.pending = self.pending, []
        return publish_events(self.deps, events)


def publish_events(deps: PublishDeps, events: Sequence[dict[str, Any]]) -> int:
    if not events:
        return 0
    try:
        published = deps.bus.publish(events)
    except Exception:
        logger.exception("event publish failed; left for the sweeper", events=len(events))
        return 0
    if published:
        _mark(deps, "pq_mark_events_published", published)
    return len(published)


def sweep(deps: SweepDeps, limit: int = 500) -> dict[str, int]:
    """Send jobs whose queue send was never confirmed; publish events never published."""
    unsent = deps.db.fetch_all("SELECT * FROM pq_unsent_jobs(%s, %s)", (deps.settings.sweep_after_s, limit))
    resent = 0
    if unsent:
        messages = [job_message(str(r["id"]), r["user_id"], r["order_id"], r["method"], r["parks"]) for r in unsent]
        sent = deps.queue.send(messages)
        _mark(deps, "pq_mark_jobs_sent", sent)
        resent = len(sent)
    rows = deps.db.fetch_all("SELECT pq_unpublished_events(%s, %s) AS row", (deps.settings.sweep_after_s, limit))
    republished = publish_events(deps, [build_event(r["row"]) for r in rows])
    if resent or republished:
        logger.info("sweep", jobs_resent=resent, events_republished=republished)
    return {"jobs_resent": resent, "events_republished": republished}

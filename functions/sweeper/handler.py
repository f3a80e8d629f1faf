"""Runs every minute: sends jobs whose queue send was never confirmed, re-publishes outbox events, ends
the queued jobs of sold-out products, reconciles what the gateways' webhooks did not settle (parked jobs,
checkouts, refunds), and checks the gateway books (shared/services/books.py).

Each step runs whatever the one before it did: a step that fails in a way not foreseen (a
bug, a constraint, the queue refusing a send) is logged at ERROR with its name and the next step goes on,
so a stuck resend or bulk end cannot hold up the refunds behind it; the run then raises SweepFailed
(alarm SweeperErrors). A transient database failure (TransientError: out of reach, a timeout, a deadlock)
stops the run at once, as it stops reconciliation's pass: every step needs the database, and the next run
continues."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import App, bootstrap
from shared.domain import TransientError
from shared.observability import log_metrics, logger, metrics, tracer
from shared.services.books import check_books
from shared.services.line import end_sold_out_jobs
from shared.services.outbox import sweep
from shared.services.reconcile import reconcile

# What each step's counts are published as (a step that failed publishes none).
_METRICS = {
    "jobs_resent": "JobsResent",
    "events_republished": "EventsRepublished",
    "sold_out_jobs_ended": "SoldOutJobsEnded",
    "checkouts_reconciled": "CheckoutsReconciled",
    "parked_jobs_woken": "ParkedJobsWoken",
    "payments_unaccounted": "GatewayMoneyUnaccounted",
}


class SweepFailed(Exception):
    """Steps of a run failed; the others were done (the log lines name the steps, and the items)."""


def _steps(app: App) -> list[tuple[str, Callable[[], dict[str, int]]]]:
    return [
        ("sweep", lambda: sweep(app)),
        # Products sold out by what the processors' own after-batch step missed (a gateway payment took the
        # last unit, two shards emptied at once): their queued jobs end here.
        ("sold_out", lambda: {"sold_out_jobs_ended": end_sold_out_jobs(app, None)}),
        # Its own items are isolated too: it raises ReconcileFailed only after the rest of its pass.
        ("reconcile", lambda: reconcile(app)),
        # After reconciliation, which settles what can be settled: what is left in no book is a defect.
        ("books", lambda: check_books(app)),
    ]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    app = bootstrap()
    done: dict[str, int] = {}
    failed: list[tuple[str, Exception]] = []
    for step, run in _steps(app):
        try:
            done |= run()
        except TransientError:  # the database's: the next run continues
            raise
        except Exception as exc:
            logger.exception("sweeper step failed; the run goes on", step=step)
            failed.append((step, exc))
    for key in _METRICS.keys() & done.keys():
        metrics.add_metric(name=_METRICS[key], unit=MetricUnit.Count, value=done[key])
    if failed:
        steps = ", ".join(step for step, _ in failed)
        raise SweepFailed(f"step(s) failed: {steps}; the rest was done: {done}") from failed[0][1]
    return done

"""The sweeper's reconciliation (functions/sweeper): what no webhook settled, settled by fetching.

- Parked jobs (a gateway order not final when last looked at) nothing woke for a while are sent
  again: the processor fetches the order once more.
- Checkouts with no verdict a few minutes after creation (next_check_at, spaced out) are fetched:
  a gateway order paid or holding an authorised payment gets its job (pq_checkout_looked_at), the
  shopper having closed the tab and the webhook lost; one unpaid past expiry and grace is expired. One
  already marked expired without the gateway's word (the shopper asked for a new checkout once it had
  expired) is fetched too, until the gateway is found to hold no payment for it; and one whose gateway
  order takes payment after its expiry (Razorpay's: PaymentGateway.order_expires) is watched: fetched
  once a day, in a lane of its own, for checkout_late_watch_s past it, so that a late payment whose
  webhooks were all lost gets its job, which applies it to the order or refunds it.
- Refunds not yet final (ours and those made at the gateway) are fetched until they are; a failed one
  of ours is sent again with a fresh reference when pq_refund_policy says so, else it is owed:
  RefundsFailed and an error line for the operator (shared/services/gateway.py refund_failed). One the
  gateway refuses is explained by the payment's refunds, as the processor explains its own (_refused).

Every gateway request takes a token of its endpoint's bucket first and is made with no transaction
open; with no token left, or the database out of reach (TransientError), the pass stops and the next sweep
continues. An item that fails in a way not foreseen (a bug, a constraint) is logged at ERROR with its id and
passed over, so one item cannot hold up every other checkout and refund; the pass then raises, failing the
sweeper's run (alarm SweeperErrors).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.domain import GatewayRejected, GatewayRetryable, TransientError
from shared.gateways.port import OrderLook, OrderPaid
from shared.observability import logger
from shared.outcomes import WebhookOutcome
from shared.ports import GatewayRefund, HasDb, HasGateways, HasQueue, HasSettings, RefundState
from shared.services.checkout import token_wait_ms
from shared.services.gateway import ours_listed, refund_failed, refunds_json
from shared.services.intake import job_message, send_jobs


class ReconcileDeps(HasDb, HasQueue, HasGateways, HasSettings, Protocol):
    """What reconciliation uses: the gateways to fetch, the books, the queue for the jobs it wakes, and
    its timings."""


class _OutOfTokens(Exception):
    pass


class ReconcileFailed(Exception):
    """Items of a pass failed in ways not foreseen; the rest of the pass was done (their log lines name them)."""


@contextmanager
def _isolated(failures: list[Exception], what: str, **ids: Any) -> Iterator[None]:
    """One item's work: an unforeseen failure is logged and kept for the end of the pass, the next item goes on."""
    try:
        yield
    except (_OutOfTokens, TransientError):  # no token left, or the database out of reach: the pass stops
        raise
    except Exception as exc:
        logger.exception(f"{what} failed; the pass goes on", **ids)
        failures.append(exc)


def _token(deps: ReconcileDeps, gateway: str, endpoint: str) -> None:
    """A token of the endpoint's bucket, or the pass stops (it never waits: the next sweep continues)."""
    if token_wait_ms(deps, gateway, endpoint) is not None:
        raise _OutOfTokens


def _look_at_order(deps: ReconcileDeps, checkout: dict[str, Any]) -> OrderLook:
    """The checkout's gateway order: the payments it holds, captured ones first, and whether it is open."""
    method = checkout["method"]
    return deps.gateways[method].look_at_order(
        checkout["gateway_order_id"], lambda endpoint: _token(deps, method, endpoint)
    )


def _reconcile_checkouts(deps: ReconcileDeps, limit: int, failures: list[Exception]) -> int:
    settled = 0
    for checkout in deps.db.fetch_all("SELECT * FROM pq_checkouts_to_reconcile(%s)", (limit,)):
        with _isolated(failures, "checkout reconciliation", checkout_id=str(checkout["id"])):
            settled += _reconcile_checkout(deps, checkout)
    return settled


def _reconcile_checkout(deps: ReconcileDeps, checkout: dict[str, Any]) -> int:
    """1 when a payment of the checkout got its job (made or woken), else 0. Its payments are offered in turn
    until one needs a job: one a job holds, or a job released, must not hide the next (pq_checkout_found)."""
    try:
        look = _look_at_order(deps, checkout)
    except (GatewayRetryable, GatewayRejected) as exc:
        logger.info("reconciliation fetch failed", checkout_id=str(checkout["id"]), error=str(exc))
        return 0
    grace = timedelta(seconds=deps.settings.checkout_settle_grace_s)
    paid = look.payments
    if not paid and (look.open or datetime.now(UTC) <= checkout["expires_at"] + grace):
        return 0  # nothing paid yet, and the order may still be: looked at again (the claim's spacing)
    watch_until = None
    if not deps.gateways[checkout["method"]].order_expires:
        watch_until = checkout["expires_at"] + timedelta(seconds=deps.settings.checkout_late_watch_s)
    offered: list[OrderPaid | None] = [*paid] if paid else [None]  # None: unpaid, the checkout expires
    for found in offered:
        ref, captured = (found.ref, found.captured) if found else (None, None)
        row = deps.db.fetch_one(
            "SELECT * FROM pq_checkout_found(%s, %s, %s, %s)", (checkout["id"], ref, captured, watch_until)
        )
        assert row is not None
        if row["outcome"] == WebhookOutcome.JOB_LIVE:
            return 0  # a job holds the order: the look comes back after it ends
        if row["outcome"] in (WebhookOutcome.JOB_CREATED, WebhookOutcome.JOB_WOKEN):
            send_jobs(
                deps,
                [job_message(str(row["job_id"]), row["user_id"], row["order_id"], checkout["method"], row["parks"])],
            )
            logger.info("checkout reconciled", checkout_id=str(checkout["id"]), outcome=row["outcome"])
            return 1
    return 0


def _fetch_refund(deps: ReconcileDeps, refund: dict[str, Any]) -> GatewayRefund | None:
    """The refund as the gateway reports it now; None: a requested refund of ours the gateway does not have."""
    gateway = deps.gateways[refund["method"]]
    _token(deps, gateway.name, gateway.endpoints["find_refund"])
    if refund["state"] == "requested":
        return gateway.find_refund(refund["gateway_ref"], refund["refund_ref"])
    return gateway.follow_refund(refund["gateway_ref"], refund["refund_ref"], refund["gateway_refund_id"])


def _settle(deps: ReconcileDeps, refund: dict[str, Any], found: GatewayRefund) -> bool:
    """Record the refund's state (the books' one transition); True when it became final."""
    row = deps.db.fetch_one(
        "SELECT * FROM pq_refund_settled(%s, %s, %s, %s)",
        (refund["id"], found.state.value, found.gateway_status, found.refund_id),
    )
    assert row is not None
    if row["failed"]:
        refund_failed(str(refund["job_id"]), refund["method"], refund["id"], owed=bool(row["owed"]))
    return bool(row["changed"]) and found.state is not RefundState.PENDING


def _send_refund(deps: ReconcileDeps, refund: dict[str, Any]) -> bool:
    """Send a requested refund of ours (a retry with its fresh reference, or one the gateway never got);
    True when it became final. A refusal (4xx) is explained by the payment's refunds (_refused)."""
    gateway = deps.gateways[refund["method"]]
    _token(deps, gateway.name, gateway.endpoints["refund"])
    try:
        answer = gateway.refund(
            refund["gateway_ref"], refund["amount_paise"], refund["currency"].strip(), refund["refund_ref"]
        )
    except GatewayRejected as exc:
        return _refused(deps, refund, str(exc))
    return _settle(deps, refund, answer)


def _refused(deps: ReconcileDeps, refund: dict[str, Any], error: str) -> bool:
    """A refusal, explained by the payment's refunds as the processor explains its own (shared/services/
    gateway.py _Delivery.refund): an earlier send under this reference went through (its answer lost: ours
    is listed); or refunds made at the gateway (the merchant's dashboard, while this attempt waited its
    turn) left less than it asks for: theirs booked, it withdrawn and the rest requested as the next
    attempt, sent at once (pq_refund_refusal_explained); else it is owed, as sending it again would be
    refused again. With no token for the read the pass stops; the refund stays requested, and a later
    pass finds the gateway without it, sends it again and reads then."""
    gateway = deps.gateways[refund["method"]]
    _token(deps, gateway.name, gateway.endpoints["refunds"])
    listed = gateway.refunds(refund["gateway_ref"])
    ours = ours_listed(listed, refund["refund_ref"])
    if ours is not None:
        return _settle(deps, refund, ours)
    row = deps.db.fetch_one(
        "SELECT * FROM pq_refund_refusal_explained(%s, %s, %s)", (refund["id"], refunds_json(listed), error)
    )
    assert row is not None
    if not row["withdrawn"]:
        if row["owed"]:
            refund_failed(str(refund["job_id"]), refund["method"], refund["id"], owed=True, error=error)
        return True
    logger.warning(
        "refund withdrawn: refunds made at the gateway left less",
        job_id=str(refund["job_id"]),
        gateway=refund["method"],
        refund_id=refund["id"],
        rest_paise=row["next_amount_paise"] or 0,
    )
    if row["next_refund_id"] is None:  # they returned all of it: nothing more goes back
        return True
    rest = refund | {
        "id": row["next_refund_id"],
        "refund_ref": row["next_refund_ref"],
        "amount_paise": row["next_amount_paise"],
        "state": "requested",
    }
    return _send_refund(deps, rest)


def _follow_refunds(deps: ReconcileDeps, limit: int, failures: list[Exception]) -> int:
    """Refunds not final yet (ours and the gateway's), fetched; a requested one the gateway lacks, sent."""
    settled = 0
    for refund in deps.db.fetch_all("SELECT * FROM pq_refunds_to_check(%s)", (limit,)):
        with _isolated(failures, "refund follow-up", refund_id=refund["id"]):
            try:
                found = _fetch_refund(deps, refund)
                settled += _send_refund(deps, refund) if found is None else _settle(deps, refund, found)
            except (GatewayRetryable, GatewayRejected) as exc:
                logger.info("refund fetch failed", refund_id=refund["id"], error=str(exc))
    return settled


def _retry_refunds(deps: ReconcileDeps, limit: int, failures: list[Exception]) -> int:
    """Failed refunds of ours due for another attempt, each sent with its fresh reference."""
    retried = 0
    due: list[dict[str, Any]] = []
    with _isolated(failures, "claiming the refunds due for a retry"):  # the follow-ups still run
        due = deps.db.fetch_all("SELECT * FROM pq_refunds_to_retry(%s)", (limit,))
    for refund in due:
        retried += 1
        with _isolated(failures, "refund retry", refund_id=refund["id"]):
            try:
                _send_refund(deps, refund)
            except GatewayRetryable as exc:  # stays requested: the next passes look it up, then send it again
                logger.info("refund retry not answered", refund_id=refund["id"], error=str(exc))
    return retried


def reconcile(deps: ReconcileDeps, limit: int = 100) -> dict[str, int]:
    """One reconciliation pass; the counts of what it did."""
    result = {"parked_jobs_woken": 0, "checkouts_reconciled": 0, "refunds_settled": 0, "refunds_retried": 0}
    if not deps.gateways:
        return result
    woken = deps.db.fetch_all(
        "SELECT * FROM pq_wake_parked_jobs(%s, %s)", (float(deps.settings.reconcile_after_s), limit)
    )
    send_jobs(deps, [job_message(str(r["id"]), r["user_id"], r["order_id"], r["method"], r["parks"]) for r in woken])
    result["parked_jobs_woken"] = len(woken)
    failures: list[Exception] = []
    try:
        result["checkouts_reconciled"] = _reconcile_checkouts(deps, limit, failures)
        result["refunds_retried"] = _retry_refunds(deps, limit, failures)
        result["refunds_settled"] = _follow_refunds(deps, limit, failures)
    except _OutOfTokens:
        logger.info("reconciliation stopped: no gateway token; the next sweep continues")
    if failures:
        raise ReconcileFailed(f"{len(failures)} item(s) failed; the pass did the rest: {result}") from failures[0]
    return result

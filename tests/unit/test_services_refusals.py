"""What the services refuse with no statement sent (an id that cannot name anything, a webhook that does not
verify, a query value out of bounds) and how they refuse what a statement answered, with fakes of the
database, the queue and a gateway. The statements' answers are tested against PostgreSQL in
tests/integration (test_leaving_the_line.py, test_dlq_drop.py, test_merchant_api.py, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shared.errors import DomainError, ErrorKind, Invalid, NotFound, Unauthorized
from shared.outcomes import CancelOutcome
from shared.services import merchant
from shared.services.line import cancel_job
from shared.services.operator import drop_dead_letter, retry_refund
from shared.services.orders import get_order
from shared.services.reads import get_job
from shared.services.webhooks import verify
from tests.unit.fakes import FakeBus, FakeDb, FakeDeps, FakeGateway

SHOPPER = "shopper-1"


@pytest.mark.parametrize(
    ("ask", "code"),
    [
        (lambda deps: get_job(deps, SHOPPER, "not-a-uuid"), "job_not_found"),
        (lambda deps: cancel_job(deps, SHOPPER, "1; DROP TABLE payment_jobs"), "job_not_found"),
        (lambda deps: drop_dead_letter(deps, "../../etc", "operator-1"), "job_not_found"),
        (lambda deps: get_order(deps, SHOPPER, "-1"), "order_not_found"),
        (lambda deps: get_order(deps, SHOPPER, "9" * 40), "order_not_found"),
        (lambda deps: retry_refund(deps, "12a", "operator-1"), "refund_not_found"),
        (lambda deps: merchant.redeliver_event(deps, "evt"), "event_not_found"),
    ],
)
def test_an_id_that_cannot_name_anything_is_not_found_without_a_statement(
    ask: Callable[[FakeDeps], Any], code: str
) -> None:
    # Given a database and a queue that fail the test if asked anything (FakeDb has no script; the queue's
    # dead-letter calls are not implemented)
    deps = FakeDeps()

    # When the id is asked for
    with pytest.raises(NotFound) as refused:
        ask(deps)

    # Then it is not found, as a missing one is, and nothing was asked of the database
    assert refused.value.code == code and deps.db.calls == []


def test_a_webhook_that_does_not_verify_or_names_no_enabled_gateway_is_unauthorized() -> None:
    deps = FakeDeps(gateways={"razorpay": FakeGateway("razorpay", signature_valid=False)})

    for name in ("razorpay", "cashfree"):
        with pytest.raises(Unauthorized) as refused:
            verify(deps, name, b"{}", {})
        assert refused.value.code == "webhook_signature_invalid"


@pytest.mark.parametrize(
    ("outcome", "code", "details"),
    [
        (CancelOutcome.JOB_NOT_FOUND, "job_not_found", {}),
        (CancelOutcome.JOB_TAKEN, "job_processing", {"job_status": "processing"}),
        (CancelOutcome.JOB_FINISHED, "job_finished", {"job_status": "processing", "reason": None}),
        (CancelOutcome.PAID_AT_GATEWAY, "paid_at_gateway", {"job_status": "processing"}),
    ],
)
def test_a_job_that_cannot_leave_the_line_is_refused_saying_why(
    outcome: CancelOutcome, code: str, details: dict[str, Any]
) -> None:
    # Given the cancel statement answering that the job cannot be cancelled
    row = {"outcome": outcome.value, "status": "processing", "reason": None}
    bus = FakeBus()
    deps = FakeDeps(db=FakeDb({"pq_leave_line": [[row]]}), bus=bus)

    # When the shopper cancels it
    with pytest.raises(DomainError) as refused:
        cancel_job(deps, SHOPPER, "6f1c1c8e-8a43-4a3e-9d3c-0c8f1f4b1a11")

    # Then the refusal says why, and no event was published
    expected_kind = ErrorKind.NOT_FOUND if outcome is CancelOutcome.JOB_NOT_FOUND else ErrorKind.CONFLICT
    assert (refused.value.kind, refused.value.code, refused.value.details) == (expected_kind, code, details)
    assert bus.published == []


@pytest.mark.parametrize(
    ("parse", "value", "field"),
    [
        (merchant.query_user, None, "user_id"),
        (merchant.query_user, "x" * 256, "user_id"),
        (merchant.query_limit, "0", "limit"),
        (merchant.query_limit, str(merchant.MAX_PAGE + 1), "limit"),
        (merchant.query_limit, "٣", "limit"),  # a digit, but not an ASCII one
        (merchant.query_since, "2026-01-31T10:00:00", "since"),  # no offset: which instant?
    ],
)
def test_a_merchant_query_value_out_of_bounds_is_invalid_naming_its_field(
    parse: Callable[[str | None], object], value: str | None, field: str
) -> None:
    with pytest.raises(Invalid) as refused:
        parse(value)

    assert (refused.value.code, refused.value.details) == ("validation_error", {"field": field})

"""Pure domain logic: request parsing, fingerprints, throughput estimates, queue positions."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from shared.domain import PaymentRequest, ThroughputEstimator, build_event
from shared.errors import DomainError
from shared.http import http_status
from shared.services.intake import parse_payment_request, validate_idempotency_key
from shared.services.processing import parse_job_message
from shared.services.reads import job_view
from shared.settings import Settings


def test_fingerprint_ignores_key_order_but_not_values() -> None:
    a = parse_payment_request('{"order_id": 7, "method": "wallet"}')
    b = parse_payment_request('{"method": "wallet", "order_id": 7}')
    c = parse_payment_request('{"order_id": 8, "method": "wallet"}')
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_request_is_strict_about_types() -> None:
    with pytest.raises(DomainError) as err:
        parse_payment_request('{"order_id": "7", "method": "wallet"}')
    assert err.value.code == "validation_error" and err.value.details == {"field": "order_id"}


def test_deeply_nested_json_is_refused_cleanly() -> None:
    with pytest.raises(DomainError) as err:
        parse_payment_request("[" * 100_000 + "]" * 100_000)
    assert http_status(err.value) == 400


@pytest.mark.parametrize("key", [None, "", "   ", "a" * 256, "tab\tkey"])
def test_unusable_idempotency_keys_are_refused(key: str | None) -> None:
    with pytest.raises(DomainError) as err:
        validate_idempotency_key(key)
    assert http_status(err.value) == 400


def test_throughput_is_unknown_until_a_second_of_samples_shows_progress() -> None:
    estimator = ThroughputEstimator()
    estimator.observe(100, now=0.0)
    assert estimator.rate(now=0.0) is None
    estimator.observe(400, now=2.0)
    assert estimator.rate(now=2.0) == pytest.approx(150.0)


def test_throughput_forgets_samples_older_than_its_window() -> None:
    estimator = ThroughputEstimator()
    estimator.observe(0, now=0.0)
    estimator.observe(6000, now=60.0)
    estimator.observe(6100, now=61.0)
    assert estimator.rate(now=61.0) == pytest.approx(100.0)


def test_a_stalled_queue_has_no_throughput_even_with_progress_earlier_in_the_window() -> None:
    # Given a minute that started fast, then nothing finished for longer than the stall limit
    estimator = ThroughputEstimator()
    estimator.observe(0, now=0.0)
    estimator.observe(500, now=5.0)
    for t in range(6, 5 + int(ThroughputEstimator.STALL_S) + 3):
        estimator.observe(500, now=float(t))
    # Then there is no rate to promise a wait with
    assert estimator.rate(now=5.0 + ThroughputEstimator.STALL_S + 2) is None


def test_no_samples_that_show_progress_mean_no_rate() -> None:
    estimator = ThroughputEstimator()
    estimator.observe(50, now=0.0)
    estimator.observe(50, now=5.0)
    assert estimator.rate(now=5.0) is None


def _app(rate: float | None) -> Any:
    """An app whose estimator measured `rate` payments per second (None: nothing measured)."""
    estimator = SimpleNamespace(observe=lambda finished: None, rate=lambda: rate)
    return SimpleNamespace(settings=Settings(), throughput=estimator)


def test_position_never_increases_and_poll_advice_grows_with_it() -> None:
    app = _app(rate=100.0)
    row = {"id": "j", "order_id": 1, "status": "queued", "queue_seq": 1_000}
    far = job_view(app, row | {"finished": 0})
    near = job_view(app, row | {"finished": 990})
    done_past_me = job_view(app, row | {"finished": 5_000})

    assert far["position"] == 1_000 > near["position"] == 10 >= done_past_me["position"] == 1
    assert far["poll_after_ms"] > near["poll_after_ms"]
    assert Settings().poll_min_ms <= near["poll_after_ms"] <= far["poll_after_ms"] <= Settings().poll_max_ms
    assert far["eta_seconds"] == pytest.approx(10.0)


def test_a_job_waiting_without_a_measured_rate_has_no_eta_but_still_poll_advice() -> None:
    # Given no throughput measured (a fresh API process, or a stalled queue)
    app = _app(rate=None)
    # When a waiting job is viewed
    view = job_view(app, {"id": "j", "order_id": 1, "status": "queued", "queue_seq": 5_000, "finished": 0})
    # Then it has its place but no promised wait, and is told when to come back
    assert view["position"] == 5_000 and view["eta_seconds"] is None
    assert Settings().poll_min_ms <= view["poll_after_ms"] <= Settings().poll_max_ms


def test_terminal_jobs_carry_their_outcome_not_a_position() -> None:
    app = _app(rate=100.0)
    failed = job_view(app, {"id": "j", "order_id": 1, "status": "failed", "reason": "out_of_stock"})
    paid = job_view(app, {"id": "j", "order_id": 1, "status": "succeeded", "payment_id": 9})
    assert failed["reason"] == "out_of_stock" and "position" not in failed
    assert paid["payment_id"] == 9 and "poll_after_ms" not in paid


@pytest.mark.parametrize("body", ["", "{}", '{"job_id": "nope"}', "[]", "not json", '{"job_id": null}'])
def test_malformed_queue_messages_are_poison(body: str) -> None:
    from shared.domain import PoisonMessageError

    with pytest.raises(PoisonMessageError):
        parse_job_message(body)


def test_events_are_versioned_and_carry_their_id() -> None:
    event = build_event({"id": "e1", "type": "PaymentFailed", "occurred_at": "t", "data": {"reason": "x"}})
    assert event == {
        "version": "1",
        "id": "e1",
        "type": "PaymentFailed",
        "source": "payment-queue",
        "occurred_at": "t",
        "data": {"reason": "x"},
    }


def test_payment_request_model_rejects_extra_fields() -> None:
    with pytest.raises(DomainError):
        parse_payment_request('{"order_id": 1, "method": "wallet", "amount_paise": 1}')
    assert PaymentRequest(order_id=1, method="wallet").order_id == 1

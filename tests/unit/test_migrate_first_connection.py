"""The migrate function retries its first connection with doubling delays, for a bounded time."""

from __future__ import annotations

from typing import Any

import pytest

from functions.migrate.handler import CONNECT_DEADLINE_S, MAX_DELAY_S, connect_with_retry
from shared.domain import TransientError


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class _Db:
    """Fails the first `failures` connection attempts, as a proxy still registering its target."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0

    def fetch_one(self, sql: str) -> dict[str, Any]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise TransientError("OperationalError: could not connect")
        return {"?column?": 1}


class _App:
    def __init__(self, db: _Db) -> None:
        self.db = db


def test_a_database_that_answers_after_a_few_failures_is_connected_with_doubling_delays() -> None:
    clock, db = _Clock(), _Db(failures=5)

    attempts = connect_with_retry(_App(db), sleep=clock.sleep, clock=clock)  # type: ignore[arg-type]

    assert attempts == 6
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, MAX_DELAY_S]


def test_a_database_that_never_answers_fails_the_deployment_once_the_deadline_passes() -> None:
    clock, db = _Clock(), _Db(failures=10_000)

    with pytest.raises(TransientError):
        connect_with_retry(_App(db), sleep=clock.sleep, clock=clock)  # type: ignore[arg-type]

    assert clock.now == pytest.approx(CONNECT_DEADLINE_S)
    assert db.attempts < 20


def test_a_reachable_database_is_not_waited_for() -> None:
    clock, db = _Clock(), _Db(failures=0)

    assert connect_with_retry(_App(db), sleep=clock.sleep, clock=clock) == 1  # type: ignore[arg-type]
    assert clock.sleeps == []


def test_a_secret_not_yet_readable_through_the_endpoint_is_retried_too() -> None:
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    class _SecretLater(_Db):
        def fetch_one(self, sql: str) -> dict[str, Any]:
            self.attempts += 1
            if self.attempts == 1:
                raise GetParameterError("Connect timeout on endpoint URL")
            return {"?column?": 1}

    clock = _Clock()

    assert connect_with_retry(_App(_SecretLater(0)), sleep=clock.sleep, clock=clock) == 2  # type: ignore[arg-type]

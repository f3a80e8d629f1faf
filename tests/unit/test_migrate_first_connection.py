"""The migrate function retries its first connection with doubling delays, for a bounded time."""

from __future__ import annotations

from typing import Any

import pytest

from functions.migrate.handler import (
    CONNECT_DEADLINE_S,
    FINISH_MARGIN_MS,
    MAX_DELAY_S,
    connect_with_retry,
    migration_timeout_ms,
)
from shared.domain import TransientError
from shared.migrate import MIGRATION_STATEMENT_TIMEOUT_MS


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


class _Context:
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms
        self.function_name, self.memory_limit_in_mb = "migrate", 512
        self.invoked_function_arn, self.aws_request_id = "arn:aws:lambda:ap-south-1:1:function:migrate", "r"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


class _ClosingDb(_Db):
    closed = 0

    def close(self) -> None:
        self.closed += 1


@pytest.mark.parametrize("fails", [False, True])
def test_migrate_closes_its_connection_whether_or_not_the_migrations_applied(
    monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    # Given a migrate run that applies nothing, or fails
    import functions.migrate.handler as migrate_function

    db = _ClosingDb(failures=0)
    seen: list[int] = []

    def migrate(database: Any, *, statement_timeout_ms: int) -> list[str]:
        seen.append(statement_timeout_ms)
        if fails:
            raise TransientError("OperationalError: canceling statement due to statement timeout")
        return []

    monkeypatch.setattr(migrate_function, "bootstrap", lambda: _App(db))
    monkeypatch.setattr(migrate_function, "migrate", migrate)

    # When the deployment's trigger invokes it with 200 s left (the rest went on connecting)
    if fails:
        with pytest.raises(TransientError):
            migrate_function.handler({}, _Context(200_000))  # type: ignore[arg-type]
    else:
        assert migrate_function.handler({}, _Context(200_000)) == {"applied": []}  # type: ignore[arg-type]

    # Then its connection is closed either way (no client connection left for the proxy to keep), and
    # the migrations' timeout ends them inside the function's own
    assert db.closed == 1
    assert seen == [200_000 - FINISH_MARGIN_MS]


def test_the_migrations_timeout_never_exceeds_what_the_function_has_left() -> None:
    # A first deploy that spent the whole 90 s connecting has 210 s of the 300 left
    assert migration_timeout_ms(210_000) == 210_000 - FINISH_MARGIN_MS < MIGRATION_STATEMENT_TIMEOUT_MS
    assert migration_timeout_ms(300_000) == MIGRATION_STATEMENT_TIMEOUT_MS
    assert CONNECT_DEADLINE_S * 1000 + MIGRATION_STATEMENT_TIMEOUT_MS + FINISH_MARGIN_MS > 300_000  # why it is needed

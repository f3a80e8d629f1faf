"""The connection wrapper: errors leave the connection usable."""

from __future__ import annotations

import psycopg2
import pytest

from shared.db import Database


def test_a_failed_relaxed_write_leaves_the_connection_usable(db: Database) -> None:
    # Given a relaxed write that fails inside its BEGIN ... COMMIT
    with pytest.raises(psycopg2.errors.UndefinedTable):
        db.execute_relaxed("UPDATE no_such_table SET x = 1")

    # Then the same connection runs the next statement, outside any transaction
    assert db.fetch_one("SELECT 1 AS one") == {"one": 1}
    assert db.fetch_one("SELECT now() = statement_timestamp() AS fresh") == {"fresh": True}


def test_a_failed_statement_does_not_poison_the_next_one(db: Database) -> None:
    with pytest.raises(psycopg2.errors.DivisionByZero):
        db.fetch_one("SELECT 1 / 0")
    assert db.fetch_one("SELECT 2 AS two") == {"two": 2}

"""The connection wrapper: errors leave the connection usable."""

from __future__ import annotations

import psycopg2
import pytest

from shared.db import Database


def test_a_failed_statement_does_not_poison_the_next_one(db: Database) -> None:
    with pytest.raises(psycopg2.errors.DivisionByZero):
        db.fetch_one("SELECT 1 / 0")
    assert db.fetch_one("SELECT 2 AS two") == {"two": 2}

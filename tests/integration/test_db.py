"""The connection wrapper: errors leave the connection usable."""

from __future__ import annotations

import os
import resource

import psycopg2
import pytest

from shared.db import Database


def test_a_failed_statement_does_not_poison_the_next_one(db: Database) -> None:
    with pytest.raises(psycopg2.errors.DivisionByZero):
        db.fetch_one("SELECT 1 / 0")
    assert db.fetch_one("SELECT 2 AS two") == {"two": 2}


def test_a_process_with_a_thousand_open_sockets_keeps_its_connection(db: Database) -> None:
    # Given a process holding more than 1,024 descriptors (an API process serving a thousand clients), so
    # that a new connection's socket is numbered past what select() accepts
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4_096 <= hard:  # room for them where the soft limit is the common 1,024
        resource.setrlimit(resource.RLIMIT_NOFILE, (4_096, hard))
    db.execute("SELECT 1")
    db.close()
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1_100)]
    try:
        first = db.fetch_one("SELECT pg_backend_pid() AS pid")
        assert first is not None
        connection = db._local.conn  # the socket under test
        assert connection.fileno() >= 1024

        # When it sends the next statements on that connection
        later = [db.fetch_one("SELECT pg_backend_pid() AS pid") for _ in range(3)]

        # Then each goes to the same server process: the idle check did not mistake it for dropped
        assert later == [first] * 3
    finally:
        db.close()
        for fd in held:
            os.close(fd)

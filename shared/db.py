"""PostgreSQL access through psycopg2: one connection per thread, autocommit, errors classified.

Autocommit matters for speed: every money-moving call is a single statement (a SQL function), so
it is its own transaction and costs exactly one round trip, with no BEGIN/COMMIT exchanges.
psycopg2 also interpolates parameters client-side, so RDS Proxy never pins a session for
prepared statements.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from shared.domain import TransientError

Row = dict[str, Any]

psycopg2.extras.register_uuid()  # type: ignore[no-untyped-call]


class Database:
    def __init__(
        self,
        dsn: Callable[[], str],
        *,
        connect_timeout_s: int,
        application_name: str = "payment-queue",
        on_connect_error: Callable[[], None] | None = None,
    ) -> None:
        self._dsn = dsn
        self._on_connect_error = on_connect_error
        self._application_name = application_name
        self._connect_timeout_s = connect_timeout_s
        self._local = threading.local()
        self.round_trips = 0  # statements sent by this process; the benchmark reads it

    def _connect(self) -> psycopg2.extensions.connection:
        try:
            conn = psycopg2.connect(
                self._dsn(),
                connect_timeout=self._connect_timeout_s,
                # Nothing else at startup: RDS Proxy and PgBouncer refuse `options`, so the
                # statement timeout is a role setting on the server (migration 0005).
                application_name=self._application_name,
            )
        except psycopg2.OperationalError:
            if self._on_connect_error is not None:  # e.g. re-read rotated credentials next time
                self._on_connect_error()
            raise
        conn.autocommit = True
        return conn

    def _connection(self) -> psycopg2.extensions.connection:
        conn: psycopg2.extensions.connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            conn.close()
        self._local.conn = None

    @contextmanager
    def _cursor(self) -> Iterator[psycopg2.extras.RealDictCursor]:
        try:
            conn = self._connection()
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                yield cur
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            # Lost connection, serialization failure, deadlock, timeout, server shutdown: the
            # statement's transaction is gone, so it is safe to retry on a fresh connection.
            self.close()
            raise TransientError(f"{type(exc).__name__}: {str(exc).strip()}") from exc

    def fetch_all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        with self._cursor() as cur:
            self.round_trips += 1
            cur.execute(sql, params or None)
            return [dict(r) for r in cur.fetchall()]

    def fetch_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
        rows = self.fetch_all(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        with self._cursor() as cur:
            self.round_trips += 1
            cur.execute(sql, params or None)
            return cur.rowcount

    @contextmanager
    def transaction(self, *, statement_timeout_ms: int | None = None) -> Iterator[psycopg2.extras.RealDictCursor]:
        """An explicit multi-statement transaction, for the few places that need one (migrations).

        statement_timeout_ms replaces the role's timeout for this transaction only (SET LOCAL):
        for work that runs once on its own connection, such as a deploy's migrations, never on a
        request path (a SET pins an RDS Proxy session).
        """
        with self._cursor() as cur:
            conn = cur.connection
            conn.autocommit = False
            try:
                if statement_timeout_ms is not None:
                    cur.execute("SET LOCAL statement_timeout = %s", (int(statement_timeout_ms),))
                yield cur
                conn.commit()
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise
            finally:
                if not conn.closed:
                    conn.autocommit = True

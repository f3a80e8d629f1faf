"""PostgreSQL access through psycopg2: one connection per thread, autocommit, errors classified.

Autocommit matters for speed: every money-moving call is a single statement (a SQL function), so
it is its own transaction and costs exactly one round trip, with no BEGIN/COMMIT exchanges.
psycopg2 also interpolates parameters client-side, so RDS Proxy never pins a session for
prepared statements.
"""

from __future__ import annotations

import select
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


class ConnectionLost(TransientError):
    """The connection was gone when a statement was sent on it: the server may or may not have run it."""


def _dropped_while_idle(conn: psycopg2.extensions.connection) -> bool:
    """Whether the server side closed an idle connection (RDS Proxy's idle client timeout, PgBouncer's
    client_idle_timeout, a restart). Between statements the server sends nothing unasked: a readable
    socket holds its goodbye (an error message, then EOF). A zero-timeout poll; no round trip.

    poll, not select: select() refuses a descriptor of 1024 or more (ValueError), which an API process
    serving a thousand clients has; counting that as "dropped" replaced the connection before every
    statement (a new PostgreSQL backend per request, found by bisecting the flash-sale benchmark)."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
    # POLLHUP, POLLERR and POLLNVAL (a descriptor no longer open) are reported whatever was asked.
    return bool(poller.poll(0))


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
        if conn is not None and not conn.closed and _dropped_while_idle(conn):
            # Nothing was sent on it since it went: a fresh connection serves the statement, whatever it is.
            conn.close()
        if conn is None or conn.closed:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _has_connection(self) -> bool:
        conn: psycopg2.extensions.connection | None = getattr(self._local, "conn", None)
        return conn is not None and not conn.closed

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            conn.close()
        self._local.conn = None

    @contextmanager
    def _cursor(self) -> Iterator[psycopg2.extras.RealDictCursor]:
        conn: psycopg2.extensions.connection | None = None
        try:
            conn = self._connection()
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                yield cur
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            # Lost connection, serialization failure, deadlock, timeout, server shutdown: the
            # statement's transaction is gone, so it is safe to retry on a fresh connection. A
            # server's error carries a SQLSTATE; a connection that died under the statement does not.
            lost = conn is not None and bool(conn.closed) and getattr(exc, "pgcode", None) is None
            self.close()
            error = ConnectionLost if lost else TransientError
            raise error(f"{type(exc).__name__}: {str(exc).strip()}") from exc

    def _run(
        self,
        sql: str,
        params: Sequence[Any] | dict[str, Any],
        answer: Callable[[psycopg2.extras.RealDictCursor], Any],
        idempotent: bool,
    ) -> Any:
        """One statement; if it was `idempotent` and the connection it went out on, open since an earlier
        call, turns out to have been dropped (the goodbye not yet arrived when it was sent), sent once
        more on a fresh connection. A statement that is not idempotent is never sent twice: its caller
        gets the TransientError, and the queue or the client retries the whole request."""
        reused = self._has_connection()
        try:
            return self._once(sql, params, answer)
        except ConnectionLost:
            if not (idempotent and reused):
                raise
        return self._once(sql, params, answer)

    def _once(
        self,
        sql: str,
        params: Sequence[Any] | dict[str, Any],
        answer: Callable[[psycopg2.extras.RealDictCursor], Any],
    ) -> Any:
        with self._cursor() as cur:
            self.round_trips += 1
            cur.execute(sql, params or None)
            return answer(cur)

    def fetch_all(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = (), *, idempotent: bool = False
    ) -> list[Row]:
        rows: list[Row] = self._run(sql, params, lambda cur: [dict(r) for r in cur.fetchall()], idempotent)
        return rows

    def fetch_one(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = (), *, idempotent: bool = False
    ) -> Row | None:
        rows = self.fetch_all(sql, params, idempotent=idempotent)
        return rows[0] if rows else None

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = (), *, idempotent: bool = False) -> int:
        count: int = self._run(sql, params, lambda cur: cur.rowcount, idempotent)
        return count

    @contextmanager
    def transaction(self) -> Iterator[psycopg2.extras.RealDictCursor]:
        """An explicit multi-statement transaction, for the few places that need one (migrations).

        A setting for the transaction only is made inside a SQL function (set_config(..., true)), as on
        the request paths: a top-level SET or set_config would pin an RDS Proxy session.
        """
        with self._cursor() as cur:
            conn = cur.connection
            conn.autocommit = False
            try:
                yield cur
                conn.commit()
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise
            finally:
                if not conn.closed:
                    conn.autocommit = True

"""PgBouncer in transaction mode (the stand-in for RDS Proxy) in front of the session's server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.pgbouncer import NOT_INSTALLED, PgBouncer, find_pgbouncer


@pytest.fixture(scope="session")
def pgbouncer(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    """A PgBouncer child process for the session; the tests skip, saying why, when there is none."""
    if find_pgbouncer() is None:
        pytest.skip(NOT_INSTALLED)
    bouncer = PgBouncer(pg_admin_url, tmp_path_factory.mktemp("pgbouncer")).start()
    yield bouncer
    bouncer.stop()

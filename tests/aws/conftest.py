"""PgBouncer in transaction mode (the stand-in for RDS Proxy) in front of the session's server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.pgbouncer import NOT_INSTALLED, PgBouncer, find_pgbouncer
from tests.conftest import require_tool


@pytest.fixture(scope="session")
def pgbouncer(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    """A PgBouncer child process for the session; the tests fail, naming it, when there is none."""
    require_tool(find_pgbouncer() is not None, NOT_INSTALLED)
    bouncer = PgBouncer(pg_admin_url, tmp_path_factory.mktemp("pgbouncer")).start()
    yield bouncer
    bouncer.stop()

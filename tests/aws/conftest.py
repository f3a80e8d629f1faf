"""PgBouncer in transaction mode (the stand-in for RDS Proxy) in front of the session's server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.pgbouncer import NOT_INSTALLED, PgBouncer, find_pgbouncer
from shared.db_roles import LOGIN_ROLES
from tests.conftest import require_tool


@pytest.fixture(scope="session")
def pgbouncer(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    """A PgBouncer child process for the session; the tests fail, naming it, when there is none. The
    functions' own roles log in as they do at RDS Proxy, with an IAM token (which PgBouncer takes unchecked)."""
    require_tool(find_pgbouncer() is not None, NOT_INSTALLED)
    bouncer = PgBouncer(pg_admin_url, tmp_path_factory.mktemp("pgbouncer"), iam_users=LOGIN_ROLES.values()).start()
    yield bouncer
    bouncer.stop()

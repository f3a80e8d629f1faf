"""Applies the schema migrations on deploy (invoked once per deployment by the CDK trigger).

The first connection is retried for a bounded time: on a stack's first deployment the trigger
runs moments after the proxy, its target and the Secrets Manager endpoint report complete, and
private DNS or the proxy's registration of its target can lag behind that. This is the one
function where waiting at cold start is right: nothing queues behind it, and giving up fails the
deployment, which rolls back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import App, bootstrap
from shared.domain import TransientError
from shared.migrate import MIGRATION_STATEMENT_TIMEOUT_MS, migrate
from shared.observability import logger

# Well inside the function's 300 s timeout, leaving the migrations themselves most of it.
CONNECT_DEADLINE_S = 90.0
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 10.0
# Kept from the migrations' timeout for what follows them: the commit, ending the pooled sessions, the
# answer to the deployment's trigger. A stuck migration then fails with PostgreSQL's error in the log,
# and the deployment rolls back, instead of a Lambda timeout.
FINISH_MARGIN_MS = 15_000


def connect_with_retry(
    app: App,
    *,
    deadline_s: float = CONNECT_DEADLINE_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Opens the app's database connection, retrying with doubling delays until `deadline_s`;
    returns the number of attempts. The last failure is raised once the deadline has passed."""
    started, delay, attempt = clock(), FIRST_DELAY_S, 0
    while True:
        attempt += 1
        try:
            app.db.fetch_one("SELECT 1")
            return attempt
        except (TransientError, GetParameterError) as exc:
            remaining = deadline_s - (clock() - started)
            if remaining <= 0:
                raise
            logger.warning("database not reachable yet", attempt=attempt, error_type=type(exc).__name__)
            sleep(min(delay, remaining))
            delay = min(2 * delay, MAX_DELAY_S)


def migration_timeout_ms(remaining_ms: int) -> int:
    """The migrations' statement and transaction timeout: what the function has left after connecting
    (up to CONNECT_DEADLINE_S of it), less the margin, and never more than MIGRATION_STATEMENT_TIMEOUT_MS."""
    return max(1_000, min(MIGRATION_STATEMENT_TIMEOUT_MS, remaining_ms - FINISH_MARGIN_MS))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    app = bootstrap()
    try:
        attempts = connect_with_retry(app)
        timeout_ms = migration_timeout_ms(context.get_remaining_time_in_millis())
        applied = migrate(app.db, statement_timeout_ms=timeout_ms)
    finally:
        # No client connection outlives the deployment's run: RDS Proxy would keep it until its idle
        # client timeout, and the next deployment's container needs none of it.
        app.db.close()
    logger.info("migrations applied", applied=applied, connect_attempts=attempts, statement_timeout_ms=timeout_ms)
    return {"applied": applied}

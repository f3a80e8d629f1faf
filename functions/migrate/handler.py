"""Applies the schema migrations on deploy (invoked once per deployment by the CDK trigger)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import bootstrap
from shared.migrate import migrate
from shared.observability import logger


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    applied = migrate(bootstrap().db)
    logger.info("migrations applied", applied=applied)
    return {"applied": applied}

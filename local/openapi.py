"""The API's OpenAPI document, generated from the handlers' own resolvers (their routes, summaries
and declared responses) and served by the local API at GET /openapi.json."""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

API_FUNCTIONS = ("enqueue", "status")
TITLE = "Payment Queue"
VERSION = "1"
DESCRIPTION = (
    "Queue payments, follow their jobs, and (with the operator scope) watch the queue. Every route "
    'needs `Authorization: Bearer <JWT>`; errors are always `{"error": {"code", "message"}}`.'
)


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for function in API_FUNCTIONS:
        app: APIGatewayHttpResolver = importlib.import_module(f"functions.{function}.handler").app
        schema = app.get_openapi_schema(
            title=TITLE,
            version=VERSION,
            description=DESCRIPTION,
            security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},  # type: ignore[dict-item]
            security=[{"bearer": []}],
        ).model_dump(mode="json", by_alias=True, exclude_none=True)
        if not merged:
            merged = schema
            continue
        for path, operations in schema.get("paths", {}).items():  # one path, methods on both functions
            merged["paths"].setdefault(path, {}).update(operations)
        merged.setdefault("components", {}).setdefault("schemas", {}).update(
            schema.get("components", {}).get("schemas", {})
        )
    return merged

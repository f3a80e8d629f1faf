"""The local stand-in for API Gateway's HTTP API: JWT authorizer, routes, API Gateway v2 events.

Each API process is one "container": it runs the real Lambda handlers one event at a time, as a
Lambda container does (Powertools' resolver keeps the current event on the app object, so it must
not serve two requests at once), on the event loop itself, which parses the next requests between
two invocations. (A handler thread, which lets parsing overlap the database waits, measured
~7% more CPU per request and ~10% fewer requests a second from one process.) `make run` starts
PQ_API_WORKERS such processes on one port, each with its own database connection and its own
listening socket (SO_REUSEPORT, so its own accept queue), which the supervisor binds and hands
over after checking the port is free: a second run finds the port taken instead of joining it.
"""

from __future__ import annotations

import base64
import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from local.auth import LocalIssuer, TokenError
from local.lambda_shim import LocalContext, http_api_event

STATIC = Path(__file__).resolve().parent / "static"
# Past this aiohttp refuses the body itself; the handlers' own, smaller limit answers below it.
MAX_REQUEST_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    route_key: str
    function: str
    operator: bool


ROUTES = (
    Route("POST", re.compile(r"^/v1/payments$"), "POST /v1/payments", "enqueue", False),
    Route("GET", re.compile(r"^/v1/payments/(?P<job_id>[^/]+)$"), "GET /v1/payments/{job_id}", "status", False),
    Route("GET", re.compile(r"^/v1/queue/status$"), "GET /v1/queue/status", "status", True),
    Route("GET", re.compile(r"^/v1/metrics$"), "GET /v1/metrics", "status", True),
    Route("GET", re.compile(r"^/health/db$"), "GET /health/db", "status", True),
    Route("POST", re.compile(r"^/v1/dlq/redrive$"), "POST /v1/dlq/redrive", "status", True),
)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


_handlers: dict[str, Any] = {}


def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
    """The function's real handler with a Lambda-like context."""
    handler = _handlers.get(function)
    if handler is None:
        handler = importlib.import_module(f"functions.{function}.handler").handler
        _handlers[function] = handler
    result: dict[str, Any] = handler(event, LocalContext(function_name=f"payment-queue-{function}"))
    return result


class LocalApi:
    def __init__(self, issuer: LocalIssuer, operator_scope: str) -> None:
        self.issuer = issuer
        self.operator_scope = operator_scope

    def _authorize(self, request: web.Request, route: Route) -> tuple[dict[str, Any], list[str] | None]:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise PermissionError("missing bearer token")
        try:
            claims = self.issuer.verify(token.strip())
        except TokenError as exc:
            raise PermissionError(str(exc)) from None
        scopes = str(claims.get("scope", "")).split()
        if route.operator:
            if self.operator_scope not in scopes:
                raise LookupError(self.operator_scope)
            return claims, scopes
        return claims, None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/.well-known/jwks.json":
            return web.json_response(self.issuer.jwks())
        if path == "/openapi.json":  # generated from the handlers (local/openapi.py)
            from local.openapi import document

            return web.json_response(document())
        matching = [(r, m) for r in ROUTES if (m := r.pattern.match(path))]
        if not matching:
            return _error(404, "route_not_found", "no such route")
        found = next(((r, m) for r, m in matching if r.method == request.method), None)
        if found is None:
            allowed = ", ".join(sorted({r.method for r, _ in matching}))
            return _error(405, "method_not_allowed", f"use {allowed}", {"Allow": allowed})
        route, match = found
        try:
            claims, scopes = self._authorize(request, route)
        except PermissionError as exc:
            return _error(
                401,
                "unauthorized",
                f"a valid bearer token is required ({exc})",
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        except LookupError as exc:
            return _error(403, "forbidden", f"this route needs the {exc.args[0]!r} scope")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "payload_too_large", "request body is too large")
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        event = http_api_event(
            method=request.method,
            path=path,
            route_key=route.route_key,
            query=request.query_string,
            headers=headers,
            body=body,
            claims=claims,
            scopes=scopes,
            path_parameters=match.groupdict() or None,
            source_ip=request.remote or "127.0.0.1",
        )
        try:
            result = invoke(route.function, event)
        except Exception:  # what API Gateway answers when the function itself fails
            return _error(500, "internal_error", "internal error")
        return _to_response(result)


def _to_response(result: dict[str, Any]) -> web.Response:
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    else:
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    headers = {k: v for k, v in (result.get("headers") or {}).items() if k.lower() != "content-length"}
    return web.Response(status=int(result.get("statusCode", 200)), body=payload, headers=headers)


def build_app(api: LocalApi) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    if STATIC.is_dir():
        app.router.add_static("/static/", STATIC)
    # [\s\S], not `.`: a path with a (decoded) line break must reach our JSON 404 too.
    app.router.add_route("*", r"/{tail:[\s\S]*}", api.handle)

    return app


def main() -> None:
    import argparse
    import socket

    from local.config import LocalSettings
    from shared.settings import get_settings

    parser = argparse.ArgumentParser(description="the local API (make run starts several)")
    parser.add_argument("--fd", type=int, help="a listening socket the supervisor bound (local/run.py)")
    args = parser.parse_args()
    local = LocalSettings()
    issuer = LocalIssuer(local.data_dir / "jwt" / "signing-key.pem", local.jwt_issuer, local.jwt_audience)
    api = LocalApi(issuer, get_settings().operator_scope)
    # Import the handlers before the first request, as a warm container has them.
    for function in ("enqueue", "status"):
        importlib.import_module(f"functions.{function}.handler")
    # Alone, it binds the port itself and, like any server, fails on a busy one.
    where: dict[str, Any] = (
        {"sock": socket.socket(fileno=args.fd)}
        if args.fd is not None
        else {"host": local.api_host, "port": local.api_port, "backlog": 4096}
    )
    web.run_app(build_app(api), print=None, access_log=None, handle_signals=True, **where)


if __name__ == "__main__":
    main()

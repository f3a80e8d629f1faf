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

import asyncio
import base64
import contextlib
import gc
import importlib
import json
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import LineTooLong

from local.auth import LocalIssuer, TokenError, token_scopes
from local.lambda_shim import LocalContext, http_api_event
from shared.http import error_body
from shared.routes import ROUTES as API_ROUTES

STATIC = Path(__file__).resolve().parent / "static"
# Past this aiohttp refuses the body itself; the handlers' own, smaller limit answers below it.
MAX_REQUEST_BYTES = 2 * 1024 * 1024
# A body not fully sent by then is refused and its connection closed: a client that opens many
# requests and trickles their bodies must not hold the API's connections (our number: our
# bodies are a few dozen bytes, and a real client sends them in one packet).
BODY_READ_TIMEOUT_S = 5.0
# The same for the request line and headers of a connection's first request, once it has begun.
HEADER_READ_TIMEOUT_S = 5.0
# A connection that has sent nothing at all yet: in a flash sale a client (or this machine) may be
# seconds behind its own connect, so it gets as long as a load balancer's default idle timeout.
IDLE_CONNECTION_TIMEOUT_S = 60.0
# Connections a listening socket holds before the process accepts them: a sale's shoppers connect at once, and
# a SYN the kernel drops is sent again only after 1 s, then 3 s, 7 s (TCP's retransmission backoff). Capped by
# net.core.somaxconn (4096 on current kernels). Each API process has its own socket (SO_REUSEPORT).
LISTEN_BACKLOG = 4096
# What `Server` says: no library or version for a scanner to look up.
SERVER = "payment-queue-local"
# The connection settings of every API process (aiohttp's RequestHandler arguments):
PROTOCOL: dict[str, Any] = {
    # API Gateway HTTP APIs pass a request body on as it came: payload compression
    # (Content-Encoding: gzip/deflate decoded before the integration) is a REST API feature
    # ("Payload compression for REST APIs in API Gateway", under "Optimize performance of REST
    # APIs" in the API Gateway developer guide). So the handler sees the compressed bytes, and
    # refuses them as it refuses any body that is not JSON.
    "auto_decompress": False,
    # After answering a request whose body is not all read (401, 413, a timeout), close at once
    # instead of reading the rest for aiohttp's default 10 s.
    "lingering_time": 0,
}

log = logging.getLogger("payment_queue.local_api")

# The pages' Content-Security-Policy (docs/pages.md): our own files, plus what each gateway's checkout
# script needs. Cashfree publishes its list (npm @cashfreepayments/cashfree-js, "Content Security
# Policy": script-src sdk.cashfree.com; frame-src sdk, api, sandbox, payments and payments-test
# .cashfree.com; connect-src api.cashfree.com). Razorpay publishes none; its Checkout opens its page from
# api.razorpay.com in a frame. A script from any other origin (the simulator's stand-ins) may frame its
# own origin only.
GATEWAY_PAGE_SOURCES: dict[str, dict[str, tuple[str, ...]]] = {
    "https://checkout.razorpay.com": {
        "frame-src": ("https://api.razorpay.com", "https://checkout.razorpay.com"),
        "connect-src": ("https://api.razorpay.com",),
    },
    "https://sdk.cashfree.com": {
        "frame-src": (
            "https://sdk.cashfree.com",
            "https://api.cashfree.com",
            "https://sandbox.cashfree.com",
            "https://payments.cashfree.com",
            "https://payments-test.cashfree.com",
        ),
        "connect-src": ("https://api.cashfree.com",),
    },
}


def page_policy(script_urls: tuple[str, ...]) -> str:
    """The pages' CSP for the gateways' checkout scripts at these URLs."""
    sources: dict[str, list[str]] = {"script-src": ["'self'"], "frame-src": [], "connect-src": ["'self'"]}
    for url in script_urls:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        sources["script-src"].append(origin)
        known = GATEWAY_PAGE_SOURCES.get(origin, {"frame-src": (origin,)})
        for directive, allowed in known.items():
            sources[directive] += [a for a in allowed if a not in sources[directive]]
    frames = " ".join(sources["frame-src"]) or "'none'"
    return "; ".join(
        [
            "default-src 'none'",
            "script-src " + " ".join(dict.fromkeys(sources["script-src"])),
            "style-src 'self'",
            "connect-src " + " ".join(sources["connect-src"]),
            "img-src 'self' data:",
            "frame-src " + frames,
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


# Protocol errors by the status aiohttp's parser gives them: our code and a message that never
# repeats what the client sent (aiohttp's own text quotes the offending header, token included).
_PROTOCOL_ERRORS = {
    400: ("bad_request", "the request is not valid HTTP/1.1"),
    413: ("payload_too_large", "request body is too large"),
    431: ("headers_too_large", "the request line or a header is too long"),
}


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    route_key: str
    function: str
    scope: str | None  # None: no bearer token (a gateway's webhook, verified by its HMAC in the handler)
    shared_cache_s: int = 0  # answered from the shared cache for up to this long (shared.routes)


@dataclass(frozen=True)
class _Cached:
    expires_at: float
    stored_at: float
    status: int
    body: bytes
    headers: dict[str, str]


_MAX_AGE = re.compile(r"(?:^|,)\s*max-age=(\d+)\s*(?:,|$)")


def _shared_max_age(headers: dict[str, str], ceiling_s: int) -> int:
    """Seconds a shared cache may keep an answer, as CloudFront reads it: the origin's Cache-Control
    max-age if it says public, capped by the behaviour's maximum TTL; 0 for anything else."""
    control = next((v for k, v in headers.items() if k.lower() == "cache-control"), "").lower()
    if "public" not in control or "no-store" in control or "private" in control:
        return 0
    found = _MAX_AGE.search(control)
    return min(ceiling_s, int(found.group(1))) if found else 0


def _pattern(path: str) -> re.Pattern[str]:
    """API Gateway's `{name}` path parameters as named groups (one path segment each)."""
    return re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")


# The same table the CDK app routes from, so the scopes cannot drift apart.
ROUTES = tuple(Route(r.method, _pattern(r.path), r.key, r.function, r.scope, r.shared_cache_s) for r in API_ROUTES)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """What API Gateway answers itself, before any function runs, in the functions' error shape."""
    return web.json_response(error_body(code, message), status=status, headers=headers)


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
    """page_csp: the pages' Content-Security-Policy (page_policy); clock: for the shared cache's ages
    (tests hold it still)."""

    def __init__(
        self, issuer: LocalIssuer, page_csp: str = page_policy(()), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.issuer = issuer
        self.page_csp = page_csp
        # The stand-in for CloudFront in front of the shared routes (GET /v1/queue/now-serving): one
        # answer per path (a query string neither keys it nor reaches the function), kept as long as its
        # Cache-Control allows, so that however many shoppers poll, the function and the database see one
        # request a second per API process.
        self._shared: dict[str, _Cached] = {}
        self._clock = clock

    def _authorize(self, request: web.Request, route: Route) -> tuple[dict[str, Any], list[str]]:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise PermissionError("missing bearer token")
        try:
            claims = self.issuer.verify(token.strip())
        except TokenError as exc:
            raise PermissionError(str(exc)) from None
        # Every route requires its scope, as the HTTP API's routes do (AuthorizationScopes): a
        # valid token without it is refused with 403 before any function runs.
        scopes = token_scopes(claims)
        if route.scope not in scopes:
            raise LookupError(route.scope)
        return claims, scopes

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
        claims: dict[str, Any] | None = None
        scopes: list[str] | None = None
        try:
            if route.scope is not None:
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
        body = await _read_body(request)
        if isinstance(body, web.Response):
            return body
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value

        # A shared figure comes through CloudFront, whose cache policy (infra/components/waiting.py) keys on
        # the path alone and so sends the origin no query string ("CachePolicyQueryStringsConfig": none).
        shared = bool(route.shared_cache_s) and request.method == "GET"

        def event() -> dict[str, Any]:
            return http_api_event(
                method=request.method,
                path=path,
                route_key=route.route_key,
                query="" if shared else request.query_string,
                headers=headers,
                body=body,
                claims=claims,
                scopes=scopes,
                path_parameters=match.groupdict() or None,
                source_ip=request.remote or "127.0.0.1",
            )

        if shared:
            return self._from_shared_cache(route, request, event)
        return _invoke(route, event())

    def _from_shared_cache(
        self, route: Route, request: web.Request, event: Callable[[], dict[str, Any]]
    ) -> web.Response:
        """A fresh stored answer (with its Age, as CloudFront sends it), or the function's, stored: the
        function's event is built only then."""
        key = request.path  # the path alone, as CloudFront keys it: one entry per shared route, however asked
        now = self._clock()
        cached = self._shared.get(key)
        if cached is None or now >= cached.expires_at:
            response = _invoke(route, event())
            keep_s = _shared_max_age(dict(response.headers), route.shared_cache_s) if response.status == 200 else 0
            if not keep_s:
                return response
            assert response.body is None or isinstance(response.body, bytes)
            cached = _Cached(now + keep_s, now, response.status, response.body or b"", dict(response.headers))
            self._shared[key] = cached
        age = {"Age": str(int(now - cached.stored_at))}
        return web.Response(status=cached.status, body=cached.body, headers=cached.headers | age)


def _invoke(route: Route, event: dict[str, Any]) -> web.Response:
    try:
        result = invoke(route.function, event)
    except Exception:  # what API Gateway answers when the function itself fails
        return _error(500, "internal_error", "internal error")
    return _to_response(result)


async def _read_body(request: web.Request) -> bytes | web.Response:
    """The request's body, or the answer refusing it (too large, or too slow to arrive)."""
    try:
        if request.content.is_eof():  # it came whole with the headers (ours are a few dozen bytes)
            return await request.read()
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _closing(_error(413, "payload_too_large", "request body is too large"))
    except TimeoutError:
        message = f"the request body did not arrive within {BODY_READ_TIMEOUT_S:.0f} s"
        return _closing(_error(408, "request_timeout", message))


def _closing(response: web.Response) -> web.Response:
    response.force_close()
    return response


class _Handler(web_protocol.RequestHandler):
    """aiohttp's connection handler with our answers to what never reaches a route."""

    _pq_received = False
    _pq_next_head_deadline = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # A client that begins its first request and never finishes the headers loses the connection.
        asyncio.get_running_loop().call_later(HEADER_READ_TIMEOUT_S, self._headers_deadline, transport)

    def data_received(self, data: bytes) -> None:
        self._pq_received = True
        # Bytes while no request is being handled begin a keep-alive connection's next request: its
        # headers get the same time as the first one's, or a client trickling them would hold the
        # connection for ever (aiohttp's keep-alive timeout only covers a connection that sends nothing).
        between = self._request_count > 0 and not self._request_in_progress and not self._messages
        before = self._request_count
        super().data_received(data)
        if between and self._request_count == before and not self._pq_next_head_deadline:
            self._pq_next_head_deadline = True
            asyncio.get_running_loop().call_later(HEADER_READ_TIMEOUT_S, self._next_head_deadline, before)

    def _next_head_deadline(self, count: int) -> None:
        self._pq_next_head_deadline = False
        transport = self.transport
        if self._request_count == count and transport is not None and not transport.is_closing():
            transport.close()

    def _headers_deadline(self, transport: asyncio.BaseTransport, idle: bool = False) -> None:
        if self._request_count or transport.is_closing():
            return
        if self._pq_received or idle:
            transport.close()
        else:  # nothing sent yet: a slow client, not a half-sent request
            wait = IDLE_CONNECTION_TIMEOUT_S - HEADER_READ_TIMEOUT_S
            asyncio.get_running_loop().call_later(wait, self._headers_deadline, transport, True)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Protocol errors (bad request line or header, conflicting lengths) and faults: our JSON
        error shape, without the client's bytes in the answer or in the log."""
        if request.writer.output_size > 0:  # an answer is half sent: nothing more can be said
            raise ConnectionError("response already started")
        if isinstance(exc, LineTooLong):  # aiohttp says 400; RFC 6585 has a status of its own for it
            status = 431
        if status >= 500:
            log.error("request failed", exc_info=exc)
            code, text = "internal_error", "internal error"
        else:
            log.info("refused a malformed request: %s (%d)", type(exc).__name__, status)
            code, text = _PROTOCOL_ERRORS.get(status, _PROTOCOL_ERRORS[400])
        response = _closing(_error(status, code, text))
        response.headers["Server"] = SERVER
        return response


class _Server(web.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    """An AppRunner whose server uses _Handler for every connection."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            **self._kwargs,
        )


async def _no_version(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER


# What aiohttp itself answers (its static files, a target no route can match) in our error shape: the
# code for its status, and a message that repeats nothing the client sent.
_HTTP_ERRORS = {
    403: ("forbidden", "not allowed"),
    404: ("route_not_found", "no such route"),
    405: ("method_not_allowed", "method not allowed"),
}


def _http_error(status: int) -> web.Response:
    code, text = _HTTP_ERRORS.get(status, ("bad_request", "the request cannot be served"))
    return _error(status, code, text)


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(exc.status)
    return response


def _static_files() -> Any:
    """GET /static/<name>: the pages' files, by name, nothing else (no directory, no listing); what is
    not one of them is our JSON 404 (aiohttp's static route answered a bare 403 or an empty 404)."""
    files = {path.name: path for path in STATIC.iterdir() if path.is_file()} if STATIC.is_dir() else {}

    async def serve_file(request: web.Request) -> web.StreamResponse:
        found = files.get(request.match_info["name"])
        if found is None:
            return _http_error(404)
        return web.FileResponse(found)

    return serve_file


def _page_headers(api: LocalApi) -> Any:
    async def add(request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith("/static/"):
            response.headers["Content-Security-Policy"] = api.page_csp
            response.headers["X-Content-Type-Options"] = "nosniff"

    return add


def _to_response(result: dict[str, Any]) -> web.Response:
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    else:
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    headers = {k: v for k, v in (result.get("headers") or {}).items() if k.lower() != "content-length"}
    return web.Response(status=int(result.get("statusCode", 200)), body=payload, headers=headers)


def build_app(api: LocalApi) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[_json_errors])
    app.on_response_prepare.append(_no_version)
    app.on_response_prepare.append(_page_headers(api))
    app.router.add_get(r"/static/{name:[\s\S]*}", _static_files())
    # [\s\S], not `.`: a path with a (decoded) line break must reach our JSON 404 too.
    app.router.add_route("*", r"/{tail:[\s\S]*}", api.handle)

    return app


async def serve(app: web.Application, sock: socket.socket | None, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM (web.run_app's loop, with _Runner's protocol handling)."""
    runner = _Runner(app, access_log=None, handle_signals=True, **PROTOCOL)
    await runner.setup()
    try:
        # SockSite listens again on the socket it is handed, with its own backlog (aiohttp's default, 128):
        # it must be given ours, or 5,000 shoppers connecting at once overflow it.
        site = (
            web.SockSite(runner, sock, backlog=LISTEN_BACKLOG)
            if sock is not None
            else web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG)
        )
        await site.start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    import argparse

    from local.config import LocalSettings
    from shared.settings import Settings

    parser = argparse.ArgumentParser(description="the local API (make run starts several)")
    parser.add_argument("--fd", type=int, help="a listening socket the supervisor bound (local/run.py)")
    args = parser.parse_args()
    local = LocalSettings()
    issuer = LocalIssuer(local.data_dir / "jwt" / "signing-key.pem", local.jwt_issuer, local.jwt_audience)
    settings = Settings()
    api = LocalApi(issuer, page_policy((settings.razorpay_checkout_script_url, settings.cashfree_sdk_url)))
    # Import the handlers before the first request, as a warm container has them.
    for function in ("enqueue", "status"):
        importlib.import_module(f"functions.{function}.handler")
    # Alone, it binds the port itself and, like any server, fails on a busy one.
    sock = socket.socket(fileno=args.fd) if args.fd is not None else None
    # What start-up made lives as long as the process: out of the collector's way (local/workers.py).
    gc.freeze()
    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        asyncio.run(serve(build_app(api), sock, local.api_host, local.api_port))


if __name__ == "__main__":
    main()

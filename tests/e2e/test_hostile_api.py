"""Hostile input against the running local API (its JWT authorizer included): a table of bad
requests that each get their documented 4xx and change nothing, authorization, schemathesis fuzzing
against the OpenAPI document generated from the handlers, and no secret or token in any log."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from local.auth import KID, LocalIssuer
from local.gateway_demo import SIM_DEFAULTS
from local.openapi import document
from local.seed import ensure_pending_order
from shared.db import Database
from shared.routes import PAYMENTS_SCOPE
from shared.settings import Settings
from tests.conftest import TEMPLATE, _admin_exec, _url
from tests.e2e.conftest import Runtime, launch

pytestmark = pytest.mark.e2e

OPERATOR = Settings().operator_scope
USER, OTHER = "demo-user-1", "demo-user-2"
JWT_PATTERN = re.compile(r"eyJ[\w-]{5,}\.eyJ[\w-]{5,}\.[\w-]+")


@pytest.fixture(scope="module")
def rt(pg_admin_url: str, template_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """One runtime for the module, logging at DEBUG so the secrets test sees everything."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    _admin_exec(pg_admin_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    try:
        with launch(
            _url(pg_admin_url, name), tmp_path_factory.mktemp("hostile"), POWERTOOLS_LOG_LEVEL="DEBUG"
        ) as runtime:
            yield runtime
    finally:
        _admin_exec(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def send(
    rt: Runtime,
    method: str,
    path: str,
    token: str | None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(rt.base + path, data=body, method=method, headers=headers or {})
    if token is not None:
        req.add_header("Authorization", token if " " in token else f"Bearer {token}")
    if body is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def snapshot(db: Database) -> dict[str, Any]:
    """Row counts and sums of every table a request could touch, and of both queues."""
    row = db.fetch_one(
        """SELECT (SELECT count(*) FROM payment_jobs) jobs,
                  (SELECT count(*) FROM payment_jobs WHERE status <> 'queued') jobs_moved,
                  (SELECT count(*) || '/' || coalesce(sum(amount_paise), 0) FROM payment_transactions) payments,
                  (SELECT count(*) || '/' || coalesce(sum(amount_paise), 0) FROM wallet_transactions) wallet_txs,
                  (SELECT coalesce(sum(balance_paise), 0) FROM wallets) balances,
                  (SELECT coalesce(sum(stock), 0) FROM products) stock,
                  (SELECT count(*) FROM orders) orders,
                  (SELECT count(*) FROM orders WHERE order_status = 'paid') paid_orders,
                  (SELECT count(*) FROM order_items) order_items,
                  (SELECT count(*) FROM cart_items) cart_items,
                  (SELECT count(*) FROM users) users,
                  (SELECT count(*) FROM outbox_events) events,
                  (SELECT count(*) FROM pgmq.q_payments) queued,
                  (SELECT count(*) FROM pgmq.q_payments_dlq) dead"""
    )
    assert row is not None
    return row


def pending_order(db: Database, user: str) -> int:
    row = db.fetch_one("SELECT id FROM orders WHERE user_id = %s AND order_status = 'pending' ORDER BY id", (user,))
    assert row is not None
    return int(row["id"])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def tokens(rt: Runtime, tmp: Path) -> dict[str, str | None]:
    """Every kind of token the table uses, the bad ones made the ways attackers make them."""
    local_key = rt.env["PQ_DATA_DIR"] + "/jwt/signing-key.pem"
    iss, aud = rt.issuer.issuer, rt.issuer.audience
    now = int(time.time())
    private = Path(local_key).read_bytes()
    public = rt.issuer.jwks()["keys"][0]
    unsigned = (
        _b64(b'{"alg":"none","typ":"JWT"}')
        + "."
        + _b64(json.dumps({"sub": USER, "iss": iss, "aud": aud, "exp": now + 600}).encode())
        + "."
    )
    hs_header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    hs_body = _b64(json.dumps({"sub": USER, "iss": iss, "aud": aud, "exp": now + 600}).encode())
    # Algorithm confusion: HMAC keyed with the public key's JWK as the verifier might read it.
    hs_sig = _b64(hmac.new(json.dumps(public).encode(), f"{hs_header}.{hs_body}".encode(), hashlib.sha256).digest())
    return {
        "user": rt.issuer.issue(USER),
        "other": rt.issuer.issue(OTHER),
        "none": None,
        "empty": "Bearer ",
        "basic": "Basic " + base64.b64encode(b"demo-user-1:password").decode(),
        "garbage": "not.a.jwt",
        "forged": LocalIssuer(tmp / "attacker.pem", iss, aud).issue(USER),
        "expired": rt.issuer.issue(USER, ttl_s=-60),
        "wrong_audience": LocalIssuer(Path(local_key), iss, "someone-else").issue(USER),
        "wrong_issuer": LocalIssuer(Path(local_key), "evil-issuer", aud).issue(USER),
        "alg_none": unsigned,
        "alg_hs256": f"{hs_header}.{hs_body}.{hs_sig}",
        "no_subject": jwt.encode(
            {"iss": iss, "aud": aud, "exp": now + 600}, private, algorithm="RS256", headers={"kid": KID}
        ),
        "tampered": _tamper(rt.issuer.issue(USER)),
    }


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer: dict[str, Any] = json.loads(resp.read())
    return answer


def _tamper(token: str) -> str:
    """The user's own valid token with the subject changed and the signature kept."""
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return f"{head}.{_b64(json.dumps(claims | {'sub': OTHER}).encode())}.{sig}"


def wallet(order: str = "{order}") -> str:
    return '{"order_id": ' + order + ', "method": "wallet"}'


# (name, method, path, token, key, body, status, code); {order}, {theirs}, {their_job} are filled in.
P = "/v1/payments"
BAD = [
    # Malformed JSON and bodies
    ("malformed json", "POST", P, "user", "k", '{"order_id": 1,', 400, "invalid_json"),
    ("empty body", "POST", P, "user", "k", "", 400, "invalid_json"),
    ("json array", "POST", P, "user", "k", "[1, 2]", 400, "invalid_json"),
    ("json string", "POST", P, "user", "k", '"pay me"', 400, "invalid_json"),
    ("json null", "POST", P, "user", "k", "null", 400, "invalid_json"),
    ("json number", "POST", P, "user", "k", "42", 400, "invalid_json"),
    ("deeply nested json", "POST", P, "user", "k", "[" * 5000 + "]" * 5000, 400, "invalid_json"),
    ("byte order mark before json", "POST", P, "user", "k", "\ufeff" + wallet(), 400, "invalid_json"),
    ("not utf-8", "POST", P, "user", "k", b"\xff\xfe\x00{", 400, "invalid_body"),
    (
        "latin-1 body",
        "POST",
        P,
        "user",
        "k",
        '{"order_id": 1, "method": "caf\xe9"}'.encode("latin-1"),
        400,
        "invalid_body",
    ),
    # Wrong types and numbers
    (
        "order_id as string",
        "POST",
        P,
        "user",
        "k",
        '{"order_id": "{order}", "method": "wallet"}',
        422,
        "validation_error",
    ),
    ("order_id float", "POST", P, "user", "k", wallet("1.5"), 422, "validation_error"),
    ("order_id bool", "POST", P, "user", "k", wallet("true"), 422, "validation_error"),
    ("order_id zero", "POST", P, "user", "k", wallet("0"), 422, "validation_error"),
    ("order_id negative", "POST", P, "user", "k", wallet("-7"), 422, "validation_error"),
    ("order_id 2^63 overflows bigint", "POST", P, "user", "k", wallet(str(2**63)), 422, "validation_error"),
    ("order_id past 2^53, not exact in JSON", "POST", P, "user", "k", wallet(str(2**53)), 422, "validation_error"),
    ("order_id huge", "POST", P, "user", "k", wallet("1" + "0" * 4000), 422, "validation_error"),
    ("order_id 1e308", "POST", P, "user", "k", wallet("1e308"), 422, "validation_error"),
    ("order_id NaN", "POST", P, "user", "k", wallet("NaN"), 422, "validation_error"),
    ("order_id Infinity", "POST", P, "user", "k", wallet("-Infinity"), 422, "validation_error"),
    ("order_id null", "POST", P, "user", "k", wallet("null"), 422, "validation_error"),
    ("order_id object", "POST", P, "user", "k", wallet('{"$gt": 0}'), 422, "validation_error"),
    ("missing order_id", "POST", P, "user", "k", '{"method": "wallet"}', 422, "validation_error"),
    ("missing method", "POST", P, "user", "k", '{"order_id": {order}}', 422, "validation_error"),
    ("unknown method", "POST", P, "user", "k", '{"order_id": {order}, "method": "cash"}', 422, "validation_error"),
    (
        "homoglyph method",
        "POST",
        P,
        "user",
        "k",
        '{"order_id": {order}, "method": "wall\u0435t"}',
        422,
        "validation_error",
    ),
    (
        "method with nul",
        "POST",
        P,
        "user",
        "k",
        '{"order_id": {order}, "method": "wallet\\u0000"}',
        422,
        "validation_error",
    ),
    ("lone surrogate", "POST", P, "user", "k", '{"order_id": {order}, "method": "\\ud800"}', 422, "validation_error"),
    (
        "rtl override",
        "POST",
        P,
        "user",
        "k",
        '{"order_id": {order}, "method": "\u202etellaw"}',
        422,
        "validation_error",
    ),
    (
        "extra user_id field",
        "POST",
        P,
        "user",
        "k",
        '{"order_id": {order}, "method": "wallet", "user_id": "demo-user-2"}',
        422,
        "validation_error",
    ),
    (
        "razorpay without its payment",
        "POST",
        P,
        "user",
        "k",
        '{"order_id": {order}, "method": "razorpay"}',
        422,
        "validation_error",
    ),
    (
        "razorpay id injection",
        "POST",
        P,
        "user",
        "k",
        '{"order_id": {order}, "method": "razorpay", "razorpay_payment_id": "pay_1\' OR \'1\'=\'1"}',
        422,
        "bare_gateway_reference",
    ),
    (
        "wallet with a cashfree order",
        "POST",
        P,
        "user",
        "k",
        '{"order_id": {order}, "method": "wallet", "cashfree_order_id": "order_123"}',
        422,
        "validation_error",
    ),
    (
        "sql injection in order_id",
        "POST",
        P,
        "user",
        "k",
        '{"order_id": "1; DROP TABLE wallets; --", "method": "wallet"}',
        422,
        "validation_error",
    ),
    # Sizes
    (
        "body just over 16 KiB",
        "POST",
        P,
        "user",
        "k",
        '{"order_id": 1, "method": "wallet", "pad": "' + "x" * 16_400 + '"}',
        413,
        "payload_too_large",
    ),
    ("1 MB body", "POST", P, "user", "k", '{"pad": "' + "x" * 1_000_000 + '"}', 413, "payload_too_large"),
    ("3 MB body", "POST", P, "user", "k", "x" * 3_000_000, 413, "payload_too_large"),
    # Idempotency keys
    ("missing idempotency key", "POST", P, "user", None, wallet(), 400, "idempotency_key_required"),
    ("blank idempotency key", "POST", P, "user", "   ", wallet(), 400, "idempotency_key_required"),
    ("idempotency key too long", "POST", P, "user", "k" * 256, wallet(), 400, "idempotency_key_invalid"),
    (
        "idempotency key with a non-printable character",
        "POST",
        P,
        "user",
        "k\xa01",
        wallet(),
        400,
        "idempotency_key_invalid",
    ),
    (
        "sql injection in idempotency key",
        "POST",
        P,
        "user",
        "'; DROP TABLE payment_jobs; --",
        wallet("987654321"),
        404,
        "order_not_found",
    ),
    (
        "idempotency key reused with another body",
        "POST",
        P,
        "user",
        "used-key",
        wallet(),
        409,
        "idempotency_key_reused",
    ),
    # Other people's things
    ("another user's order", "POST", P, "user", "k", wallet("{theirs}"), 404, "order_not_found"),
    ("no such order", "POST", P, "user", "k", wallet("987654321"), 404, "order_not_found"),
    ("another user's job", "GET", P + "/{their_job}", "user", None, None, 404, "job_not_found"),
    ("job id not a uuid", "GET", P + "/12345", "user", None, None, 404, "job_not_found"),
    ("job id injection", "GET", P + "/%27%20OR%201%3D1%20--", "user", None, None, 404, "job_not_found"),
    # Tokens
    ("no token", "POST", P, "none", "k", wallet(), 401, "unauthorized"),
    ("empty bearer", "POST", P, "empty", "k", wallet(), 401, "unauthorized"),
    ("basic auth", "POST", P, "basic", "k", wallet(), 401, "unauthorized"),
    ("garbage token", "POST", P, "garbage", "k", wallet(), 401, "unauthorized"),
    ("forged signature", "POST", P, "forged", "k", wallet(), 401, "unauthorized"),
    ("expired token", "POST", P, "expired", "k", wallet(), 401, "unauthorized"),
    ("wrong audience", "POST", P, "wrong_audience", "k", wallet(), 401, "unauthorized"),
    ("wrong issuer", "POST", P, "wrong_issuer", "k", wallet(), 401, "unauthorized"),
    ("alg none", "POST", P, "alg_none", "k", wallet(), 401, "unauthorized"),
    ("alg confusion hs256", "POST", P, "alg_hs256", "k", wallet(), 401, "unauthorized"),
    ("token without subject", "POST", P, "no_subject", "k", wallet(), 401, "unauthorized"),
    ("subject swapped, signature kept", "POST", P, "tampered", "k", wallet(), 401, "unauthorized"),
    ("expired token reading a job", "GET", P + "/{their_job}", "expired", None, None, 401, "unauthorized"),
    # Operator routes without the scope
    ("queue status without operator scope", "GET", "/v1/queue/status", "user", None, None, 403, "forbidden"),
    ("metrics without operator scope", "GET", "/v1/metrics", "user", None, None, 403, "forbidden"),
    ("db health without operator scope", "GET", "/health/db", "user", None, None, 403, "forbidden"),
    ("dlq redrive without operator scope", "POST", "/v1/dlq/redrive", "user", None, "", 403, "forbidden"),
    ("dlq redrive without a token", "POST", "/v1/dlq/redrive", "none", None, "", 401, "unauthorized"),
    # Unknown methods and routes
    ("DELETE a payment", "DELETE", P, "user", None, None, 405, "method_not_allowed"),
    ("PUT a job", "PUT", P + "/{their_job}", "user", None, "{}", 405, "method_not_allowed"),
    ("GET the payments collection", "GET", P, "user", None, None, 405, "method_not_allowed"),
    ("POST to queue status", "POST", "/v1/queue/status", "user", None, "", 405, "method_not_allowed"),
    ("unknown route", "GET", "/v2/payments", "user", None, None, 404, "route_not_found"),
    ("admin probe", "GET", "/admin/.env", "none", None, None, 404, "route_not_found"),
]


@pytest.fixture(scope="module")
def world(rt: Runtime, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tokens, the other user's order and job, and a key already used; then the queue drained."""
    made = tokens(rt, tmp_path_factory.mktemp("keys"))
    their_order = pending_order(rt.db, OTHER)
    status, theirs = send(rt, "POST", P, made["other"], wallet(str(their_order)).encode(), {"Idempotency-Key": "t1"})
    assert status == 202, theirs
    mine = pending_order(rt.db, USER)
    status, used = send(rt, "POST", P, made["user"], wallet(str(mine)).encode(), {"Idempotency-Key": "used-key"})
    assert status == 202, used
    deadline = time.monotonic() + 30
    while rt.db.fetch_one("SELECT count(*) n FROM payment_jobs WHERE finished_at IS NULL")["n"]:  # type: ignore[index]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return {
        "tokens": made,
        # A pending order of the user's other than the one "used-key" paid.
        "order": str(ensure_pending_order(rt.db, USER)),
        "theirs": str(their_order),
        "their_job": theirs["job_id"],
    }


@pytest.mark.parametrize(
    ("name", "method", "path", "token", "key", "body", "status", "code"), BAD, ids=[b[0] for b in BAD]
)
def test_bad_request_gets_its_documented_4xx_and_changes_nothing(
    rt: Runtime,
    world: dict[str, Any],
    name: str,
    method: str,
    path: str,
    token: str,
    key: str | None,
    body: str | bytes | None,
    status: int,
    code: str,
) -> None:
    # Given the database as it is
    fill = {k: world[k] for k in ("order", "theirs", "their_job")}
    before = snapshot(rt.db)
    raw = (
        body
        if isinstance(body, bytes)
        else None
        if body is None
        else body.replace("{order}", fill["order"]).replace("{theirs}", fill["theirs"]).encode("utf-8", "surrogatepass")
    )
    # When the hostile request arrives
    got_status, got = send(
        rt,
        method,
        path.format(**fill),
        world["tokens"][token],
        raw,
        {} if key is None else {"Idempotency-Key": key},
    )
    # Then it gets the documented status and code, and nothing changed
    assert (got_status, got["error"]["code"]) == (status, code), (name, got)
    assert got["error"]["message"] and set(got) == {"error"}
    assert snapshot(rt.db) == before, name


def test_the_table_has_at_least_forty_hostile_requests() -> None:
    assert len(BAD) >= 40 and len({b[0] for b in BAD}) == len(BAD)


# --- authorization -----------------------------------------------------------------------------


def test_users_pay_for_and_see_only_their_own(rt: Runtime, world: dict[str, Any]) -> None:
    mine, theirs = world["tokens"]["user"], world["tokens"]["other"]
    # Given a job of the user's
    order = ensure_pending_order(rt.db, USER)
    status, job = send(rt, "POST", P, mine, wallet(str(order)).encode(), {"Idempotency-Key": "authz-1"})
    assert status == 202, job
    # When another user reads it, or pays for the same order
    before = snapshot(rt.db)
    read = send(rt, "GET", f"{P}/{job['job_id']}", theirs)
    pay = send(rt, "POST", P, theirs, wallet(str(order)).encode(), {"Idempotency-Key": "authz-1"})
    # Then both look exactly like missing things, and nothing was recorded
    assert (read[0], read[1]["error"]["code"]) == (404, "job_not_found")
    assert (pay[0], pay[1]["error"]["code"]) == (404, "order_not_found")
    assert snapshot(rt.db)["jobs"] == before["jobs"]
    # And the owner sees the job
    status, own = send(rt, "GET", f"{P}/{job['job_id']}", mine)
    assert status == 200 and own["job_id"] == job["job_id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/queue/status"), ("GET", "/v1/metrics"), ("GET", "/health/db"), ("POST", "/v1/dlq/redrive")],
)
def test_operator_routes_open_only_with_the_operator_scope(rt: Runtime, method: str, path: str) -> None:
    body = b"" if method == "POST" else None
    refused = send(rt, method, path, rt.issuer.issue(USER, scopes=("payments/read",)), body)
    assert (refused[0], refused[1]["error"]["code"]) == (403, "forbidden")
    status, answer = send(rt, method, path, rt.issuer.issue("ops", scopes=(OPERATOR,)), body)
    assert status == 200 and "error" not in answer


def test_the_refund_retry_route_opens_only_with_the_operator_scope_and_names_no_refund_it_does_not_hold(
    rt: Runtime,
) -> None:
    path = "/v1/refunds/123/retry"
    refused = send(rt, "POST", path, rt.issuer.issue(USER, scopes=("payments/read",)), b"")
    assert (refused[0], refused[1]["error"]["code"]) == (403, "forbidden")
    for refund_id in ("123", "not-a-number", "9" * 30):
        status, answer = send(
            rt, "POST", f"/v1/refunds/{refund_id}/retry", rt.issuer.issue("ops", scopes=(OPERATOR,)), b""
        )
        assert (status, answer["error"]["code"]) == (404, "refund_not_found")


def test_the_dlq_drop_route_opens_only_with_the_operator_scope_and_drops_no_job_it_does_not_hold(
    rt: Runtime, world: dict[str, Any]
) -> None:
    refused = send(rt, "POST", f"/v1/dlq/jobs/{world['their_job']}/drop", rt.issuer.issue(USER), b"")
    assert (refused[0], refused[1]["error"]["code"]) == (403, "forbidden")
    operator = rt.issuer.issue("ops", scopes=(OPERATOR,))
    for job_id in ("not-a-uuid", "9" * 300, "00000000-0000-4000-8000-000000000000"):
        status, answer = send(rt, "POST", f"/v1/dlq/jobs/{job_id}/drop", operator, b"")
        assert (status, answer["error"]["code"]) == (404, "job_not_found")
    # A job that has ended is no poison message: refused, and it stays as it ended
    status, answer = send(rt, "POST", f"/v1/dlq/jobs/{world['their_job']}/drop", operator, b"")
    assert (status, answer["error"]["code"]) == (409, "job_not_dead_lettered")
    assert answer["error"]["details"]["job_status"] == "succeeded"


def test_the_operator_scope_does_not_open_a_shoppers_jobs(rt: Runtime, world: dict[str, Any]) -> None:
    # Payment routes require the payments scope, as the deployed routes do: refused before the handler.
    status, body = send(rt, "GET", f"{P}/{world['their_job']}", rt.issuer.issue("ops", scopes=(OPERATOR,)))
    assert (status, body["error"]["code"]) == (403, "forbidden")
    both = rt.issuer.issue("ops", scopes=(PAYMENTS_SCOPE, OPERATOR))
    status, body = send(rt, "GET", f"{P}/{world['their_job']}", both)
    assert (status, body["error"]["code"]) == (404, "job_not_found")


# --- the OpenAPI document and schemathesis ----------------------------------------------------

ROUTES = {
    ("post", "/v1/payments"),
    ("get", "/v1/payments/{job_id}"),
    ("delete", "/v1/payments/{job_id}"),
    ("post", "/v1/checkouts"),
    ("get", "/v1/checkouts/{checkout_id}"),
    ("post", "/v1/webhooks/razorpay"),
    ("post", "/v1/webhooks/cashfree"),
    ("get", "/v1/queue/now-serving"),
    ("get", "/v1/queue/status"),
    ("get", "/v1/metrics"),
    ("get", "/health/db"),
    ("post", "/v1/dlq/redrive"),
    ("post", "/v1/dlq/jobs/{job_id}/drop"),
    ("post", "/v1/refunds/{refund_id}/retry"),
    ("get", "/v1/orders/{order_id}"),
    ("post", "/v1/merchant/orders"),
    ("get", "/v1/merchant/orders"),
    ("post", "/v1/merchant/payments"),
    ("get", "/v1/merchant/payments"),
    ("get", "/v1/merchant/payments/{job_id}"),
    ("post", "/v1/merchant/wallet-adjustments"),
    ("get", "/v1/merchant/wallet"),
    ("get", "/v1/merchant/events"),
    ("post", "/v1/merchant/events/{event_id}/redeliver"),
}


def test_generated_document_lists_every_route_with_its_success_and_error_answers() -> None:
    doc = document()
    assert {(method, path) for path, ops in doc["paths"].items() for method in ops} == ROUTES
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            # Declaring error responses must not drop the success one (a Powertools pitfall).
            assert codes & {"200", "201", "202"}, (method, path)
            # The shared figure takes no token: nothing to refuse one for.
            assert {"401", "500"} - ({"401"} if path == "/v1/queue/now-serving" else set()) <= codes, (method, path)
    post = doc["paths"]["/v1/payments"]["post"]
    # Each route that refuses a sold-out order says so (a review found two that answered it undocumented)
    for path in ("/v1/payments", "/v1/merchant/payments", "/v1/checkouts"):
        assert "sold_out" in doc["paths"][path]["post"]["responses"]["409"]["description"], path
    # Our 422 is the error envelope, not Powertools' HTTPValidationError (whose items need `msg`).
    assert post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert post["requestBody"]["content"]["application/json"]["schema"]["title"] == "PaymentRequest"
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    # Bounds in JSON Schema's own keywords, never pydantic's names for them
    order_id = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]["properties"]["order_id"]
    assert (order_id["exclusiveMinimum"], order_id["maximum"]) == (0, 2**53 - 1)
    assert '"gt"' not in json.dumps(doc) and '"le"' not in json.dumps(doc)
    # The webhooks: no bearer token, the gateway's signature headers and a body
    for gateway, header in (("razorpay", "X-Razorpay-Signature"), ("cashfree", "x-webhook-signature")):
        webhook = doc["paths"][f"/v1/webhooks/{gateway}"]["post"]
        assert webhook["security"] == []
        assert header in {p["name"] for p in webhook["parameters"] if p["in"] == "header" and p["required"]}
        assert webhook["requestBody"]["required"] is True


def test_local_api_serves_the_generated_document(rt: Runtime) -> None:
    with urllib.request.urlopen(rt.base + "/openapi.json", timeout=10) as response:
        assert json.loads(response.read()) == json.loads(json.dumps(document()))


# Every check (schemathesis.toml beside this file says which refusals of valid data are expected).
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(rt: Runtime, tmp_path: Path) -> None:
    # Given a token that is both a shopper with orders and an operator
    token = rt.issuer.issue(USER, scopes=(PAYMENTS_SCOPE, OPERATOR))
    # When schemathesis fuzzes every operation of the served document (valid and invalid data)
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "--config-file",
            str(SCHEMATHESIS_CONFIG),
            "run",
            f"{rt.base}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            "100",
            "--seed",
            "6",
            "--workers",
            "2",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "10",
            "--generation-database",
            "none",
            "--no-color",
        ],
        check=False,
        cwd=tmp_path,  # schemathesis writes its state into the working directory
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Then no answer is a 5xx or differs from the document
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(r"\d+ generated, \d+ passed", result.stdout), result.stdout[-3000:]


# --- secrets ------------------------------------------------------------------------------------


def test_logs_of_a_run_with_gateway_calls_hold_no_gateway_secret_and_no_jwt(rt: Runtime) -> None:
    # Given an order each for Razorpay and Cashfree, its checkout opened and paid at the simulator
    pattern = re.compile(r"opened at the simulator \((http://127\.0\.0\.1:\d+)/_sim/stats\)")
    deadline = time.monotonic() + 30  # printed once make run has opened the demo checkouts
    while not (found := pattern.search(rt.output.read_text())):
        assert time.monotonic() < deadline, rt.output.read_text()
        time.sleep(0.2)
    sim = found.group(1)
    jobs = []
    for user, method in (("demo-user-2", "razorpay"), ("demo-user-3", "cashfree")):
        order = ensure_pending_order(rt.db, user)
        token = rt.issuer.issue(user)
        status, checkout = send(
            rt, "POST", "/v1/checkouts", token, json.dumps({"order_id": order, "method": method}).encode()
        )
        assert status in (200, 201), checkout
        paid = _post(f"{sim}/_sim/{method}/checkout", {"order_id": checkout[method]["order_id"], "outcome": "success"})
        body = {"order_id": order, "method": method}
        if method == "razorpay":
            body |= {k: paid[k] for k in ("razorpay_order_id", "razorpay_payment_id", "razorpay_signature")}
        # When they are paid through the API (a capture at Razorpay, a verification at Cashfree)
        status, job = send(rt, "POST", P, token, json.dumps(body).encode(), {"Idempotency-Key": method})
        assert status == 202, job
        jobs.append(job["job_id"])
    deadline = time.monotonic() + 60
    while True:
        rows = rt.db.fetch_all("SELECT status FROM payment_jobs WHERE id = ANY(%s::uuid[])", (jobs,))
        if all(r["status"] == "succeeded" for r in rows):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)
    # (make run sends the simulator's signed webhooks to the local API's routes, which take no JWT)
    deadline = time.monotonic() + 30
    while rt.db.fetch_one("SELECT count(*) n FROM gateway_webhook_events WHERE gateway_order_id IS NOT NULL")["n"] < 2:  # type: ignore[index]
        assert time.monotonic() < deadline, "no gateway webhook reached the local API"
        time.sleep(0.2)
    time.sleep(1.0)  # the notifier and every process have written their lines
    # Then no log line of any process holds a gateway secret, its basic-auth form, or a JWT
    logs = "\n".join(p.read_text(errors="replace") for p in sorted(rt.logs.glob("*.log")))
    assert "payment processed" in logs and "GatewayCaptures" in logs  # the calls were made, and logged
    secrets = [
        SIM_DEFAULTS["PQ_RAZORPAY_KEY_SECRET"],
        SIM_DEFAULTS["PQ_CASHFREE_CLIENT_SECRET"],
        SIM_DEFAULTS["PQ_RAZORPAY_WEBHOOK_SECRET"],
        base64.b64encode(
            f"{SIM_DEFAULTS['PQ_RAZORPAY_KEY_ID']}:{SIM_DEFAULTS['PQ_RAZORPAY_KEY_SECRET']}".encode()
        ).decode(),
    ]
    for secret in secrets:
        assert secret not in logs
    assert JWT_PATTERN.findall(logs) == []


# --- the protocol's edges: what never reaches a route ----------------------------------------

SECRET_LOOKING = "Bearer eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2VuLXBhcnQ.c2lnbmF0dXJl"


def _connect(rt: Runtime) -> socket.socket:
    # The client's own limit is far past the server's read deadlines (local/api.py HEADER_READ_TIMEOUT_S,
    # BODY_READ_TIMEOUT_S): a connection the server never closes fails _read_all with a timeout, and one it
    # closes is never judged by how fast a busy machine got there.
    host, port = rt.base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=60)


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout if it never does)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _exchange(rt: Runtime, data: bytes) -> tuple[int, dict[str, str], bytes, float]:
    started = time.monotonic()
    with _connect(rt) as sock:
        sock.sendall(data)
        raw = _read_all(sock)
    status, headers, body = _parse(raw)
    return status, headers, body, time.monotonic() - started


def _request_head(method: str, path: str, token: str, extra: str = "", length: int | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
    head += "Idempotency-Key: edge-1\r\nContent-Type: application/json\r\n" + extra
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return (head + "\r\n").encode()


def test_a_half_sent_body_is_refused_and_its_connection_closed_within_seconds(rt: Runtime) -> None:
    # Given twenty clients that each send a payment's headers and half its body, then stall
    token = rt.issuer.issue(USER)
    before = snapshot(rt.db)
    socks = []
    for _ in range(20):
        sock = _connect(rt)
        sock.sendall(_request_head("POST", P, token, length=40) + b'{"order_id": 1,')
        socks.append(sock)
    # When the server's read timeout passes
    answers = [_parse(_read_all(sock)) for sock in socks]
    for sock in socks:
        sock.close()
    # Then every one got our 408 and the server closed its connection, and nothing changed
    for status, headers, body in answers:
        assert status == 408 and headers["content-type"].startswith("application/json")
        assert json.loads(body)["error"]["code"] == "request_timeout"
    assert snapshot(rt.db) == before


def test_headers_never_finished_lose_the_connection_within_seconds(rt: Runtime) -> None:
    with _connect(rt) as sock:
        sock.sendall(b"POST /v1/payments HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bear")
        assert _read_all(sock) == b""


def test_a_keep_alive_connections_next_request_trickled_loses_the_connection_within_seconds(rt: Runtime) -> None:
    # Given a keep-alive connection whose first request was answered
    with _connect(rt) as sock:
        sock.sendall(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        # When its next request's headers begin and never end
        time.sleep(0.2)
        sock.sendall(b"GET /v1/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bear")
        # Then the server answers the first, and closes the connection within seconds
        raw = _read_all(sock)
    assert raw.count(b"HTTP/1.1 ") == 1 and raw.startswith(b"HTTP/1.1 200"), raw[:200]


@pytest.mark.parametrize(
    ("request_text", "status", "code"),
    [
        ("GET /static/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "route_not_found"),
        ("GET /static/nope.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "route_not_found"),
        ("OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "route_not_found"),
    ],
    ids=["static-directory", "static-missing", "options-star"],
)
def test_what_the_server_answers_itself_is_in_our_error_shape(
    rt: Runtime, request_text: str, status: int, code: str
) -> None:
    with _connect(rt) as sock:
        sock.sendall(request_text.encode())
        answered, headers, body = _parse(_read_all(sock))

    assert (answered, headers["content-type"].split(";")[0]) == (status, "application/json")
    assert json.loads(body)["error"]["code"] == code


def test_an_unauthorized_half_sent_body_is_answered_and_closed_at_once(rt: Runtime) -> None:
    # (a server that waited for the rest of the body would answer 408 request_timeout at its read deadline)
    status, _, body, _ = _exchange(rt, _request_head("POST", P, "not.a.jwt", length=1000) + b"{")
    assert (status, json.loads(body)["error"]["code"]) == (401, "unauthorized")


PROTOCOL_ERRORS = [
    (
        "header longer than the server takes",
        f"GET /v1/metrics HTTP/1.1\r\nHost: x\r\nX-Trace: {SECRET_LOOKING}{'a' * 9000}\r\n\r\n",
        {431},
    ),
    (
        "bare CR inside a header",
        f"GET /v1/metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET_LOOKING}\rX-Evil: 1\r\n\r\n",
        {400},
    ),
    (
        "bare LF between headers",
        f"GET /v1/metrics HTTP/1.1\r\nHost: x\nAuthorization: {SECRET_LOOKING}\r\n\r\n",
        {400},
    ),
    (
        "conflicting Content-Length",
        f"POST /v1/payments HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET_LOOKING}\r\n"
        "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        {400},
    ),
    (
        "Content-Length and chunked together",
        f"POST /v1/payments HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET_LOOKING}\r\n"
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
]


@pytest.mark.parametrize(("name", "request_text", "statuses"), PROTOCOL_ERRORS, ids=[e[0] for e in PROTOCOL_ERRORS])
def test_a_protocol_error_gets_our_json_error_and_echoes_nothing(
    rt: Runtime, name: str, request_text: str, statuses: set[int]
) -> None:
    # When a request that is not valid HTTP/1.1 arrives
    status, headers, body, _ = _exchange(rt, request_text.encode("latin-1"))
    # Then it gets a 4xx in our error shape, the connection closes, and nothing it sent comes back
    assert status in statuses, (name, status, body)
    assert headers["content-type"].startswith("application/json"), (name, headers)
    error = json.loads(body)
    assert set(error) == {"error"} and error["error"]["code"] in {"bad_request", "headers_too_large"}, error
    assert SECRET_LOOKING[7:20] not in body.decode() and "X-" not in body.decode(), body
    assert headers["server"] == "payment-queue-local"


def test_no_answer_names_the_server_software_or_its_version(rt: Runtime) -> None:
    for path in ("/v1/metrics", "/static/progress.html", "/nowhere"):
        with (
            urllib.request.urlopen(rt.base + path, timeout=10) if path.startswith("/static") else _quiet(rt, path) as r
        ):
            server = r.headers["Server"]
        assert server == "payment-queue-local", (path, server)


def _quiet(rt: Runtime, path: str) -> Any:
    """An answer, error or not, as a response object."""
    try:
        return urllib.request.urlopen(rt.base + path, timeout=10)
    except urllib.error.HTTPError as err:
        return err


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("expired", "the token has expired"),
        ("wrong_audience", "the token is for another audience"),
        ("wrong_issuer", "the token is from another issuer"),
        ("garbage", "the token is not a well-formed JWT"),
        ("forged", "the token's signature does not verify"),
        ("no_subject", "the token lacks a required claim"),
    ],
)
def test_a_refused_token_is_explained_in_words_not_library_class_names(
    rt: Runtime, world: dict[str, Any], token: str, words: str
) -> None:
    status, body = send(rt, "GET", "/v1/metrics", world["tokens"][token])
    assert status == 401 and words in body["error"]["message"], body
    assert not re.search(r"[A-Z][a-z]+[A-Z][A-Za-z]*Error", body["error"]["message"]), body


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"\x1f\x8b\x08\x00broken"),
        ("deflate", b"\x78\x9cnot deflate"),
        ("gzip", gzip.compress(b'{"order_id": 1, "method": "wallet"}')),
    ],
    ids=["broken gzip", "broken deflate", "valid gzip"],
)
def test_a_compressed_body_reaches_the_handler_undecoded_as_api_gateway_passes_it(
    rt: Runtime, world: dict[str, Any], encoding: str, body: bytes
) -> None:
    # Given a body with a Content-Encoding (HTTP APIs do not decompress request bodies)
    before = snapshot(rt.db)
    # When it is posted
    status, answer = send(
        rt,
        "POST",
        P,
        world["tokens"]["user"],
        body,
        {"Idempotency-Key": f"enc-{uuid.uuid4()}", "Content-Encoding": encoding},
    )
    # Then the handler refuses the bytes as it refuses any body that is not JSON, and nothing changed
    assert status == 400 and answer["error"]["code"] in {"invalid_body", "invalid_json"}, answer
    assert snapshot(rt.db) == before

"""The local API requires each route's scope the way the HTTP API's JWT authorizer does: from the
`scope` or `scp` claim, at least one of the route's scopes, 403 for a valid token without it."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import make_mocked_request

from local.api import ROUTES as LOCAL_ROUTES
from local.api import LocalApi
from local.auth import KID, LocalIssuer, token_scopes
from shared.routes import MERCHANT_SCOPE, OPERATOR_SCOPE, PAYMENTS_SCOPE, ROUTES


@pytest.fixture
def issuer(tmp_path: Path) -> LocalIssuer:
    return LocalIssuer(tmp_path / "key.pem", "test-issuer", "payment-queue")


def _signed(issuer: LocalIssuer, **claims: Any) -> str:
    base = {"sub": "user-1", "iss": issuer.issuer, "aud": issuer.audience, "exp": 4_000_000_000}
    return jwt.encode(base | claims, issuer._private, algorithm="RS256", headers={"kid": KID})


def _call(api: LocalApi, method: str, path: str, token: str) -> tuple[int, dict[str, Any]]:
    async def go() -> tuple[int, dict[str, Any]]:
        request = make_mocked_request(method, path, headers={"Authorization": f"Bearer {token}"})
        response = await api.handle(request)
        return response.status, json.loads(response.body)  # type: ignore[attr-defined]

    return asyncio.run(go())


@pytest.mark.parametrize("route", [r for r in ROUTES if r.scope == PAYMENTS_SCOPE], ids=lambda r: r.key)
def test_a_valid_token_without_the_payments_scope_is_refused_on_payment_routes(issuer: LocalIssuer, route: Any) -> None:
    # Given a token of the right issuer and audience but no scope, as an ID token would be
    token = issuer.issue("user-1", scopes=())
    path = re.sub(r"\{\w+\}", "00000000-0000-0000-0000-000000000000", route.path)

    # When it calls a payment route
    status, body = _call(LocalApi(issuer), route.method, path, token)

    # Then the authorizer answers 403 before any function runs
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert PAYMENTS_SCOPE in body["error"]["message"]


def test_an_operator_token_does_not_open_the_payment_routes(issuer: LocalIssuer) -> None:
    status, _ = _call(LocalApi(issuer), "POST", "/v1/payments", issuer.issue("ops", scopes=(OPERATOR_SCOPE,)))

    assert status == 403


@pytest.mark.parametrize("route", [r for r in ROUTES if r.scope == MERCHANT_SCOPE], ids=lambda r: r.key)
def test_a_shoppers_token_does_not_open_the_merchant_routes(issuer: LocalIssuer, route: Any) -> None:
    # Given a shopper's token (the payments scope): it must never create orders or move wallet money
    path = re.sub(r"\{\w+\}", "00000000-0000-0000-0000-000000000000", route.path)

    status, body = _call(LocalApi(issuer), route.method, path, issuer.issue("user-1"))

    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert MERCHANT_SCOPE in body["error"]["message"]


def test_a_payments_token_does_not_open_the_operator_routes(issuer: LocalIssuer) -> None:
    status, body = _call(LocalApi(issuer), "GET", "/v1/metrics", issuer.issue("user-1"))

    assert (status, body["error"]["code"]) == (403, "forbidden")


@pytest.mark.parametrize(
    "claims",
    [{"scope": f"openid {PAYMENTS_SCOPE}"}, {"scp": PAYMENTS_SCOPE}, {"scp": ["openid", PAYMENTS_SCOPE]}],
    ids=["scope", "scp-string", "scp-list"],
)
def test_the_scope_is_read_from_scope_or_scp_as_api_gateway_reads_it(
    issuer: LocalIssuer, claims: dict[str, Any]
) -> None:
    route = next(r for r in LOCAL_ROUTES if r.function == "enqueue")
    request = make_mocked_request(
        "POST", "/v1/payments", headers={"Authorization": f"Bearer {_signed(issuer, **claims)}"}
    )

    verified, scopes = LocalApi(issuer)._authorize(request, route)

    assert verified["sub"] == "user-1" and PAYMENTS_SCOPE in scopes


def test_token_scopes_reads_nothing_from_a_token_without_scopes() -> None:
    assert token_scopes({"sub": "u"}) == []
    assert token_scopes({"scope": 42}) == []


def test_tokens_carry_the_payments_scope_by_default(issuer: LocalIssuer) -> None:
    assert token_scopes(issuer.verify(issuer.issue("user-1"))) == [PAYMENTS_SCOPE]


def test_make_token_prints_a_payments_token_and_with_operator_both_scopes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from local import token
    from local.config import LocalSettings

    monkeypatch.setenv("PQ_DATA_DIR", str(tmp_path))
    local = LocalSettings()
    issuer = LocalIssuer(local.data_dir / "jwt" / "signing-key.pem", local.jwt_issuer, local.jwt_audience)
    printed = {}
    for flag in ([], ["--operator"]):
        monkeypatch.setattr(sys, "argv", ["token", "--user", "demo-user-2", *flag])
        token.main()
        printed[bool(flag)] = token_scopes(issuer.verify(capsys.readouterr().out.strip()))

    assert printed == {False: [PAYMENTS_SCOPE], True: [PAYMENTS_SCOPE, OPERATOR_SCOPE]}

"""The local authorizer accepts what API Gateway's JWT authorizer accepts, and nothing else."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from local.auth import LocalIssuer, TokenError


@pytest.fixture
def issuer(tmp_path: Path) -> LocalIssuer:
    return LocalIssuer(tmp_path / "key.pem", "test-issuer", "payment-queue")


def test_issued_token_verifies_with_its_claims(issuer: LocalIssuer) -> None:
    claims = issuer.verify(issuer.issue("user-1", scopes=("payments/operator",)))
    assert claims["sub"] == "user-1" and claims["scope"] == "payments/operator"


def test_expired_token_is_refused(issuer: LocalIssuer) -> None:
    with pytest.raises(TokenError):
        issuer.verify(issuer.issue("user-1", ttl_s=-10))


def test_wrong_audience_or_issuer_is_refused(tmp_path: Path, issuer: LocalIssuer) -> None:
    other_audience = LocalIssuer(tmp_path / "key.pem", "test-issuer", "someone-else")
    other_issuer = LocalIssuer(tmp_path / "key.pem", "evil-issuer", "payment-queue")
    with pytest.raises(TokenError):
        issuer.verify(other_audience.issue("user-1"))
    with pytest.raises(TokenError):
        issuer.verify(other_issuer.issue("user-1"))


def test_forged_tokens_are_refused(tmp_path: Path, issuer: LocalIssuer) -> None:
    stranger = LocalIssuer(tmp_path / "other.pem", "test-issuer", "payment-queue")
    unsigned = jwt.encode(
        {"sub": "user-1", "iss": "test-issuer", "aud": "payment-queue", "exp": 9_999_999_999}, key="", algorithm="none"
    )
    hs256 = jwt.encode(
        {"sub": "user-1", "iss": "test-issuer", "aud": "payment-queue", "exp": 9_999_999_999},
        key="guess-the-secret-guess-the-secret",
        algorithm="HS256",
        headers={"kid": "payment-queue-local-1"},
    )
    for token in (stranger.issue("user-1"), unsigned, hs256, "not.a.jwt", ""):
        with pytest.raises(TokenError):
            issuer.verify(token)


def test_jwks_publishes_the_public_key(issuer: LocalIssuer) -> None:
    keys = issuer.jwks()["keys"]
    assert [k["kid"] for k in keys] == ["payment-queue-local-1"] and "d" not in keys[0]


def test_a_token_verified_before_is_refused_once_it_has_expired(
    issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a token verified once (kept, so its next request skips the signature check)
    token = issuer.issue("user-1", ttl_s=60)
    assert issuer.verify(token)["sub"] == "user-1"
    # When it comes back after its expiry
    later = time.time() + 61
    monkeypatch.setattr("local.auth.time.time", lambda: later)
    # Then it is refused as expired, as the first check would have refused it
    with pytest.raises(TokenError, match="expired"):
        issuer.verify(token)


def test_a_kept_token_answers_a_copy_of_its_claims(issuer: LocalIssuer) -> None:
    # Given a verified token whose claims a caller then changes
    token = issuer.issue("user-1")
    issuer.verify(token)["sub"] = "someone-else"
    # Then the next request with it is still the token's own subject
    assert issuer.verify(token)["sub"] == "user-1"

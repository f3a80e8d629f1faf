"""Development tokens and their verification, done the way the HTTP API's JWT authorizer does.

An RSA key is made once under the data directory; tokens are RS256 with kid, iss, aud, exp;
verification checks signature, issuer, audience and expiry and yields the claims the authorizer
would put in requestContext.authorizer.jwt. Scopes are read as the authorizer reads them
(`token_scopes`); tokens carry the payments scope unless told otherwise, as `make token` prints.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.api_jwt import decode_complete

from shared.routes import PAYMENTS_SCOPE

KID = "payment-queue-local-1"
# Tokens already verified, kept as a JWT authorizer's caller would see them: a shopper's token comes back
# with each of its requests, and an RS256 verification was a tenth of an API process's CPU in a
# 5,000-shopper run (py-spy). The signature of a given token never changes; expiry is checked on every use.
VERIFIED_TOKENS = 20_000


class TokenError(Exception):
    pass


# What a 401 says about a refused token: words, never the library's exception class names.
_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidAudienceError, "the token is for another audience"),
    (jwt.InvalidIssuerError, "the token is from another issuer"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "the token's signing algorithm is not accepted"),
    (jwt.DecodeError, "the token is not a well-formed JWT"),
)


def _reason(exc: jwt.PyJWTError) -> str:
    return next((text for kind, text in _REASONS if isinstance(exc, kind)), "the token is not valid")


def _foreign_key(token: str) -> bool:
    """The token's header names a key other than ours (False when there is no header to read)."""
    try:
        return bool(jwt.get_unverified_header(token).get("kid") != KID)
    except jwt.PyJWTError:
        return False


class LocalIssuer:
    def __init__(self, key_path: Path, issuer: str, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience
        if not key_path.exists():
            key_path.parent.mkdir(parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key_path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            key_path.chmod(0o600)
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        self._private = loaded
        self._public = loaded.public_key()
        self._verified: dict[str, dict[str, Any]] = {}

    def issue(self, user_id: str, *, scopes: tuple[str, ...] = (PAYMENTS_SCOPE,), ttl_s: int = 24 * 3600) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": user_id,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + ttl_s,
        }
        if scopes:
            claims["scope"] = " ".join(scopes)
        return jwt.encode(claims, self._private, algorithm="RS256", headers={"kid": KID})

    def verify(self, token: str) -> dict[str, Any]:
        known = self._verified.get(token)
        if known is not None:
            if known["exp"] > time.time():
                return dict(known)
            del self._verified[token]
            raise TokenError(_reason(jwt.ExpiredSignatureError()))
        # One parse of the token (PyJWT checks each segment's characters one by one in Python): its header comes
        # with its claims, and a token of another key is told so whatever else is wrong with it, as when the
        # key id was read first. get_unverified_header before decode parsed every new token twice, a twentieth
        # of an API process's CPU per POST (py-spy); now only a refused token is read again.
        try:
            decoded = decode_complete(
                token,
                self._public,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenError("unknown key id" if _foreign_key(token) else _reason(exc)) from None
        if decoded["header"].get("kid") != KID:
            raise TokenError("unknown key id")
        claims: dict[str, Any] = decoded["payload"]
        if len(self._verified) >= VERIFIED_TOKENS:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = dict(claims)
        return claims

    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._public, as_dict=True)
        return {"keys": [jwk | {"kid": KID, "use": "sig", "alg": "RS256"}]}


def token_scopes(claims: dict[str, Any]) -> list[str]:
    """The token's scopes as API Gateway's JWT authorizer reads them: the `scope` claim (space-
    separated, RFC 8693) or the `scp` claim (a string or a list, as some providers send it).

    A route that requires scopes passes when the token carries at least one of them, and a
    valid token with none gets 403 ("Control access to HTTP APIs with JWT authorizers").
    """
    value = claims.get("scope", claims.get("scp"))
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [str(v) for v in value]
    return []

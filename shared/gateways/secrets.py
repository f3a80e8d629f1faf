"""A gateway's secrets, read on use: from Secrets Manager when an ARN is set (Powertools caches it for 5
minutes, so rotation needs no redeploy), else the configured values. Never logged."""

from __future__ import annotations

import json
from collections.abc import Callable

from shared.gateways.http import Credentials


def _secret(arn: str) -> dict[str, object]:
    from aws_lambda_powertools.utilities.parameters import get_secret

    secret: dict[str, object] = json.loads(str(get_secret(arn, max_age=300)))
    return secret


def credentials(arn: str | None, values: tuple[str | None, str | None], keys: tuple[str, str]) -> Credentials:
    """A credential pair: the secret's two fields keys, else the configured values."""

    def read() -> tuple[str, str]:
        if arn:
            secret = _secret(arn)
            return str(secret[keys[0]]), str(secret[keys[1]])
        return str(values[0]), str(values[1])

    return read


def secret_field(arn: str | None, value: str | None, key: str) -> Callable[[], str]:
    """One field of the secret (or the configured value); "" when it is not set."""

    def read() -> str:
        if arn:
            return str(_secret(arn).get(key) or "")
        return value or ""

    return read

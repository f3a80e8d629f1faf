"""Database credentials from Secrets Manager (moto): a rotated password is picked up at once."""

from __future__ import annotations

import json

import boto3
import pytest

from shared.bootstrap import build_app
from shared.domain import TransientError
from shared.settings import Settings
from tests.integration.conftest import AWS_REGION as REGION


@pytest.fixture
def secrets(aws: None) -> object:
    return boto3.client("secretsmanager", region_name=REGION)


def test_failed_connection_makes_the_next_attempt_reread_the_secret(secrets: object) -> None:
    client = secrets
    arn = client.create_secret(  # type: ignore[attr-defined]
        Name="db", SecretString=json.dumps({"username": "app", "password": "old"})
    )["ARN"]
    # Given a database host that refuses connections (nothing listens on port 1)
    settings = Settings(db_host="127.0.0.1", db_port=1, db_secret_arn=arn, db_connect_timeout_s=1)
    app = build_app(settings)
    with pytest.raises(TransientError):
        app.db.fetch_one("SELECT 1")
    # When the password is rotated in Secrets Manager
    client.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": "app", "password": "n3w/p@ss"}))  # type: ignore[attr-defined]

    # Then the DSN of the next attempt carries the new password (URL-quoted), not the cached one
    dsn = app.db._dsn()
    assert "app:n3w%2Fp%40ss@127.0.0.1:1/payments" in dsn
    # And without a failure in between, the cached secret is used
    client.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": "app", "password": "newer"}))  # type: ignore[attr-defined]
    assert "n3w%2Fp%40ss" in app.db._dsn()

"""The one wiring point: builds the adapters named by the settings.

Lambda handlers and the local runtime both call bootstrap(); nothing connects or reads the
environment at import time. The result is cached per process (a Lambda container reuses its
connection across invocations).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from shared.db import Database
from shared.domain import ThroughputEstimator
from shared.gateways.port import PaymentGateway
from shared.gateways.registry import build_gateways
from shared.ports import EventBus, JobQueue
from shared.settings import Settings, get_settings

_QUEUE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")


@dataclass
class App:
    settings: Settings
    db: Database
    queue: JobQueue
    bus: EventBus
    throughput: ThroughputEstimator
    # The enabled gateways by name (shared/gateways/registry.py): the services dispatch through it.
    gateways: dict[str, PaymentGateway] = field(default_factory=dict)

    def methods(self) -> tuple[str, ...]:
        """The payment methods this deployment accepts: wallet, and each enabled gateway."""
        return ("wallet", *self.gateways)


_app: App | None = None


class _Dsn:
    """The database DSN: DATABASE_URL, or the RDS Proxy endpoint with the function's role and an IAM
    token (shared/db_roles.py), or with the Secrets Manager credentials (the migrate function's).

    The secret is cached by Powertools for 5 minutes; after a failed connection it is fetched
    afresh, so a rotated password is picked up at the next attempt rather than minutes later.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._refresh = False

    def refresh(self) -> None:
        self._refresh = True

    def __call__(self) -> str:
        refresh, self._refresh = self._refresh, False
        return _dsn(self._settings, refresh=refresh)


def _dsn(settings: Settings, *, refresh: bool = False) -> str:
    if settings.database_url:
        return settings.database_url
    if not (settings.db_host and (settings.db_user or settings.db_secret_arn)):
        raise RuntimeError("set DATABASE_URL, or PQ_DB_HOST and PQ_DB_USER or PQ_DB_SECRET_ARN")
    if settings.db_user:
        user, password = settings.db_user, _iam_token(settings.db_host, settings.db_port, settings.db_user)
    else:
        from aws_lambda_powertools.utilities.parameters import get_secret

        secret = json.loads(str(get_secret(str(settings.db_secret_arn), max_age=300, force_fetch=refresh)))
        user, password = secret["username"], secret["password"]
    rootcert = f"&sslrootcert={quote(settings.db_sslrootcert, safe='/')}" if settings.db_sslrootcert else ""
    return (
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
        f"@{settings.db_host}:{settings.db_port}/{settings.db_name}?sslmode={settings.db_sslmode}{rootcert}"
    )


def _iam_token(host: str, port: int, user: str) -> str:
    """An IAM authentication token for RDS Proxy, the password of one connection: signed here with the
    function's own credentials (a SigV4 presigned URL, no request sent), valid for 15 minutes, so one is
    made for every connection (Amazon RDS User Guide, "Connecting to your DB instance using IAM
    authentication and the AWS SDK for Python (Boto3)"; "Connecting to a database through RDS Proxy",
    IAM authentication)."""
    return str(_rds_client().generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user))


@lru_cache(maxsize=1)
def _rds_client() -> Any:
    """Made once per process (a client loads the service's model): the token is signed, never sent."""
    import boto3

    return boto3.client("rds")


def build_app(settings: Settings) -> App:
    dsn = _Dsn(settings)
    db = Database(
        dsn,
        connect_timeout_s=settings.db_connect_timeout_s,
        application_name=settings.db_application_name,
        on_connect_error=dsn.refresh,
    )
    queue: JobQueue
    bus: EventBus
    if settings.queue_backend == "sqs" or settings.event_bus_backend == "eventbridge":
        import boto3
        from botocore.config import Config

        # Standard retry mode: throttled calls are retried with exponential backoff and jitter.
        config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=2, read_timeout=5)
    if settings.queue_backend == "sqs":
        from shared.adapters.aws import SqsJobQueue

        if not settings.queue_url:
            raise RuntimeError("PQ_QUEUE_URL is required with PQ_QUEUE_BACKEND=sqs")
        queue = SqsJobQueue(boto3.client("sqs", config=config), settings.queue_url, settings.dlq_url)
    else:
        from shared.adapters.pgmq import PgmqJobQueue

        for name in (settings.queue_name, settings.dlq_name):
            if not _QUEUE_NAME.match(name):
                raise RuntimeError(f"invalid PGMQ queue name {name!r}")
        queue = PgmqJobQueue(db, settings.queue_name, settings.dlq_name)
    if settings.event_bus_backend == "eventbridge":
        from shared.adapters.aws import EventBridgeBus

        bus = EventBridgeBus(boto3.client("events", config=config), settings.event_bus_name)
    else:
        from shared.adapters.pgmq import PgmqEventBus

        if not _QUEUE_NAME.match(settings.events_queue_name):
            raise RuntimeError(f"invalid PGMQ queue name {settings.events_queue_name!r}")
        bus = PgmqEventBus(db, settings.events_queue_name)
    return App(
        settings=settings,
        db=db,
        queue=queue,
        bus=bus,
        throughput=ThroughputEstimator(),
        gateways=build_gateways(settings),
    )


def bootstrap(settings: Settings | None = None) -> App:
    """The process's App, built on first use; pass settings to rebuild it (tests, local runtime)."""
    global _app
    if settings is not None or _app is None:
        if _app is not None:
            _app.db.close()
        _app = build_app(settings or get_settings())
    return _app

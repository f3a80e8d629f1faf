"""The one wiring point: builds the adapters named by the settings.

Lambda handlers and the local runtime both call bootstrap(); nothing connects or reads the
environment at import time. The result is cached per process (a Lambda container reuses its
connection across invocations).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from shared.db import Database
from shared.domain import ThroughputEstimator
from shared.ports import CashfreeApi, EventBus, JobQueue, PaymentGateway, RazorpayApi
from shared.settings import Settings, get_settings

Credentials = Callable[[], tuple[str, str]]
_QUEUE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")


@dataclass(frozen=True)
class GatewaySecrets:
    """What our own checks of the gateways' signatures need, read on use (never logged)."""

    razorpay: Credentials | None = None  # (key_id, key_secret): checkout signatures, Checkout's key_id
    razorpay_webhook: Callable[[], str] | None = None  # the Dashboard's webhook secret
    cashfree: Credentials | None = None  # (client_id, client_secret): webhook signatures


@dataclass
class App:
    settings: Settings
    db: Database
    queue: JobQueue
    bus: EventBus
    throughput: ThroughputEstimator
    gateways: dict[str, PaymentGateway] = field(default_factory=dict)
    # The same adapters, as the checkout flow calls them (None: that gateway is not enabled).
    razorpay: RazorpayApi | None = None
    cashfree: CashfreeApi | None = None
    secrets: GatewaySecrets = field(default_factory=GatewaySecrets)


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


def _credentials(arn: str | None, values: tuple[str | None, str | None], keys: tuple[str, str]) -> Credentials:
    """A gateway's credential pair: from Secrets Manager when an ARN is set (Powertools caches it
    for 5 minutes, so rotation needs no redeploy), else the configured values. Never logged."""

    def read() -> tuple[str, str]:
        if arn:
            from aws_lambda_powertools.utilities.parameters import get_secret

            secret = json.loads(str(get_secret(arn, max_age=300)))
            return str(secret[keys[0]]), str(secret[keys[1]])
        return str(values[0]), str(values[1])

    return read


def _secret_field(arn: str | None, value: str | None, key: str) -> Callable[[], str]:
    """One field of a gateway's secret (or the configured value); "" when it is not set."""

    def read() -> str:
        if arn:
            from aws_lambda_powertools.utilities.parameters import get_secret

            return str(json.loads(str(get_secret(arn, max_age=300))).get(key) or "")
        return value or ""

    return read


def build_secrets(settings: Settings) -> GatewaySecrets:
    enabled = settings.enabled_methods()
    return GatewaySecrets(
        razorpay=_credentials(
            settings.razorpay_secret_arn,
            (settings.razorpay_key_id, settings.razorpay_key_secret),
            ("key_id", "key_secret"),
        )
        if "razorpay" in enabled
        else None,
        razorpay_webhook=_secret_field(settings.razorpay_secret_arn, settings.razorpay_webhook_secret, "webhook_secret")
        if "razorpay" in enabled
        else None,
        cashfree=_credentials(
            settings.cashfree_secret_arn,
            (settings.cashfree_client_id, settings.cashfree_client_secret),
            ("client_id", "client_secret"),
        )
        if "cashfree" in enabled
        else None,
    )


def build_gateways(settings: Settings) -> dict[str, PaymentGateway]:
    """The enabled gateways; credentials are read on first use, not here."""
    from shared.adapters.gateways import CashfreeGateway, RazorpayGateway

    gateways: dict[str, PaymentGateway] = {}
    enabled = settings.enabled_methods()
    if "razorpay" in enabled:
        gateways["razorpay"] = RazorpayGateway(
            settings.razorpay_base_url,
            _credentials(
                settings.razorpay_secret_arn,
                (settings.razorpay_key_id, settings.razorpay_key_secret),
                ("key_id", "key_secret"),
            ),
            settings.gateway_timeout_s,
        )
    if "cashfree" in enabled:
        gateways["cashfree"] = CashfreeGateway(
            settings.cashfree_base_url,
            _credentials(
                settings.cashfree_secret_arn,
                (settings.cashfree_client_id, settings.cashfree_client_secret),
                ("client_id", "client_secret"),
            ),
            settings.cashfree_api_version,
            settings.gateway_timeout_s,
        )
    return gateways


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
    gateways = build_gateways(settings)
    from shared.adapters.gateways import CashfreeGateway, RazorpayGateway

    razorpay, cashfree = gateways.get("razorpay"), gateways.get("cashfree")
    return App(
        settings=settings,
        db=db,
        queue=queue,
        bus=bus,
        throughput=ThroughputEstimator(),
        gateways=gateways,
        razorpay=razorpay if isinstance(razorpay, RazorpayGateway) else None,
        cashfree=cashfree if isinstance(cashfree, CashfreeGateway) else None,
        secrets=build_secrets(settings),
    )


def bootstrap(settings: Settings | None = None) -> App:
    """The process's App, built on first use; pass settings to rebuild it (tests, local runtime)."""
    global _app
    if settings is not None or _app is None:
        if _app is not None:
            _app.db.close()
        _app = build_app(settings or get_settings())
    return _app

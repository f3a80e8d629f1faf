"""Per-environment settings of the deployment, as one frozen object selected by context.

Every environment is a complete `EnvironmentConfig`; nothing else in `infra/` asks which
environment it is building. Values a deployer must supply (JWT issuer, alarm e-mail, webhook)
come from context (`cdk deploy -c pq:jwt-issuer=...`) and replace the defaults here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

ENV_CONTEXT_KEY = "pq:env"
AZS_CONTEXT_KEY = "pq:availability-zones"
BUNDLE_CONTEXT_KEY = "pq:bundle-dependencies"

# Context keys for the values only a deployer knows; each replaces one config field.
OVERRIDE_KEYS = (
    "pq:jwt-issuer",
    "pq:jwt-audience",
    "pq:alarm-email",
    "pq:webhook-url",
    "pq:webhook-secret-name",
    "pq:razorpay-secret-name",
    "pq:cashfree-secret-name",
)


class ConfigError(ValueError):
    """The selected configuration cannot produce a safe deployment."""


@dataclass(frozen=True)
class ProcessorConfig:
    """The payment consumer: how hard it may push the database."""

    # FIFO event sources take at most 10 messages a batch.
    batch_size: int
    # The event source mapping's maximum concurrency: the real cap on concurrent DB transactions.
    max_concurrency: int
    # Reserved concurrency: never below max_concurrency, or the mapping gets throttled.
    reserved_concurrency: int
    # A batch of 10 payments runs in order; each is one short transaction plus at most one
    # gateway call, which the client abandons after 10 s (PQ_GATEWAY_TIMEOUT_S): 10 x ~11 s fits.
    timeout_seconds: int = 120
    memory_mb: int = 512

    @property
    def visibility_timeout_seconds(self) -> int:
        # AWS guidance for SQS event sources: at least six times the function timeout.
        return 6 * self.timeout_seconds


@dataclass(frozen=True)
class DatabaseConfig:
    instance_class: str
    multi_az: bool
    deletion_protection: bool
    backup_retention_days: int
    allocated_storage_gb: int = 20
    max_allocated_storage_gb: int = 100
    # A full version: RDS treats a bare major version as deprecated for new instances.
    # Minor upgrades then apply in the maintenance window (auto_minor_version_upgrade).
    engine_version: str = "17.9"
    # Set explicitly so the proxy-connections alarm has a fixed denominator.
    max_connections: int = 100
    # Share of max_connections the proxy may open; the rest is for operators and migrations.
    proxy_max_connections_percent: int = 80
    # Not offered on the small burstable classes dev uses.
    performance_insights: bool = False

    @property
    def proxy_connection_budget(self) -> int:
        return self.max_connections * self.proxy_max_connections_percent // 100


@dataclass(frozen=True)
class ApiConfig:
    jwt_issuer: str
    jwt_audience: tuple[str, ...]
    # Stage throttling: the flash sale is 5,000 payments arriving within seconds.
    throttle_rate_per_second: int
    throttle_burst: int


@dataclass(frozen=True)
class AlarmThresholds:
    """The seed's operating limits; an alarm fires past each one."""

    queue_depth: int = 1_000
    oldest_message_age_seconds: int = 20 * 60
    processor_error_rate_percent: float = 2.0
    dlq_messages: int = 0
    proxy_connections_percent: int = 90
    throttles: int = 0


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str
    region: str
    availability_zones: tuple[str, ...]
    # NAT gateways exist only for the processor's calls to the payment gateways.
    nat_gateways: int
    log_level: str
    log_retention_days: int
    # Retain data stores on stack deletion (prod) or drop them with the stack (dev, staging).
    retain_data: bool
    processor: ProcessorConfig
    database: DatabaseConfig
    api: ApiConfig
    alarms: AlarmThresholds = field(default_factory=AlarmThresholds)
    # Deliveries before a payment message moves to the DLQ for an operator to look at. Gateway
    # 429/5xx backoffs (1 s doubling, capped at 300 s) consume deliveries too: ten ride out
    # about 4 minutes (8.5 at most) of gateway trouble before a payment is dead-lettered.
    max_receive_count: int = 10
    # Days an unprocessed payment message is kept; the DLQ keeps the SQS maximum.
    queue_retention_days: int = 4
    alarm_email: str | None = None
    webhook_url: str | None = None
    webhook_secret_name: str | None = None
    # Secrets Manager secrets with the gateways' API credentials; a gateway without one is off.
    razorpay_secret_name: str | None = None
    cashfree_secret_name: str | None = None

    @property
    def stack_name(self) -> str:
        return f"PaymentQueue-{self.name}"

    def validate(self) -> EnvironmentConfig:
        p = self.processor
        problems = []
        if not 1 <= p.batch_size <= 10:
            problems.append("processor batch_size must be 1..10 for a FIFO event source")
        if not 2 <= p.max_concurrency <= 1000:
            problems.append("processor max_concurrency must be 2..1000 (SQS event source limit)")
        if p.max_concurrency > p.reserved_concurrency:
            problems.append("processor max_concurrency must not exceed its reserved concurrency")
        if p.max_concurrency > self.database.proxy_connection_budget:
            problems.append("processor max_concurrency exceeds the proxy's connection budget")
        if self.max_receive_count < 5:
            problems.append("max_receive_count must be at least 5")
        if len(self.availability_zones) < 2:
            problems.append("at least two availability zones are needed (RDS subnet group)")
        if self.nat_gateways < 1:
            problems.append("the processor needs at least one NAT gateway to reach the gateways")
        if problems:
            raise ConfigError(f"{self.name}: " + "; ".join(problems))
        return self


_REGION = "ap-south-1"  # Razorpay and Cashfree settle in INR; keep the data in India.
_PLACEHOLDER_ISSUER = "https://auth.example.com/"

DEV = EnvironmentConfig(
    name="dev",
    region=_REGION,
    availability_zones=(),
    nat_gateways=1,
    log_level="DEBUG",
    log_retention_days=7,
    retain_data=False,
    processor=ProcessorConfig(batch_size=10, max_concurrency=5, reserved_concurrency=5),
    database=DatabaseConfig(
        instance_class="t4g.small",
        multi_az=False,
        deletion_protection=False,
        backup_retention_days=1,
    ),
    api=ApiConfig(
        jwt_issuer=_PLACEHOLDER_ISSUER,
        jwt_audience=("payment-queue",),
        throttle_rate_per_second=100,
        throttle_burst=200,
    ),
)

STAGING = replace(
    DEV,
    name="staging",
    log_level="INFO",
    log_retention_days=30,
    processor=ProcessorConfig(batch_size=10, max_concurrency=10, reserved_concurrency=12),
    database=replace(
        DEV.database,
        instance_class="t4g.medium",
        backup_retention_days=7,
        max_connections=200,
        performance_insights=True,
    ),
    api=replace(DEV.api, throttle_rate_per_second=1_000, throttle_burst=5_000),
)

PROD = replace(
    STAGING,
    name="prod",
    # One NAT gateway per AZ so losing an AZ does not cut the processor off the gateways.
    nat_gateways=2,
    log_retention_days=365,
    retain_data=True,
    processor=ProcessorConfig(batch_size=10, max_concurrency=40, reserved_concurrency=50),
    database=DatabaseConfig(
        instance_class="m7g.large",
        multi_az=True,
        deletion_protection=True,
        backup_retention_days=30,
        allocated_storage_gb=100,
        max_allocated_storage_gb=500,
        max_connections=400,
        performance_insights=True,
    ),
    api=replace(STAGING.api, throttle_rate_per_second=2_000, throttle_burst=5_000),
    queue_retention_days=14,
)

ENVIRONMENTS: Mapping[str, EnvironmentConfig] = {c.name: c for c in (DEV, STAGING, PROD)}


def load(context: Mapping[str, Any], env_name: str | None = None) -> EnvironmentConfig:
    """The config for `env_name` (default: the `pq:env` context value), context overrides applied."""
    name = env_name or context.get(ENV_CONTEXT_KEY) or "dev"
    if name not in ENVIRONMENTS:
        raise ConfigError(f"unknown environment {name!r}; choose one of {sorted(ENVIRONMENTS)}")
    config = ENVIRONMENTS[name]
    azs = (context.get(AZS_CONTEXT_KEY) or {}).get(config.region)
    if not azs:
        raise ConfigError(f"cdk.json context {AZS_CONTEXT_KEY!r} has no zones for {config.region}")
    config = replace(config, availability_zones=tuple(azs))
    return _with_overrides(config, context).validate()


def _with_overrides(config: EnvironmentConfig, context: Mapping[str, Any]) -> EnvironmentConfig:
    def text(key: str) -> str | None:
        value = context.get(key)
        return str(value).strip() if value not in (None, "") else None

    api = config.api
    if issuer := text("pq:jwt-issuer"):
        api = replace(api, jwt_issuer=issuer)
    if audience := text("pq:jwt-audience"):
        api = replace(api, jwt_audience=tuple(a.strip() for a in audience.split(",") if a.strip()))
    return replace(
        config,
        api=api,
        alarm_email=text("pq:alarm-email") or config.alarm_email,
        webhook_url=text("pq:webhook-url") or config.webhook_url,
        webhook_secret_name=text("pq:webhook-secret-name") or config.webhook_secret_name,
        razorpay_secret_name=text("pq:razorpay-secret-name") or config.razorpay_secret_name,
        cashfree_secret_name=text("pq:cashfree-secret-name") or config.cashfree_secret_name,
    )


def bundle_dependencies(context: Mapping[str, Any]) -> bool:
    """Whether to pip-install the Lambda dependencies (off in assertion tests: slow, not needed)."""
    value = context.get(BUNDLE_CONTEXT_KEY, True)
    return str(value).lower() not in ("false", "0", "no")

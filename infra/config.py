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
    "pq:cors-origins",
)
# Set on a stack's very first deployment only: see DatabaseConfig.deletion_protection.
FIRST_CREATE_CONTEXT_KEY = "pq:first-create"
# The issuer in the shipped config: no real identity provider, so it rejects every token. Fine
# for dev (a stack you can synthesize and deploy before choosing one), refused where it matters.
PLACEHOLDER_ISSUER = "https://auth.example.com/"
PLACEHOLDER_AUDIENCE = ("payment-queue",)
_REAL_ISSUER_REQUIRED = ("staging", "prod")


class ConfigError(ValueError):
    """The selected configuration cannot produce a safe deployment."""


@dataclass(frozen=True)
class FunctionLimits:
    """A database function's timeout and its cap on executions at once (reserved concurrency).

    Each execution holds at most one connection (psycopg2, one per thread; the handlers are
    single-threaded), so the cap is also the function's share of the proxy's connections.
    """

    timeout_seconds: int
    reserved_concurrency: int


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
    # How long a client waits for a pooled connection once the proxy has opened all it may
    # (ConnectionBorrowTimeout, default 120 s). Far below every database function's timeout, so
    # the function answers 503 service_busy with Retry-After instead of timing out (a 5xx with
    # no advice). The proxy then holds the request; the payment path needs milliseconds.
    proxy_borrow_timeout_seconds: int = 3
    # Not offered on the small burstable classes dev uses.
    performance_insights: bool = False
    # Enhanced Monitoring: the OS's own CPU, memory, swap and per-process figures every N seconds (0 =
    # off), which the hypervisor-level CloudWatch metrics do not show; they land in CloudWatch Logs
    # (log group RDSOSMetrics). CreateDBInstance MonitoringInterval: "Valid Values: 0 | 1 | 5 | 10 |
    # 15 | 30 | 60".
    enhanced_monitoring_interval_seconds: int = 0

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
    # The API functions' limits. Reserved concurrency is what keeps them inside the proxy's
    # connection budget; a request beyond it is throttled by Lambda rather than left waiting
    # for a database connection. Enqueue is one insert and one SQS send (tens of ms).
    enqueue: FunctionLimits = FunctionLimits(timeout_seconds=10, reserved_concurrency=10)
    status: FunctionLimits = FunctionLimits(timeout_seconds=10, reserved_concurrency=5)
    # Origins of the progress and operator pages when they are served elsewhere than the API
    # (docs/pages.md); none means no CORS configuration, so browsers allow same-origin pages only.
    cors_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlarmThresholds:
    """The seed's operating limits; an alarm fires past each one."""

    queue_depth: int = 1_000
    oldest_message_age_seconds: int = 20 * 60
    processor_error_rate_percent: float = 2.0
    dlq_messages: int = 0
    proxy_connections_percent: int = 90
    throttles: int = 0
    # Failed records of the processor's batches (its RecordsFailed metric) as a share of the
    # records it handled. Lambda Errors stays 0 when records fail: they come back as
    # batchItemFailures of a successful invocation, so a DB or gateway outage shows only here.
    processor_records_failed_percent: float = 2.0
    # No statement of ours pins a proxy session; any pinned connection is a regression (or an
    # operator's psql session through the proxy).
    proxy_pinned_connections: int = 0
    # Borrowing a pooled connection takes microseconds while the pool has room.
    proxy_borrow_latency_ms: int = 100


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
    # One sweep at a time, and a sweep must end before the next minute's starts.
    sweeper: FunctionLimits = FunctionLimits(timeout_seconds=50, reserved_concurrency=1)
    # Only the deployment's trigger invokes it; its first connection is retried (functions/migrate).
    migrate: FunctionLimits = FunctionLimits(timeout_seconds=300, reserved_concurrency=1)
    # True only for a stack's first deployment (context pq:first-create): see deletion protection.
    first_create: bool = False
    # Reserve each database function's concurrency: its cap, which makes the connection budget a
    # guarantee. Off in dev so that any account can deploy it: Lambda keeps 100 of an account's
    # concurrency unreserved (PutFunctionConcurrency: "as long as you leave at least 100 simultaneous
    # executions unreserved"), and new accounts start with a limit of 10 or 50, where nothing can be
    # reserved. Dev's processor stays capped by its event source's maximum concurrency; `make preflight`
    # says what an account lacks for the environments that reserve.
    reserve_concurrency: bool = True
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

    @property
    def deletion_protection(self) -> bool:
        """The DB instance's deletion protection as deployed.

        Deletion protection also refuses the delete of a rollback, so a prod stack whose first
        create fails (a migration, a quota) would be stuck in ROLLBACK_FAILED with a named
        instance that collides on the retry, although RetainExceptOnCreate asks CloudFormation
        to delete what that create made. So the first deployment (`-c pq:first-create=true`)
        creates the instance unprotected, where a failure rolls back cleanly, and the next one
        turns protection on in place (no replacement); docs/deploy.md has the two commands.
        """
        return self.database.deletion_protection and not self.first_create

    def database_clients(self) -> dict[str, FunctionLimits]:
        """Every function that connects to PostgreSQL (through the proxy), with its limits.

        notify is not here: it never touches the database. The processor's cap is its reserved
        concurrency, which is at least the event source's maximum concurrency.
        """
        p = self.processor
        return {
            "enqueue": self.api.enqueue,
            "status": self.api.status,
            "process_payment": FunctionLimits(p.timeout_seconds, p.reserved_concurrency),
            "sweeper": self.sweeper,
            "migrate": self.migrate,
        }

    def reserved_concurrency(self) -> dict[str, int]:
        """What the stack reserves, per function (nothing when reserve_concurrency is off)."""
        if not self.reserve_concurrency:
            return {}
        return {name: limits.reserved_concurrency for name, limits in self.database_clients().items()}

    @property
    def database_connections_needed(self) -> int:
        """The most connections the database functions can hold at once (one per execution)."""
        return sum(limits.reserved_concurrency for limits in self.database_clients().values())

    def validate(self) -> EnvironmentConfig:
        p = self.processor
        problems = []
        if not 1 <= p.batch_size <= 10:
            problems.append("processor batch_size must be 1..10 for a FIFO event source")
        if not 2 <= p.max_concurrency <= 1000:
            problems.append("processor max_concurrency must be 2..1000 (SQS event source limit)")
        if self.reserve_concurrency and p.max_concurrency > p.reserved_concurrency:
            problems.append("processor max_concurrency must not exceed its reserved concurrency")
        problems += self._connection_budget_problems()
        if self.name in _REAL_ISSUER_REQUIRED and self.api.jwt_issuer == PLACEHOLDER_ISSUER:
            problems.append(
                f"the JWT issuer is the placeholder {PLACEHOLDER_ISSUER}; pass your identity "
                "provider's issuer with -c pq:jwt-issuer=https://..."
            )
        # The audience like the issuer: the authorizer checks a token's aud (client_id for Cognito access
        # tokens) against this list, so the placeholder would answer 401 to every real token.
        if self.name in _REAL_ISSUER_REQUIRED and self.api.jwt_audience == PLACEHOLDER_AUDIENCE:
            problems.append(
                f"the JWT audience is the placeholder {PLACEHOLDER_AUDIENCE[0]!r}; pass your app clients' ids "
                "with -c pq:jwt-audience=<client id>[,<client id>...]"
            )
        problems += [
            f"CORS origin {origin!r} must be a scheme and host only, e.g. https://shop.example.com"
            for origin in self.api.cors_origins
            if not _is_origin(origin)
        ]
        if self.database.enhanced_monitoring_interval_seconds not in (0, 1, 5, 10, 15, 30, 60):
            problems.append("enhanced_monitoring_interval_seconds must be 0 (off), 1, 5, 10, 15, 30 or 60")
        if self.max_receive_count < 5:
            problems.append("max_receive_count must be at least 5")
        if len(self.availability_zones) < 2:
            problems.append("at least two availability zones are needed (RDS subnet group)")
        if self.nat_gateways < 1:
            problems.append("the processor needs at least one NAT gateway to reach the gateways")
        if problems:
            raise ConfigError(f"{self.name}: " + "; ".join(problems))
        return self

    def _connection_budget_problems(self) -> list[str]:
        db = self.database
        problems = []
        needed, budget = self.database_connections_needed, db.proxy_connection_budget
        if needed > budget:
            shares = ", ".join(f"{n} {c.reserved_concurrency}" for n, c in self.database_clients().items())
            problems.append(
                f"the database functions can hold {needed} connections at once ({shares}) but the "
                f"proxy may open {budget} ({db.proxy_max_connections_percent}% of max_connections "
                f"{db.max_connections}): lower reserved concurrency or raise max_connections"
            )
        for name, limits in self.database_clients().items():
            # "Well under": half the timeout is left for the work itself and the 503 answer.
            if 2 * db.proxy_borrow_timeout_seconds > limits.timeout_seconds:
                problems.append(
                    f"the proxy's borrow timeout ({db.proxy_borrow_timeout_seconds} s) must be at most "
                    f"half of {name}'s timeout ({limits.timeout_seconds} s)"
                )
            if limits.reserved_concurrency < 1:
                problems.append(f"{name} needs a reserved concurrency of at least 1 (the connection budget)")
        return problems


def _is_origin(value: str) -> bool:
    scheme, sep, host = value.partition("://")
    local = host.split(":")[0] in ("localhost", "127.0.0.1")
    return (
        bool(sep and host)
        and (scheme == "https" or (scheme == "http" and local))
        and not any(c in host for c in "/*?# ")
    )


_REGION = "ap-south-1"  # Razorpay and Cashfree settle in INR; keep the data in India.

DEV = EnvironmentConfig(
    name="dev",
    region=_REGION,
    availability_zones=(),
    nat_gateways=1,
    log_level="DEBUG",
    log_retention_days=7,
    retain_data=False,
    processor=ProcessorConfig(batch_size=10, max_concurrency=5, reserved_concurrency=5),
    reserve_concurrency=False,
    database=DatabaseConfig(
        instance_class="t4g.small",
        multi_az=False,
        deletion_protection=False,
        backup_retention_days=1,
    ),
    api=ApiConfig(
        jwt_issuer=PLACEHOLDER_ISSUER,
        jwt_audience=PLACEHOLDER_AUDIENCE,
        throttle_rate_per_second=100,
        throttle_burst=200,
    ),
)

STAGING = replace(
    DEV,
    name="staging",
    reserve_concurrency=True,
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
    api=replace(
        DEV.api,
        throttle_rate_per_second=1_000,
        throttle_burst=5_000,
        enqueue=FunctionLimits(timeout_seconds=10, reserved_concurrency=50),
        status=FunctionLimits(timeout_seconds=10, reserved_concurrency=20),
    ),
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
        enhanced_monitoring_interval_seconds=60,
    ),
    # 2,000 requests a second at tens of milliseconds each is well under 150 at once.
    api=replace(
        STAGING.api,
        throttle_rate_per_second=2_000,
        throttle_burst=5_000,
        enqueue=FunctionLimits(timeout_seconds=10, reserved_concurrency=150),
        status=FunctionLimits(timeout_seconds=10, reserved_concurrency=50),
    ),
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
        api = replace(api, jwt_audience=_split(audience))
    if origins := text("pq:cors-origins"):
        api = replace(api, cors_origins=_split(origins))
    return replace(
        config,
        api=api,
        first_create=_flag(context.get(FIRST_CREATE_CONTEXT_KEY), default=False),
        alarm_email=text("pq:alarm-email") or config.alarm_email,
        webhook_url=text("pq:webhook-url") or config.webhook_url,
        webhook_secret_name=text("pq:webhook-secret-name") or config.webhook_secret_name,
        razorpay_secret_name=text("pq:razorpay-secret-name") or config.razorpay_secret_name,
        cashfree_secret_name=text("pq:cashfree-secret-name") or config.cashfree_secret_name,
    )


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _flag(value: Any, *, default: bool) -> bool:
    if value in (None, ""):
        return default
    return str(value).lower() not in ("false", "0", "no")


def bundle_dependencies(context: Mapping[str, Any]) -> bool:
    """Whether to pip-install the Lambda dependencies (off in assertion tests: slow, not needed)."""
    return _flag(context.get(BUNDLE_CONTEXT_KEY), default=True)

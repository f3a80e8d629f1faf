"""Every setting the functions and the local runtime read, as one typed model read once."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PQ_", frozen=True, extra="ignore")

    env: str = "local"

    # Database: a full DSN locally; in AWS the RDS Proxy endpoint plus a Secrets Manager secret.
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    db_host: str | None = None
    db_port: int = 5432
    db_name: str = "payments"
    db_secret_arn: str | None = None
    db_sslmode: str = "prefer"
    # A payment holds its row locks for about a millisecond; 5 s means something is wrong.
    db_statement_timeout_ms: int = 5_000
    # Fail fast on an unreachable database so the queue retries instead of the function hanging.
    db_connect_timeout_s: int = 5

    queue_backend: Literal["sqs", "pgmq"] = "pgmq"
    queue_url: str | None = None
    dlq_url: str | None = None
    queue_name: str = "payments"
    dlq_name: str = "payments_dlq"

    event_bus_backend: Literal["eventbridge", "pgmq"] = "pgmq"
    event_bus_name: str = "payment-queue"
    events_queue_name: str = "payment_events"

    # SQS redrive policy's maxReceiveCount; the local runtime applies the same number.
    max_receive_count: int = 5

    # JWT scope that opens the operator routes (queue status, metrics, DB health).
    operator_scope: str = "payments/operator"
    # Request bodies are a few dozen bytes; anything past this is refused before parsing.
    max_body_bytes: int = 16_384

    # The sweeper treats a job as unsent, or an event as unpublished, after this long.
    sweep_after_s: int = 30

    # Polling advice: clients wait at least min, at most max, between status polls.
    poll_min_ms: int = 500
    poll_max_ms: int = 10_000
    # Used for ETAs until a minute of throughput has been observed.
    assumed_payments_per_s: float = 500.0

    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_secret_arn: str | None = None
    webhook_timeout_s: float = 5.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

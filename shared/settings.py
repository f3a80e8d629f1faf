"""Every setting the functions and the local runtime read, as one typed model read once."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.routes import MERCHANT_SCOPE, NOW_SERVING_PATH, OPERATOR_SCOPE


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PQ_", frozen=True, extra="ignore")

    env: str = "local"

    # Database: a full DSN locally; in AWS the RDS Proxy endpoint plus a Secrets Manager secret.
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL", repr=False)
    db_host: str | None = None
    db_port: int = 5432
    db_name: str = "payments"
    db_secret_arn: str | None = None
    # The function's own database role (shared/db_roles.py), which logs in through RDS Proxy with an IAM
    # token instead of the secret's password: every function but migrate (issue 21, least privilege).
    db_user: str | None = None
    db_sslmode: str = "prefer"
    # CAs for verify-full: RDS Proxy's ACM certificate chains to the Amazon Trust Services roots in the layer.
    db_sslrootcert: str | None = None
    # No statement timeout here: it is the role's setting in the database (migration 0005), since
    # RDS Proxy refuses startup options and a per-session SET would pin proxy sessions.
    # Fail fast on an unreachable database so the queue retries instead of the function hanging.
    db_connect_timeout_s: int = 5
    # Shown in pg_stat_activity, so connections can be counted per role (API, processor, ...).
    db_application_name: str = "payment-queue"

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
    operator_scope: str = OPERATOR_SCOPE
    # JWT scope of the shop's backend (the /v1/merchant routes): a client-credentials token.
    merchant_scope: str = MERCHANT_SCOPE
    # Request bodies are a few dozen bytes; anything past this is refused before parsing.
    max_body_bytes: int = 16_384
    # Gateway webhooks carry whole payment entities; Razorpay's and Cashfree's samples are a few KB.
    max_webhook_bytes: int = 262_144

    # The sweeper treats a job as unsent, or an event as unpublished, after this long.
    sweep_after_s: int = 30

    # Polling advice: clients wait at least min, at most max, between status polls.
    poll_min_ms: int = 500
    poll_max_ms: int = 10_000
    # Where a waiting client reads the shared now-serving figure (a job's now_serving_url): the API's own
    # route, relative to the API, locally; on AWS the absolute URL of the route behind CloudFront's cache
    # (infra/components/waiting.py), so that no poll of it reaches the API, its Lambda or the database.
    now_serving_url: str = NOW_SERVING_PATH
    # Paces the polling advice while no throughput has been measured (just started, or
    # stalled). Never shown as an ETA: then eta_seconds is null and the page says it is unknown.
    assumed_payments_per_s: float = 500.0

    # Gateway-funded payments (shared/gateways/<name>/). A gateway is enabled when its credentials are
    # configured (its package's configured()): in AWS a
    # Secrets Manager secret ({"key_id", "key_secret"} / {"client_id", "client_secret"}), locally
    # the values themselves. Base URLs are settings so the local simulator can stand in.
    razorpay_base_url: str = "https://api.razorpay.com"
    razorpay_key_id: str | None = None
    razorpay_key_secret: str | None = Field(default=None, repr=False)
    razorpay_secret_arn: str | None = None
    # Razorpay signs webhooks with a secret of their own, set in its Dashboard (not the key secret); in
    # AWS the "webhook_secret" field of the Razorpay secret.
    razorpay_webhook_secret: str | None = Field(default=None, repr=False)
    cashfree_base_url: str = "https://api.cashfree.com/pg"
    cashfree_client_id: str | None = None
    cashfree_client_secret: str | None = Field(default=None, repr=False)
    cashfree_secret_arn: str | None = None
    cashfree_api_version: str = "2025-01-01"
    # Cashfree order_meta.notify_url (webhooks are otherwise configured in its dashboard).
    cashfree_notify_url: str | None = None
    # What the shopper's page loads to open each gateway's checkout (docs/pages.md), handed to it with the
    # checkout: Razorpay Standard Checkout's script (razorpay.com/docs/payments/payment-gateway/web-
    # integration/standard/integration-steps) and Cashfree's JS SDK v3 (cashfree.com/docs/payments/online/
    # web/redirect); locally the simulator's stand-ins, which have the same calling shape.
    razorpay_checkout_script_url: str = "https://checkout.razorpay.com/v1/checkout.js"
    cashfree_sdk_url: str = "https://sdk.cashfree.com/js/v3/cashfree.js"
    # Customer phone sent with every Cashfree order: customer_details.customer_phone is required and we
    # do not collect phones; a placeholder is what Cashfree's integration guides use.
    cashfree_customer_phone: str = "9999999999"
    # How long a checkout can be paid (Cashfree order_expiry_time): long enough for a checkout page,
    # short enough that an abandoned one stops holding the order.
    checkout_ttl_s: int = 1_800
    # A Cashfree order EXPIRED (or TERMINATION_REQUESTED) can still turn PAID: "even if the order expiry
    # time passes, the last attempt" runs to its Transaction Time Limit (cashfree.com/docs/payments/
    # online/resources/payment-lifecycle). A parked job waits this long past the checkout's expiry.
    checkout_settle_grace_s: int = 900
    # A checkout whose gateway order takes payment after it expired (PaymentGateway.order_expires False:
    # Razorpay's) is still fetched by reconciliation this long past its expiry, once a day: a payment
    # made to it late whose webhooks were all lost is found, applied or refunded ("If the webhooks continue to
    # fail for 24 hours, the webhook is disabled": razorpay.com/docs/webhooks/best-practices). At most 180
    # days: Razorpay's API fetches no older order ("Order older than 180 days, please use reports":
    # razorpay.com/docs/api/orders/fetch-with-id).
    checkout_late_watch_s: int = Field(default=7 * 86_400, ge=0, le=180 * 86_400)
    # A parked job nothing woke, or a checkout with no verdict, is fetched again after this long.
    reconcile_after_s: int = 120
    # A failure or drop webhook wakes a parked job at most once this long after it last fetched: the
    # order stays payable, the next attempt's success wakes it at once, and the sweeper looks anyway.
    webhook_wake_interval_s: int = 60
    # A Cashfree webhook signed longer ago is recorded but does no work (reconciliation settles its
    # checkout): past Cashfree's default retries at 2, 10 and 30 minutes, even if a retry keeps its
    # first attempt's timestamp (cashfree.com/docs/api-reference/webhooks/reliability-and-operations).
    webhook_fresh_for_s: int = 3_600
    # Cashfree's order and payment entities say nothing of refunds made in its dashboard, so a Cashfree
    # payment's refunds are read (Get All Refunds for an Order) before it is fulfilled: by default (0)
    # every payment's, and none is ever fulfilled with a refund made at the gateway. That read paces every
    # Cashfree payment at Get Refund's 30 a minute (cashfree.com/docs/payments/online/resources/
    # rate-limits). For a sale, set this to skip it for payments completed less than this long ago (e.g.
    # 1800: Get Payments' 100 a minute then sets the pace, and a backlog of a thousand Cashfree jobs, 750 s
    # at 80 % of it, drains well inside the window). A payment we refund instead is never read first: a
    # refund of ours asking for more than a dashboard refund left is refused, and the refusal reads them.
    # A dashboard refund made inside the window is caught by the REFUND_STATUS_WEBHOOK Cashfree sends
    # once the refund is processed or cancelled (cashfree.com/docs/
    # api-reference/payments/latest/refunds/webhooks): before our job runs, the books refuse the
    # fulfilment; after, the refund is booked out of the order's applied money and put in front of the
    # operator (refunds.after_fulfilment). Or ask Cashfree for a higher Get Refund limit.
    cashfree_refunds_read_after_s: int = 0
    # A gateway call that takes longer has an unknown outcome; the next delivery settles it by fetch.
    gateway_timeout_s: float = 10.0
    # How long a checkout request waits for another request's create call of the same checkout (two
    # tabs, a double click) before answering 503 service_busy: a create answers well within it, and a
    # waiter that then takes a lapsed claim over still has its own two gateway calls' time in enqueue's
    # timeout (infra/components/functions.py leaves 2 s of it beside them).
    checkout_wait_s: float = 1.0
    # The most one gateway record may take: fetch, then capture or refund lookup + refund (three
    # requests of gateway_timeout_s), a limiter wait, and its DB steps. A record that would start with
    # less time left in the invocation is handed back at once instead of being cut off part-way.
    gateway_record_budget_ms: int = 36_000
    # The same for a wallet record: one statement, bounded by the statement timeout.
    wallet_record_budget_ms: int = 6_000
    # The checkout flow's token buckets, one per gateway and endpoint (shared/gateway_limits.py:
    # bucket()). Cashfree publishes per-minute limits per endpoint, production and sandbox; which set
    # applies follows cashfree_base_url (sandbox.cashfree.com is the sandbox) unless named here.
    cashfree_environment: Literal["production", "sandbox"] | None = None
    # Razorpay publishes no numbers ("Razorpay uses a request Rate Limiter", api/pagination): a
    # conservative requests-per-minute per endpoint, 429s handled with backoff.
    razorpay_limit_per_min: float = 600.0
    # Overrides in requests per minute, "gateway.endpoint": n (PQ_GATEWAY_LIMITS_PER_MIN as JSON).
    gateway_limits_per_min: dict[str, float] = Field(default_factory=dict)
    # We use at most this share of a published limit in any minute: other clients of the same account
    # and our bucket's clock against theirs take the rest.
    gateway_limit_share: float = 0.8
    # The bucket's size (burst) as a share of the per-minute limit, at least one request.
    gateway_burst_share: float = 0.1
    # A worker waits this long at most for a token; a longer wait hands the message back instead.
    limiter_max_wait_ms: int = 1_000
    # A job that finds no token takes one up to this far in its bucket's future and comes back for it
    # then, once (each hand-back is a receive maxReceiveCount counts). Deep enough for a backlog of
    # minutes at the published limits (500 Cashfree payments at 80 Get Payments a minute: ~6 min);
    # short enough that the calls which never reserve (checkouts, the sweeper's reconciliation) are
    # not shut out of a bucket they share for long. At most SQS's 12-hour visibility timeout.
    limiter_max_reserve_s: int = Field(default=900, ge=0, le=43_200)
    # A gateway's circuit (shared/sql/circuits.sql) opens after this many checkout calls in a row failed with a
    # 5xx or a timeout; checkouts that may go elsewhere ("method": "auto") then do. Enough that the odd 5xx of a
    # healthy gateway never opens it, few enough that a sale stops sending shoppers into an outage at once
    # (each of those few is routed on to the next gateway itself).
    gateway_circuit_failures: int = Field(default=5, ge=1)
    # How long an open circuit sends nothing before one trial call goes (half-open; its success closes the
    # circuit). A failed trial costs its shopper nothing but a detour to the next gateway, so the wait is short:
    # a shopper who named the gateway is told to come back after it (Retry-After).
    gateway_circuit_cooldown_s: float = Field(default=15.0, gt=0)
    # Backoff after a 429 / 5xx: full jitter on base * 2^(delivery-1), capped (seconds, as SQS takes them).
    gateway_backoff_base_s: float = 1.0
    gateway_backoff_cap_s: int = 300

    webhook_url: str | None = None
    webhook_secret: str | None = Field(default=None, repr=False)
    webhook_secret_arn: str | None = None
    webhook_timeout_s: float = 5.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

"""The six Lambda functions: code, environment, network placement, permissions."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra import build_assets
from infra.components.common import log_group
from infra.components.database import DB_NAME, DB_PORT, Database
from infra.components.network import Network
from infra.components.notifications import Notifications
from infra.components.queues import PaymentQueues
from infra.config import EnvironmentConfig
from shared.db_roles import LOGIN_ROLES
from shared.observability import NAMESPACE, SERVICE

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64


@dataclass(frozen=True)
class _Spec:
    name: str
    description: str
    timeout_seconds: int
    memory_mb: int = 512
    reserved_concurrency: int | None = None

    @classmethod
    def of(cls, name: str, description: str, config: EnvironmentConfig, memory_mb: int = 512) -> _Spec:
        """A database function's spec: its timeout from the config's connection budget, its reserved
        concurrency where the environment reserves."""
        limits = config.database_clients()[name]
        return cls(name, description, limits.timeout_seconds, memory_mb, config.reserved_concurrency().get(name))


class Functions(Construct):
    """Builds every function from `functions/<name>/handler.py` plus `shared/`, and wires each
    one to exactly the resources it uses, through `grant_*`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        network: Network,
        database: Database,
        queues: PaymentQueues,
        notifications: Notifications,
        install_dependencies: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._network = network
        self._database = database
        self.dependencies = lambda_.LayerVersion(
            self,
            "Dependencies",
            description="requirements-lambda.lock installed for arm64 / CPython 3.12",
            code=lambda_.Code.from_asset(str(build_assets.build_dependencies(install=install_dependencies))),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )
        self.root_certificates = lambda_.LayerVersion(
            self,
            "RootCertificates",
            description="Amazon Trust Services root CAs: TLS to RDS Proxy with sslmode=verify-full",
            code=lambda_.Code.from_asset(str(build_assets.ROOT_CERTS_DIR)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )
        # The functions that talk to PostgreSQL share one security group the proxy admits.
        self.db_clients = ec2.SecurityGroup(
            self,
            "DatabaseClients",
            vpc=network.vpc,
            allow_all_outbound=True,
            description="Functions that connect to RDS Proxy",
        )
        database.allow_from(self.db_clients, "PostgreSQL from the database functions")

        processor = config.processor
        # Timeouts and reserved concurrency of the database functions come from one table in
        # the config, which checks them against the proxy's connection budget and borrow timeout.
        self.enqueue = self._function(
            _Spec.of("enqueue", "POST /v1/payments: records the job, sends it to payments.fifo", config),
            # POST /v1/checkouts creates the gateway order at Razorpay / Cashfree.
            subnets=network.egress_subnets,
        )
        self.status = self._function(
            _Spec.of("status", "Job status, queue status, metrics and DB health for the API", config),
            subnets=network.isolated_subnets,
        )
        self.process_payment = self._function(
            _Spec.of(
                "process_payment",
                "Consumes payments.fifo: one payment transaction per message",
                config,
                memory_mb=processor.memory_mb,
            ),
            # A route to the internet: the payment gateways.
            subnets=network.egress_subnets,
        )
        self.sweeper = self._function(
            _Spec.of("sweeper", "Re-sends unsent jobs and re-publishes unpublished events", config),
            # The reconciliation fetches checkouts and refunds at the gateways.
            subnets=network.egress_subnets,
        )
        self.migrate = self._function(
            _Spec.of("migrate", "Applies shared/migrations and shared/sql on deploy", config),
            subnets=network.isolated_subnets,
        )
        self.notify = self._function(
            _Spec("notify", "Delivers payment events to the merchant webhook", 30, memory_mb=256),
            subnets=None,
        )

        queue, dlq = queues.queue, queues.dlq
        self.enqueue.add_environment("PQ_QUEUE_BACKEND", "sqs")
        self.enqueue.add_environment("PQ_QUEUE_URL", queue.queue_url)
        queue.grant_send_messages(self.enqueue)

        # Queue depth comes from SQS attributes; without the backend it would read PGMQ tables.
        self.status.add_environment("PQ_QUEUE_BACKEND", "sqs")
        self.status.add_environment("PQ_QUEUE_URL", queue.queue_url)
        self.status.add_environment("PQ_DLQ_URL", dlq.queue_url)
        queue.grant(self.status, "sqs:GetQueueAttributes")
        # POST /v1/dlq/redrive: an SQS message move task from the DLQ back to payments.fifo (which needs
        # ReceiveMessage and DeleteMessage on the DLQ too). POST /v1/dlq/jobs/{job_id}/drop: receive the
        # DLQ's messages, delete the job's, give the rest back (ChangeMessageVisibility).
        dlq.grant(
            self.status,
            "sqs:GetQueueAttributes",
            "sqs:StartMessageMoveTask",
            "sqs:ListMessageMoveTasks",
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
        )
        queue.grant_send_messages(self.status)

        bus = notifications.bus
        # status: a shopper leaving the line ends their job, and its PaymentFailed event goes out at once.
        for publisher in (self.process_payment, self.sweeper, self.status):
            publisher.add_environment("PQ_EVENT_BUS_BACKEND", "eventbridge")
            publisher.add_environment("PQ_EVENT_BUS_NAME", bus.event_bus_name)
            bus.grant_put_events_to(publisher)

        # The redrive policy's own number: the processor marks a failed record's last allowed
        # delivery as dead-lettered when it records the failure (the queue moves the message).
        self.process_payment.add_environment("PQ_MAX_RECEIVE_COUNT", str(config.max_receive_count))
        # Gateway backoff hands a message back with a delay (ChangeMessageVisibility, granted
        # with the event source's consume permissions).
        self.process_payment.add_environment("PQ_QUEUE_BACKEND", "sqs")
        self.process_payment.add_environment("PQ_QUEUE_URL", queue.queue_url)
        # A poison message goes to the DLQ on its first delivery (SendMessage there, then
        # DeleteMessage from the queue, granted with the consume permissions).
        self.process_payment.add_environment("PQ_DLQ_URL", dlq.queue_url)
        dlq.grant_send_messages(self.process_payment)
        # A gateway job it sends again itself: one whose success webhook came while it fetched
        # (pq_gateway_park's resend), one whose every receive only waited for a limiter slot.
        queue.grant_send_messages(self.process_payment)
        self._gateway_credentials(config)
        self.process_payment.add_event_source(
            sources.SqsEventSource(
                queue,
                batch_size=processor.batch_size,
                max_concurrency=processor.max_concurrency,
                report_batch_item_failures=True,
            )
        )

        self.sweeper.add_environment("PQ_QUEUE_BACKEND", "sqs")
        self.sweeper.add_environment("PQ_QUEUE_URL", queue.queue_url)
        queue.grant_send_messages(self.sweeper)
        # A failed sweep is simply redone by the next minute's run, never retried on top of it.
        self.sweeper.configure_async_invoke(retry_attempts=0)
        events.Rule(
            self,
            "SweepEveryMinute",
            description="Runs the sweeper: jobs whose send failed, events not yet published",
            schedule=events.Schedule.rate(Duration.minutes(1)),
            targets=[targets.LambdaFunction(self.sweeper, retry_attempts=0)],
        )

        if config.webhook_url:
            self.notify.add_environment("PQ_WEBHOOK_URL", config.webhook_url)
        if config.webhook_secret_name:
            webhook_secret = secretsmanager.Secret.from_secret_name_v2(
                self, "WebhookSecret", config.webhook_secret_name
            )
            self.notify.add_environment("PQ_WEBHOOK_SECRET_ARN", webhook_secret.secret_arn)
            webhook_secret.grant_read(self.notify)

    def _gateway_credentials(self, config: EnvironmentConfig) -> None:
        """The gateways' secrets (Razorpay {"key_id", "key_secret", "webhook_secret"}, Cashfree
        {"client_id", "client_secret"}): enqueue creates checkouts and verifies checkout and webhook
        signatures, status shows Razorpay's key_id, the processor and the sweeper call the gateways."""
        for gateway, name in (("RAZORPAY", config.razorpay_secret_name), ("CASHFREE", config.cashfree_secret_name)):
            if not name:
                continue
            secret = secretsmanager.Secret.from_secret_name_v2(self, f"{gateway.title()}Secret", name)
            for function in (self.enqueue, self.status, self.process_payment, self.sweeper):
                function.add_environment(f"PQ_{gateway}_SECRET_ARN", secret.secret_arn)
                secret.grant_read(function)
        # A checkout makes at most two gateway requests (look a lost order up, then create it) inside
        # enqueue's timeout: each gets under half of it. A slower answer is a 503 the client retries,
        # settled by the lookup.
        if config.razorpay_secret_name or config.cashfree_secret_name:
            limit = config.database_clients()["enqueue"].timeout_seconds
            self.enqueue.add_environment("PQ_GATEWAY_TIMEOUT_S", str(max(1.0, (limit - 2) / 2)))

    def send_waiting_clients_to(self, now_serving_url: str) -> None:
        """The functions that answer a job in line (enqueue's 202, status's job and leave answers) name
        the cached figure's URL as its now_serving_url: a relative path would send every waiting
        client's reads through the API, a Lambda and the database each."""
        for function in (self.enqueue, self.status):
            function.add_environment("PQ_NOW_SERVING_URL", now_serving_url)

    @property
    def all(self) -> list[lambda_.Function]:
        return [self.enqueue, self.status, self.process_payment, self.notify, self.sweeper, self.migrate]

    @property
    def database_clients(self) -> list[lambda_.Function]:
        return [self.enqueue, self.status, self.process_payment, self.sweeper, self.migrate]

    def _function(self, spec: _Spec, *, subnets: ec2.SubnetSelection | None) -> lambda_.Function:
        config = self._config
        construct_id = "".join(part.title() for part in spec.name.split("_"))
        environment = {
            "POWERTOOLS_SERVICE_NAME": SERVICE,
            "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": config.log_level,
            # Responses carry payment details; keep them out of X-Ray.
            "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
            "PQ_ENV": config.name,
        }
        vpc_options: dict[str, object] = {}
        login = LOGIN_ROLES.get(spec.name)
        if subnets is not None:
            environment |= {
                "PQ_DB_HOST": self._database.proxy.endpoint,
                "PQ_DB_PORT": str(DB_PORT),
                "PQ_DB_NAME": DB_NAME,
                # Its own role with an IAM token (least privilege, shared/sql/grants.sql); the migrate
                # function, which owns the schema, with the master user's secret.
                **({"PQ_DB_USER": login} if login else {"PQ_DB_SECRET_ARN": self._database.secret.secret_arn}),
                # RDS Proxy presents an ACM certificate (a wildcard for its endpoint), which chains
                # to the Amazon Trust Services roots, not to the RDS CA bundle.
                "PQ_DB_SSLMODE": "verify-full",
                "PQ_DB_SSLROOTCERT": build_assets.LAYER_ROOT_CERT,
                # Tells the functions' sessions apart in pg_stat_activity and the server log.
                "PQ_DB_APPLICATION_NAME": f"pq-{spec.name}",
            }
            vpc_options = {
                "vpc": self._network.vpc,
                "vpc_subnets": subnets,
                "security_groups": [self.db_clients],
            }
        function = lambda_.Function(
            self,
            construct_id,
            description=spec.description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=f"functions.{spec.name}.handler.handler",
            code=lambda_.Code.from_asset(str(build_assets.build_function_code(spec.name))),
            layers=[self.dependencies, self.root_certificates] if subnets is not None else [self.dependencies],
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_seconds),
            reserved_concurrent_executions=spec.reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group(self, f"{construct_id}Logs", config),
            environment=environment,
            **vpc_options,  # type: ignore[arg-type]
        )
        if subnets is not None and login:
            self._database.proxy.grant_connect(function, login)
        elif subnets is not None:
            self._database.secret.grant_read(function)
        return function

"""The AWS-shaped run: wallet and gateway payments end to end through the Lambda handlers and their AWS adapters.

Each function runs in its own process with its environment from the synthesized dev template,
talks to PostgreSQL through PgBouncer in transaction mode (the RDS Proxy stand-in) as its own
database role with an IAM token (PgBouncer lets those roles in unchecked; the migrate function logs
in with the master credentials from a Secrets Manager secret), and to SQS FIFO + DLQ, EventBridge,
SNS and Secrets Manager on moto's server. How each AWS part is played: tests/aws/harness.py.

What the harness changes from the template, and why:
- PQ_DB_HOST / PQ_DB_PORT / PQ_DB_NAME / PQ_DB_SSLMODE (and no PQ_DB_SSLROOTCERT): PgBouncer on
  loopback, this run's database, no TLS locally; the secret's host/port say the same.
- the payments queue's VisibilityTimeout: 1 s instead of 720 s, and the processor's
  PQ_GATEWAY_BACKOFF_CAP_S: 1 s instead of 300 s, so a failed record comes back within the run (the
  payment in a 429 storm below needs maxReceiveCount = 10 deliveries to reach the DLQ).
- PQ_WEBHOOK_URL: a receiver on loopback; PQ_RAZORPAY_BASE_URL / PQ_CASHFREE_BASE_URL: the
  gateway simulator (local/gateway_sim.py), whose credentials the gateways' secrets in moto hold.
- KMS keys are not created: moto's queues and topics need none.
Two runs change less or more (Setup): the held-back records' visibility keeps the template's timing
(AS_TEMPLATED), and the dropped connections get a PgBouncer of their own that closes idle clients,
reached through a ConnectionRelay that can lose the pool's goodbyes.

Redrive: moto 5.2.5 answers StartMessageMoveTask with HTTP 500, so the move task is not run here.
The run covers both ways into the DLQ -- SQS's own maxReceiveCount move (the template's redrive
policy) for a payment the gateway keeps refusing, the processor's own move for a poison message --
and the operator's view of it (GET /v1/queue/status); the move task's call shape is
covered by tests/unit/test_sqs_redrive.py (botocore's Stubber checks it against the SQS model),
and the redrive of dead-lettered jobs by tests/integration/test_dlq_redrive.py (PGMQ).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import socket
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
from aws_cdk import cx_api

from infra import config as cfg
from infra.synth import load_cdk_context
from local.gateway_sim import Simulator
from local.invariants import _CHECKS
from local.lambda_shim import http_api_event
from local.pgbouncer import PgBouncer
from local.seed import SeedPlan, seed
from shared.db import Database
from shared.db_roles import LOGIN_ROLES
from shared.notifications import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from tests.aws.harness import (
    ConnectionRelay,
    EventDelivery,
    EventSourceMapping,
    FunctionError,
    LambdaContainer,
    WebhookReceiver,
    lambda_runtime_env,
    queue_attributes,
    wait_until,
)
from tests.aws.pinning import PGBOUNCER_OWN, STATEMENT_PIN_BYTES, Logged, logged_until_now, pinning_reasons
from tests.aws.template import Resolver, Template, match_route
from tests.conftest import _admin_exec, _url
from tests.infra.conftest import DEPLOYER_CONTEXT
from tests.integration.gateway_helpers import CASHFREE, RAZORPAY

REGION = "ap-south-1"
ACCOUNT = "123456789012"  # moto's default account
ENV = "dev"
USERS = 12
ORDERS_PER_USER = 3  # so each user's jobs must be applied in the order they were accepted
POOR_EVERY = 4  # every 4th user cannot pay: PaymentFailed events too
GATEWAY_USERS = 8  # they also pay one order each at a gateway (the simulator): 4 Razorpay, 4 Cashfree
VISIBILITY_S = 1
MAX_RECEIVE_COUNT = 10  # the template's redrive policy (asserted in the run)
FUNCTIONS = ("enqueue", "status", "process_payment", "notify", "sweeper", "migrate")
# The roles that run per request or per message (migrate runs once per deploy, on its own session).
REQUEST_ROLES = ("pq-enqueue", "pq-status", "pq-process_payment", "pq-sweeper")
OPERATOR_SCOPE = "payments/operator"
SECRET_ARN = re.compile(r"^arn:aws:secretsmanager:[^:]+:\d+:secret:(?P<name>[^:]+)$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """The Razorpay and Cashfree simulator on loopback, with the credentials the secrets hold."""
    sim = Simulator(razorpay=RAZORPAY, cashfree=CASHFREE).start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def dev_template(cloud_assembly: cx_api.CloudAssembly) -> Template:
    config = cfg.load(load_cdk_context() | DEPLOYER_CONTEXT, ENV)
    return Template(cloud_assembly.get_stack_by_name(config.stack_name).template)


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@dataclass
class Deployment:
    """The dev stack's parts, stood up locally; see the module docstring for what differs."""

    template: Template
    database: str
    database_url: str  # direct, for the harness's own setup and checks
    admin_url: str
    sqs: Any
    secrets: Any
    webhook: WebhookReceiver
    webhook_secret: str
    queue_url: str
    dlq_url: str
    containers: dict[str, LambdaContainer]
    mapping: EventSourceMapping
    delivery: EventDelivery
    routes: dict[str, tuple[str, list[str]]]
    env: dict[str, dict[str, str]] = field(default_factory=dict)
    relay: ConnectionRelay | None = None

    def api(self, method: str, path: str, user: str, *, body: dict[str, Any] | None = None, **headers: str) -> Any:
        """A request as API Gateway hands it to the route's function after the JWT authorizer."""
        route_key, parameters = match_route(self.routes, method, path)
        function, required_scopes = self.routes[route_key]
        scopes = [OPERATOR_SCOPE] if required_scopes else None
        raw = json.dumps(body).encode() if body is not None else b""
        event = http_api_event(
            method=method,
            path=path,
            route_key=route_key,
            query="",
            headers={
                "content-type": "application/json",
                **{k.replace("_", "-").lower(): v for k, v in headers.items()},
            },
            body=raw,
            claims={"sub": user, "scope": " ".join(scopes or [])},
            scopes=scopes,
            path_parameters=parameters or None,
            source_ip="127.0.0.1",
        )
        return self.containers[function].invoke(event)


def _create_queues(template: Template, sqs: Any, resolve: Resolver, visibility_s: int | None) -> None:
    queues = template.of_type("AWS::SQS::Queue")
    # Dead-letter queues first: the others' redrive policies name them.
    for logical_id, queue in sorted(queues.items(), key=lambda kv: "RedrivePolicy" in kv[1]["Properties"]):
        properties = queue["Properties"]
        attributes = queue_attributes(properties, resolve)
        if "RedrivePolicy" in properties and visibility_s is not None:
            attributes["VisibilityTimeout"] = str(visibility_s)
        url = sqs.create_queue(QueueName=properties["QueueName"], Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        resolve.refs[logical_id] = url
        resolve.attributes[(logical_id, "Arn")] = arn
        resolve.attributes[(logical_id, "QueueName")] = properties["QueueName"]


def _tap(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _secret_value(variable: str) -> str:
    """Contents for a secret the template only names: the simulator's credentials, a webhook key."""
    if variable == "PQ_RAZORPAY_SECRET_ARN":
        return json.dumps({"key_id": RAZORPAY[0], "key_secret": RAZORPAY[1]})
    if variable == "PQ_CASHFREE_SECRET_ARN":
        return json.dumps({"client_id": CASHFREE[0], "client_secret": CASHFREE[1]})
    return secrets.token_hex(32)


@dataclass(frozen=True)
class Setup:
    """What a test's deployment changes from the template (the module docstring says why)."""

    # the payments queue's VisibilityTimeout and the processor's PQ_GATEWAY_BACKOFF_CAP_S (None: the template's)
    visibility_s: int | None = VISIBILITY_S
    backoff_cap_s: int | None = 1
    # PgBouncer of its own closing clients and server connections idle this long, behind a ConnectionRelay
    # (None: the session's PgBouncer, which closes nothing)
    idle_timeout_s: int | None = None


AS_TEMPLATED = Setup(visibility_s=None, backoff_cap_s=None)


@pytest.fixture
def deployment(
    request: pytest.FixtureRequest,
    dev_template: Template,
    moto_endpoint: str,
    pg_admin_url: str,
    simulator: Simulator,
    tmp_path: Path,
) -> Iterator[Deployment]:
    template = dev_template
    setup: Setup = getattr(request, "param", Setup())
    pool: PgBouncer
    relay: ConnectionRelay | None = None
    if setup.idle_timeout_s is None:
        pool = request.getfixturevalue("pgbouncer")
        host, port = pool.host, pool.port
    else:
        pool = PgBouncer(
            pg_admin_url,
            tmp_path / "pgbouncer",
            client_idle_timeout_s=setup.idle_timeout_s,
            server_idle_timeout_s=setup.idle_timeout_s,
            iam_users=LOGIN_ROLES.values(),
        ).start()
        relay = ConnectionRelay(pool.host, pool.port).start()
        host, port = relay.host, relay.port
    name = f"aws_run_{uuid.uuid4().hex[:10]}"
    _admin_exec(pg_admin_url, f"CREATE DATABASE {name}")
    # Every statement in this database reaches the CSV log with its full text and session's name.
    _admin_exec(pg_admin_url, f"ALTER DATABASE {name} SET log_statement = 'all'")
    _admin_exec(pg_admin_url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    # Each test's deployment starts from an empty AWS account: the module's moto server forgets the last one's.
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10)
    sqs, sns, events, secretsmanager = (_client(s, moto_endpoint) for s in ("sqs", "sns", "events", "secretsmanager"))
    resolve = Resolver(region=REGION, account=ACCOUNT)
    webhook = WebhookReceiver().start()
    containers: dict[str, LambdaContainer] = {}
    try:
        _create_queues(template, sqs, resolve, setup.visibility_s)
        # The DB credentials as RDS keeps them in Secrets Manager; the proxy endpoint is PgBouncer.
        instance_id, _ = next(iter(template.of_type("AWS::RDS::DBInstance").items()))
        proxy_id, _ = next(iter(template.of_type("AWS::RDS::DBProxy").items()))
        db_secret = secretsmanager.create_secret(
            Name=f"rds!db-{uuid.uuid4()}",
            SecretString=json.dumps(
                {
                    "username": pool.user,
                    "password": pool.password,
                    "engine": "postgres",
                    "host": host,
                    "port": port,
                    "dbname": name,
                }
            ),
        )["ARN"]
        resolve.attributes[(instance_id, "MasterUserSecret.SecretArn")] = db_secret
        resolve.attributes[(proxy_id, "Endpoint")] = host
        # The now-serving figure's CloudFront name (the shape CloudFront gives one): the API answers with it.
        for distribution_id in template.of_type("AWS::CloudFront::Distribution"):
            resolve.attributes[(distribution_id, "DomainName")] = "d111111abcdef8.cloudfront.net"

        for bus_id, bus in template.of_type("AWS::Events::EventBus").items():
            events.create_event_bus(Name=bus["Properties"]["Name"])
            resolve.refs[bus_id] = bus["Properties"]["Name"]
        for topic_id, topic in template.of_type("AWS::SNS::Topic").items():
            resolve.refs[topic_id] = sns.create_topic(Name=topic["Properties"]["TopicName"])["TopicArn"]

        # Each function's environment from the template, references replaced by local endpoints.
        created: dict[str, str] = {db_secret: db_secret}
        env: dict[str, dict[str, str]] = {}
        for function in FUNCTIONS:
            variables = template.environment(function, resolve)
            for key, value in variables.items():
                if (m := SECRET_ARN.match(value)) and value not in created:
                    created[value] = secretsmanager.create_secret(Name=m["name"], SecretString=_secret_value(key))[
                        "ARN"
                    ]
                if value in created:
                    variables[key] = created[value]
            if "PQ_DB_HOST" in variables:
                variables |= {"PQ_DB_PORT": str(port), "PQ_DB_NAME": name, "PQ_DB_SSLMODE": "disable"}
                variables.pop("PQ_DB_SSLROOTCERT", None)  # the layer's CA bundle: no TLS locally
            if "PQ_WEBHOOK_URL" in variables:
                variables["PQ_WEBHOOK_URL"] = webhook.url
            variables |= {"PQ_RAZORPAY_BASE_URL": simulator.url, "PQ_CASHFREE_BASE_URL": simulator.url + "/pg"}
            if function == "process_payment" and setup.backoff_cap_s is not None:
                variables["PQ_GATEWAY_BACKOFF_CAP_S"] = str(setup.backoff_cap_s)
            _, resource = template.function(function)
            env[function] = variables | lambda_runtime_env(
                f"payment-queue-{ENV}-{function}",
                int(resource["Properties"].get("MemorySize", 128)),
                REGION,
                moto_endpoint,
            )
        webhook_secret = secretsmanager.get_secret_value(SecretId=env["notify"]["PQ_WEBHOOK_SECRET_ARN"])[
            "SecretString"
        ]

        for function in FUNCTIONS:
            containers[function] = LambdaContainer(
                function, env[function], template.timeout_s(function), tmp_path
            ).start()
        for container in containers.values():
            container.wait_ready()

        # The bus's rules, with a tap queue in place of their SNS targets; the topic's Lambda
        # subscription becomes an SQS subscription the harness reads and hands to notify.
        bus_id = next(iter(template.of_type("AWS::Events::EventBus")))
        rule_taps, rule_topics = {}, {}
        for rule_id, rule in template.event_rules(bus_id).items():
            properties = rule["Properties"]
            bus_name = resolve(properties["EventBusName"])
            events.put_rule(Name=rule_id, EventBusName=bus_name, EventPattern=json.dumps(properties["EventPattern"]))
            tap_url, tap_arn = _tap(sqs, f"tap-{rule_id}"[:80])
            targets = [{"Id": t["Id"], "Arn": resolve(t["Arn"])} for t in properties["Targets"]]
            # Only the tap goes to moto, which raises NotImplementedError for an SNS target.
            events.put_targets(Rule=rule_id, EventBusName=bus_name, Targets=[{"Id": "tap", "Arn": tap_arn}])
            rule_taps[rule_id] = tap_url
            (rule_topics[rule_id],) = [t["Arn"] for t in targets if ":sns:" in t["Arn"]]
        subscriptions = [
            s["Properties"]
            for s in template.of_type("AWS::SNS::Subscription").values()
            if s["Properties"]["Protocol"] == "lambda"
            and s["Properties"]["Endpoint"] == {"Fn::GetAtt": [template.function("notify")[0], "Arn"]}
        ]
        assert len(subscriptions) == 1, "notify is subscribed to exactly one topic"
        topic_arn = resolve(subscriptions[0]["TopicArn"])
        topic_tap_url, topic_tap_arn = _tap(sqs, "tap-payment-events-topic")
        subscription_arn = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=topic_tap_arn)["SubscriptionArn"]

        _, payments_queue = template.queue("payments.fifo")
        payments_id = template.queue("payments.fifo")[0]
        dlq_id = template.queue("payments-dlq.fifo")[0]
        mapping_properties = template.event_source_mapping("process_payment")
        assert resolve(mapping_properties["EventSourceArn"]) == resolve.attributes[(payments_id, "Arn")]
        mapping = EventSourceMapping(
            sqs=sqs,
            queue_url=resolve.refs[payments_id],
            queue_arn=resolve.attributes[(payments_id, "Arn")],
            function=containers["process_payment"],
            batch_size=int(mapping_properties["BatchSize"]),
            max_receive_count=int(payments_queue["Properties"]["RedrivePolicy"]["maxReceiveCount"]),
            region=REGION,
        )
        delivery = EventDelivery(
            sqs=sqs,
            sns=sns,
            rule_taps=rule_taps,
            rule_topics=rule_topics,
            topic_taps={topic_arn: topic_tap_url},
            notify=containers["notify"],
            subscription_arn=subscription_arn,
        )
        yield Deployment(
            template=template,
            database=name,
            database_url=_url(pg_admin_url, name),
            admin_url=pg_admin_url,
            sqs=sqs,
            secrets=secretsmanager,
            webhook=webhook,
            webhook_secret=webhook_secret,
            queue_url=resolve.refs[payments_id],
            dlq_url=resolve.refs[dlq_id],
            containers=containers,
            mapping=mapping,
            delivery=delivery,
            routes=template.routes(),
            env=env,
            relay=relay,
        )
    finally:
        for container in containers.values():
            container.close()  # all at once: each ends when its stdin does
        for container in containers.values():
            container.stop()
        webhook.stop()
        if relay is not None:
            relay.stop()
            pool.stop()
        _admin_exec(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _seed(url: str) -> dict[str, list[int]]:
    """USERS users, ORDERS_PER_USER pending orders each (oldest first); every POOR_EVERY-th user is broke."""
    db = Database(lambda: url, connect_timeout_s=10, application_name="pq-harness")
    try:
        seed(db, SeedPlan(users=USERS, poor_every=POOR_EVERY))
        for n in range(2, ORDERS_PER_USER + 1):
            db.execute(
                """INSERT INTO orders (user_id, items, total_paise)
                   SELECT u.id, jsonb_build_array(jsonb_build_object(
                              'product_id', p.id, 'quantity', 1, 'unit_price_paise', p.price_paise)), p.price_paise
                     FROM users u, products p WHERE p.id = (SELECT min(id) + %s FROM products) ORDER BY u.id""",
                (n - 1,),
            )
        orders: dict[str, list[int]] = {}
        for row in db.fetch_all("SELECT user_id, id FROM orders ORDER BY id"):
            orders.setdefault(row["user_id"], []).append(row["id"])
        return orders
    finally:
        db.close()


def _gateway_orders(
    d: Deployment, simulator: Simulator, users: tuple[int, ...] = (*range(1, GATEWAY_USERS + 1), 1)
) -> list[tuple[str, dict[str, Any]]]:
    """One more order for each of the users (by number: the first GATEWAY_USERS, and the first again), its
    checkout opened through the API (POST /v1/checkouts, the enqueue function) and paid at the simulator's
    checkout page (Razorpay for odd users, Cashfree for even): (user, the POST /v1/payments body the page
    then sends)."""
    db = Database(lambda: d.database_url, connect_timeout_s=10, application_name="pq-harness")
    paid = []
    try:
        for n in users:  # by default the last one meets the 429 storm
            user = f"demo-user-{n}"
            row = db.fetch_one(
                """INSERT INTO orders (user_id, items, total_paise)
                   SELECT %s, jsonb_build_array(jsonb_build_object(
                              'product_id', id, 'quantity', 1, 'unit_price_paise', price_paise)), price_paise
                     FROM products ORDER BY id DESC LIMIT 1
                RETURNING id, total_paise, currency""",
                (user,),
            )
            assert row is not None
            method = "razorpay" if n % 2 else "cashfree"
            opened = d.api("POST", "/v1/checkouts", user, body={"order_id": row["id"], "method": method})
            assert opened["statusCode"] == 201, opened
            gateway_order = _body(opened)[method]["order_id"]
            handed = _post(f"{simulator.url}/_sim/{method}/checkout", {"order_id": gateway_order, "outcome": "success"})
            body: dict[str, Any] = {"order_id": row["id"], "method": method}
            if method == "razorpay":
                body |= {k: handed[k] for k in ("razorpay_order_id", "razorpay_payment_id", "razorpay_signature")}
            paid.append((user, body))
        return paid
    finally:
        db.close()


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def _admin_rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(url, application_name="pq-harness")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()


def _queue_counts(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _body(response: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(response["body"])
    return body


def test_wallet_and_gateway_payments_run_end_to_end_through_pgbouncer_and_moto_and_no_statement_would_pin(
    deployment: Deployment, simulator: Simulator
) -> None:
    d = deployment
    started = time.monotonic()

    # Given the first deploy's migrations, run by the migrate function through PgBouncer
    applied = d.containers["migrate"].invoke({"RequestType": "Create"})["applied"]
    assert "0005_role_settings.sql" in applied
    orders = _seed(d.database_url)
    *gateway, stormed = _gateway_orders(d, simulator)
    log_file, log_offset = _window_start(d)

    # When every user pays each of their orders, oldest first (POST /v1/payments, API Gateway v2)
    jobs: dict[str, tuple[str, int]] = {}
    for user, user_orders in orders.items():
        for order_id in user_orders:
            response = d.api(
                "POST",
                "/v1/payments",
                user,
                body={"order_id": order_id, "method": "wallet"},
                idempotency_key=f"aws-run-{order_id}",
            )
            assert response["statusCode"] == 202, response
            jobs[_body(response)["job_id"]] = (user, order_id)
    # and the gateway-paid orders, after each user's wallet orders
    for user, body in gateway:
        response = d.api("POST", "/v1/payments", user, body=body, idempotency_key=f"aws-run-{body['order_id']}")
        assert response["statusCode"] == 202, response
        jobs[_body(response)["job_id"]] = (user, body["order_id"])
    gateway_orders = {body["order_id"] for _, body in gateway}
    # a client retry with the same key gets the same job back
    user, order_id = next(iter(jobs.values()))
    replay = d.api(
        "POST",
        "/v1/payments",
        user,
        body={"order_id": order_id, "method": "wallet"},
        idempotency_key=f"aws-run-{order_id}",
    )
    assert replay["statusCode"] == 202 and _body(replay)["job_id"] == next(iter(jobs))
    # and a message no job stands behind, which the processor moves to the DLQ itself
    d.sqs.send_message(
        QueueUrl=d.queue_url,
        MessageBody=json.dumps({"job_id": str(uuid.uuid4()), "user_id": "nobody", "order_id": 0, "method": "wallet"}),
        MessageGroupId="poison",
        MessageDeduplicationId="poison-1",
    )

    # And the event source mapping and the event delivery run until everything has settled
    def settled() -> bool:
        return d.mapping.idle() and _queue_counts(d.sqs, d.queue_url) == 0 and len(d.webhook.requests) >= len(jobs)

    wait_until(settled, lambda: d.mapping.poll() + d.delivery.pump(), timeout_s=90)

    # And one more Razorpay payment meets a gateway that answers every request 429: handed back
    # with ChangeMessageVisibility on each delivery, it reaches the DLQ after maxReceiveCount
    _post(f"{simulator.url}/_sim/config", {"storm_until": time.time() + 120, "retry_after_s": 1})
    stuck_user, stuck_body = stormed
    response = d.api("POST", "/v1/payments", stuck_user, body=stuck_body, idempotency_key="aws-run-storm")
    assert response["statusCode"] == 202, response
    stuck_job = _body(response)["job_id"]
    wait_until(
        lambda: d.mapping.figures.dead_lettered == 1 and d.mapping.idle() and _queue_counts(d.sqs, d.queue_url) == 0,
        d.mapping.poll,
        timeout_s=60,
    )
    _post(f"{simulator.url}/_sim/config", {"storm_until": 0})
    sweep = d.containers["sweeper"].invoke(
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}, "id": str(uuid.uuid4())}
    )
    statuses = {job_id: _body(d.api("GET", f"/v1/payments/{job_id}", user)) for job_id, (user, _) in jobs.items()}
    queue = d.api("GET", "/v1/queue/status", "operator")
    seconds = time.monotonic() - started
    statements = _window_statements(d)
    logged = _window_log(d, log_file, log_offset)

    # Then every job reached its end: broke users fail for their balance, everyone else is paid
    poor = {f"demo-user-{n}" for n in range(POOR_EVERY, USERS + 1, POOR_EVERY)}
    for job_id, (user, order_id) in jobs.items():
        expected = "failed" if user in poor and order_id not in gateway_orders else "succeeded"
        assert statuses[job_id]["status"] == expected, (job_id, statuses[job_id])
    # (its reconciliation found nothing to settle: every checkout was submitted and paid; its books check, no
    # money in no book)
    assert sweep == {
        "jobs_resent": 0,
        "events_republished": 0,
        "parked_jobs_woken": 0,
        "checkouts_reconciled": 0,
        "refunds_settled": 0,
        "refunds_retried": 0,
        "sold_out_jobs_ended": 0,
        "payments_unaccounted": 0,
        "paise_unaccounted": 0,
    }
    # And no gateway payment was captured twice
    stats = json.loads(urllib.request.urlopen(f"{simulator.url}/_sim/stats", timeout=5).read())
    assert stats["double_captures"] == 0
    # And the stormed payment went to the DLQ after the template's maxReceiveCount deliveries (its
    # job waits there for an operator), the poison message at its first
    assert d.mapping.max_receive_count == MAX_RECEIVE_COUNT and d.mapping.figures.dead_lettered == 1
    assert d.mapping.figures.received >= len(jobs) + 1 + MAX_RECEIVE_COUNT
    stuck = _body(d.api("GET", f"/v1/payments/{stuck_job}", stuck_user))
    assert stuck["status"] == "processing", stuck
    assert queue["statusCode"] == 200 and _body(queue)["dlq_depth"] == 2 and _body(queue)["depth"] == 0
    # And each event reached the webhook once, signed with the key from Secrets Manager
    delivered = Counter(headers[EVENT_ID_HEADER.lower()] for headers, _ in d.webhook.requests)
    assert len(delivered) == len(jobs) and set(delivered.values()) == {1}
    assert all(verify(d.webhook_secret, h[SIGNATURE_HEADER.lower()], body) for h, body in d.webhook.requests)
    assert sum(d.delivery.matched.values()) == len(jobs)
    # And the invariants hold
    assert _invariants(d.database_url) == dict.fromkeys(_CHECKS, 0)

    # And each function did all of that logged in as its own database role (shared/db_roles.py), through
    # PgBouncer as through RDS Proxy with an IAM token: what its grants allow was enough
    users: dict[str, set[str]] = {}
    for s in logged:
        if s.application_name in REQUEST_ROLES:
            users.setdefault(s.application_name, set()).add(s.user_name)
    assert users == {f"pq-{name}": {login} for name, login in LOGIN_ROLES.items()}

    # And no statement the per-request roles sent would pin an RDS Proxy session
    by_role = Counter(s.application_name for s in logged)
    assert all(by_role[role] > 0 for role in REQUEST_ROLES), by_role
    findings = Counter(
        (s.application_name, ", ".join(reasons), _shape(s.text))
        for s in logged
        if s.application_name in REQUEST_ROLES
        and not PGBOUNCER_OWN.match(s.text)
        and (reasons := pinning_reasons(s.text))
    )
    findings.update(
        ("pg_stat_statements", ", ".join(reasons), _shape(query))
        for query, _calls in statements
        if not PGBOUNCER_OWN.match(query) and (reasons := [r for r in pinning_reasons(query) if "16 KB" not in r])
    )
    others = [s for s in logged if s.application_name not in REQUEST_ROLES]
    largest = max((s for s in logged if s.application_name in REQUEST_ROLES), key=lambda s: s.size)
    print(
        f"\nAWS-shaped run: {len(jobs)} jobs ({len(gateway)} by gateway) + 1 in a 429 storm + 1 poison message "
        f"in {seconds:.1f} s; "
        f"mapping {d.mapping.figures}; events matched {dict(d.delivery.matched)}, delivered {d.delivery.delivered}; "
        f"statements logged per role {dict(by_role)}; pg_stat_statements entries {len(statements)} "
        f"({sum(c for _, c in statements)} calls); largest {largest.size} bytes ({largest.application_name}); "
        f"pinning findings {dict(findings)}; "
        f"other sessions' statements {[(s.application_name, s.text) for s in others]}"
    )
    assert not findings
    assert largest.size <= STATEMENT_PIN_BYTES


def _window_start(d: Deployment) -> tuple[Path, int]:
    """Forget what came before (migrations, seeding): the statements checked start here."""
    _admin_rows(d.admin_url, "SELECT pg_stat_statements_reset()")
    ((directory, relative),) = _admin_rows(
        d.admin_url, "SELECT current_setting('data_directory'), pg_current_logfile('csvlog')"
    )
    log_file = Path(directory) / relative
    return log_file, log_file.stat().st_size


def _window_statements(d: Deployment) -> list[tuple[str, int]]:
    """Top-level statements pg_stat_statements saw in this run's database since the window opened."""
    return [
        (str(query), int(calls))
        for query, calls in _admin_rows(
            d.admin_url,
            """SELECT query, calls FROM pg_stat_statements s JOIN pg_database db ON db.oid = s.dbid
                WHERE db.datname = %s AND s.toplevel""",
            (d.database,),
        )
    ]


def _window_log(d: Deployment, log_file: Path, offset: int) -> list[Logged]:
    """The full text of every statement since the window opened, but the harness's own."""
    logged = logged_until_now(log_file, offset, d.database, lambda sql: _admin_exec(d.database_url, sql))
    return [s for s in logged if s.application_name != "pq-harness"]


def _invariants(url: str) -> dict[str, int]:
    return {name: int(_admin_rows(url, f"SELECT ({sql})")[0][0]) for name, sql in _CHECKS.items()}


def _shape(sql: str) -> str:
    """A statement without its literals, shortened: what a finding is reported as."""
    return re.sub(r"'[^']*'", "'…'", " ".join(sql.split()))[:100]


def _sqs_visibility(d: Deployment) -> dict[str, float]:
    """Seconds until each message of the payments queue is visible (0: visible now), by its job, read from
    moto's own record of the queue (its server runs in this process; the API gives only counts)."""
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[ACCOUNT][REGION].queues[d.queue_url.rsplit("/", 1)[-1]]
    now_ms = time.time() * 1000
    return {json.loads(m.body)["job_id"]: max(0.0, (m.visible_at - now_ms) / 1000) for m in queue._messages}


@pytest.mark.parametrize("deployment", [AS_TEMPLATED], indirect=True)
def test_records_held_back_behind_a_failed_record_are_visible_at_once_and_the_failed_one_keeps_its_backoff(
    deployment: Deployment, simulator: Simulator
) -> None:
    d = deployment
    # Given the template's own timing (a 720 s visibility timeout, backoff up to 300 s), and a shopper with
    # a Razorpay payment and then a wallet payment queued, in one message group
    d.containers["migrate"].invoke({"RequestType": "Create"})
    orders = _seed(d.database_url)
    ((user, gateway_body),) = _gateway_orders(d, simulator, users=(1,))
    jobs = []
    for body, key in (
        (gateway_body, "held-gateway"),
        ({"order_id": orders[user][0], "method": "wallet"}, "held-wallet"),
    ):
        response = d.api("POST", "/v1/payments", user, body=body, idempotency_key=key)
        assert response["statusCode"] == 202, response
        jobs.append(_body(response)["job_id"])
    gateway_job, wallet_job = jobs
    assert d.template.queue("payments.fifo")[1]["Properties"]["VisibilityTimeout"] == 720

    # When Razorpay answers 429 with Retry-After: 120, and the processor gets both records in one batch
    _post(f"{simulator.url}/_sim/config", {"storm_until": time.time() + 600, "retry_after_s": 120})
    d.mapping.poll()

    # Then both records failed (the wallet one held back behind the gateway one: skip_group_on_error)
    assert (d.mapping.figures.invocations, d.mapping.figures.failed) == (1, 2)
    # And the held-back record is visible again at once, the failed one waits out its backoff (what
    # Retry-After asked), neither the queue's 720 s
    visibility = _sqs_visibility(d)
    assert visibility[wallet_job] == 0
    assert 60 < visibility[gateway_job] <= 120
    counts = d.sqs.get_queue_attributes(
        QueueUrl=d.queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"]) == ("1", "1")
    # And it is not paid ahead of the failed one: FIFO hands out nothing of a group whose head is in flight
    assert d.mapping.poll() == 0
    statuses = [_body(d.api("GET", f"/v1/payments/{job}", user))["status"] for job in jobs]
    assert statuses == ["processing", "queued"]
    # (each failure recorded for the operator, the held-back one as held back)
    failures = _admin_rows(d.database_url, "SELECT job_id::text, error FROM delivery_failures ORDER BY id", ())
    assert [job for job, _ in failures] == [gateway_job, wallet_job]
    assert "held back" in failures[1][1]


@pytest.mark.parametrize("deployment", [Setup(idle_timeout_s=2)], indirect=True)
def test_functions_whose_connections_the_pool_dropped_while_idle_carry_on_and_charge_once(
    deployment: Deployment,
) -> None:
    d = deployment
    relay = d.relay
    assert relay is not None
    d.containers["migrate"].invoke({"RequestType": "Create"})
    orders = _seed(d.database_url)
    users = list(orders)[:3]
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}

    def pay(user: str, key: str) -> dict[str, Any]:
        body = {"order_id": orders[user][0], "method": "wallet"}
        response: dict[str, Any] = d.api("POST", "/v1/payments", user, body=body, idempotency_key=key)
        return response

    def settle() -> None:
        wait_until(lambda: d.mapping.idle() and _queue_counts(d.sqs, d.queue_url) == 0, d.mapping.poll, 60)

    def dropped() -> None:
        """Until PgBouncer has closed every function's idle connection (client_idle_timeout): the event itself."""
        wait_until(relay.all_dropped_by_the_pool, lambda: 0, 60)

    # Given each function served once, and PgBouncer then closed their idle connections (as RDS Proxy does
    # past its IdleClientTimeout, while a container sits frozen between invocations)
    first = pay(users[0], "drop-1")
    assert first["statusCode"] == 202, first
    settle()
    assert d.api("GET", f"/v1/payments/{_body(first)['job_id']}", users[0])["statusCode"] == 200
    d.containers["sweeper"].invoke(scheduled)
    dropped()
    opened = relay.opened

    # When each serves again, the pool's goodbye waiting in its socket
    second = pay(users[1], "drop-2")
    settle()
    read = d.api("GET", f"/v1/payments/{_body(second)['job_id']}", users[1])
    d.containers["sweeper"].invoke(scheduled)

    # Then each saw it before sending and sent on a fresh connection: no error, no failed record
    assert (second["statusCode"], read["statusCode"], _body(read)["status"]) == (202, 200, "succeeded")
    assert d.mapping.figures.failed == 0 and relay.opened > opened and relay.sent_on_closed == 0

    # Given the pool closed their idle connections again, its goodbyes lost on the way (a statement sent
    # a moment before the goodbye arrives)
    relay.lose_goodbyes = True
    dropped()
    relay.lose_goodbyes = False

    # When a shopper pays: the intake's statement, not safe to send twice, fails (503, the client retries
    # with its key)
    refused = pay(users[2], "drop-3")
    retried = pay(users[2], "drop-3")
    # and the processor pays it: the payment function, safe to send twice (it pays a job only while it is
    # queued), went out again on a fresh connection
    settle()
    # and the shopper's status read, a read, likewise
    job = _body(retried)["job_id"]
    status = d.api("GET", f"/v1/payments/{job}", users[2])
    # and the sweep, whose first read is not marked safe to send twice, fails this minute's run; the next
    # minute's does the work
    with pytest.raises(FunctionError):
        d.containers["sweeper"].invoke(scheduled)
    d.containers["sweeper"].invoke(scheduled)

    # Then each function met its dropped connection with a statement (enqueue, processor, status, sweeper)
    assert relay.sent_on_closed == 4
    assert (refused["statusCode"], _body(refused)["error"]["code"]) == (503, "service_busy")
    assert (retried["statusCode"], status["statusCode"]) == (202, 200)
    assert _body(status)["status"] == "succeeded"
    # And no record failed, and each shopper was charged once
    assert d.mapping.figures.failed == 0
    debits = _admin_rows(d.database_url, "SELECT count(*) FROM wallet_transactions WHERE kind = 'debit'")
    assert debits == [(3,)]
    assert _invariants(d.database_url) == dict.fromkeys(_CHECKS, 0)

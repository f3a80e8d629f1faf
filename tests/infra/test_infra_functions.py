"""The six functions: runtime, environment contract, network placement, least privilege, assets."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from aws_cdk import cx_api

from infra.build_assets import FUNCTION_NAMES, LAYER_ROOT_CERT, REPO_ROOT, ROOT_CERTS_DIR, ROOT_CERTS_FILE
from shared.db_roles import LOGIN_ROLES
from tests.infra.conftest import Synthesized, asset_dir

DATABASE_FUNCTIONS = ("enqueue", "status", "process_payment", "sweeper", "migrate")
XRAY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def _environment(stack: Synthesized, name: str) -> dict[str, Any]:
    _, function = stack.function(name)
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return variables


def _subnet_ids(stack: Synthesized, subnet_name: str) -> set[str]:
    return {
        key
        for key, subnet in stack.resources("AWS::EC2::Subnet").items()
        if {"Key": "aws-cdk:subnet-name", "Value": subnet_name} in subnet["Properties"]["Tags"]
    }


def test_every_function_runs_python_312_on_arm64_with_tracing(stack: Synthesized) -> None:
    for name in FUNCTION_NAMES:
        _, function = stack.function(name)
        properties = function["Properties"]

        assert properties["Runtime"] == "python3.12"
        assert properties["Architectures"] == ["arm64"]
        assert properties["TracingConfig"] == {"Mode": "Active"}
        # The dependencies; the database functions also get the root CAs for TLS to the proxy.
        assert len(properties["Layers"]) == (2 if name in DATABASE_FUNCTIONS else 1), name


def test_every_function_configures_powertools_and_its_environment(stack: Synthesized) -> None:
    for name in FUNCTION_NAMES:
        variables = _environment(stack, name)

        assert variables["POWERTOOLS_SERVICE_NAME"] == "payment-queue"
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "PaymentQueue"
        assert variables["POWERTOOLS_LOG_LEVEL"] == stack.config.log_level
        assert variables["PQ_ENV"] == stack.config.name


def test_database_functions_reach_postgres_through_the_proxy_over_tls(stack: Synthesized) -> None:
    proxy_id, _ = stack.only("AWS::RDS::DBProxy")
    for name in DATABASE_FUNCTIONS:
        variables = _environment(stack, name)

        assert variables["PQ_DB_HOST"] == {"Fn::GetAtt": [proxy_id, "Endpoint"]}
        assert variables["PQ_DB_PORT"] == "5432"
        assert variables["PQ_DB_NAME"] == "payments"
        assert variables["PQ_DB_SSLMODE"] == "verify-full"
        assert variables["PQ_DB_SSLROOTCERT"] == LAYER_ROOT_CERT
    assert not any(key.startswith("PQ_DB_") for key in _environment(stack, "notify"))


def _connect_users(stack: Synthesized, role_policy: dict[str, Any]) -> set[str]:
    """The database users a role may log in as (rds-db:connect): the resource ARNs' last part."""
    return {
        json.dumps(resource).rsplit("/", 1)[-1].rstrip('"]}')
        for statement in role_policy["Statement"]
        if "rds-db:connect" in json.dumps(statement["Action"])
        for resource in (statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]])
    }


def test_each_function_logs_in_as_its_own_role_with_iam_and_only_migrate_with_the_master_secret(
    stack: Synthesized,
) -> None:
    proxy_id, proxy = stack.only("AWS::RDS::DBProxy")
    instance_id, _ = stack.only("AWS::RDS::DBInstance")
    master_secret = {"Fn::GetAtt": [instance_id, "MasterUserSecret.SecretArn"]}

    # The functions present an IAM token for their own role, to the proxy only
    assert set(LOGIN_ROLES) == set(DATABASE_FUNCTIONS) - {"migrate"}
    for name, login in LOGIN_ROLES.items():
        variables = _environment(stack, name)
        assert variables["PQ_DB_USER"] == login and "PQ_DB_SECRET_ARN" not in variables, name
        assert _connect_users(stack, stack.role_policy(name)) == {login}, name
        assert proxy_id in json.dumps(stack.role_policy(name)), name
        assert json.dumps(master_secret) not in json.dumps(stack.role_policy(name)), name
    # and the migrate function, which owns the schema, logs in with the master user's secret
    migrate = _environment(stack, "migrate")
    assert migrate["PQ_DB_SECRET_ARN"] == master_secret and "PQ_DB_USER" not in migrate
    assert _granted(stack, "migrate", "secretsmanager:GetSecretValue") == {instance_id}
    # The proxy logs in to the instance as those roles with IAM too (end-to-end), as the master user with
    # its secret
    assert proxy["Properties"]["DefaultAuthScheme"] == "IAM_AUTH"
    assert [a["SecretArn"] for a in proxy["Properties"]["Auth"]] == [master_secret]
    proxy_role = proxy["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    proxy_policies = [
        p["Properties"]["PolicyDocument"]
        for p in stack.resources("AWS::IAM::Policy").values()
        if {"Ref": proxy_role} in p["Properties"]["Roles"]
    ]
    assert set().union(*(_connect_users(stack, d) for d in proxy_policies)) == set(LOGIN_ROLES.values())
    assert all(instance_id in json.dumps(d) for d in proxy_policies)


def test_each_database_function_names_its_sessions(stack: Synthesized) -> None:
    # pg_stat_activity and the server log tell the functions' sessions apart (the AWS-shaped run
    # checks the statements of each one)
    names = [_environment(stack, name)["PQ_DB_APPLICATION_NAME"] for name in DATABASE_FUNCTIONS]

    assert names == [f"pq-{name}" for name in DATABASE_FUNCTIONS]


def test_senders_and_publishers_get_the_queue_and_bus_they_use(stack: Synthesized) -> None:
    for sender in ("enqueue", "sweeper"):
        variables = _environment(stack, sender)
        assert variables["PQ_QUEUE_BACKEND"] == "sqs"
        assert "PQ_QUEUE_URL" in variables
    for publisher in ("process_payment", "sweeper", "status"):  # status: a shopper leaving the line
        variables = _environment(stack, publisher)
        assert variables["PQ_EVENT_BUS_BACKEND"] == "eventbridge"
        assert "PQ_EVENT_BUS_NAME" in variables
    status = _environment(stack, "status")
    assert {"PQ_QUEUE_URL", "PQ_DLQ_URL"} <= set(status)
    assert status["PQ_QUEUE_BACKEND"] == "sqs"
    processor = _environment(stack, "process_payment")
    assert processor["PQ_QUEUE_BACKEND"] == "sqs"
    assert "PQ_QUEUE_URL" in processor


# The functions that call the gateways: checkouts (enqueue), payments (processor), reconciliation (sweeper).
GATEWAY_CALLERS = {"enqueue", "process_payment", "sweeper"}


def test_only_the_functions_that_call_the_gateways_have_a_route_to_the_internet(stack: Synthesized) -> None:
    egress, isolated = _subnet_ids(stack, "egress"), _subnet_ids(stack, "isolated")
    for name in DATABASE_FUNCTIONS:
        _, function = stack.function(name)
        subnets = {ref["Ref"] for ref in function["Properties"]["VpcConfig"]["SubnetIds"]}
        assert subnets == (egress if name in GATEWAY_CALLERS else isolated), name
    _, notify = stack.function("notify")
    assert "VpcConfig" not in notify["Properties"]


def test_no_role_grants_data_access_on_every_resource(stack: Synthesized) -> None:
    documents = [p["Properties"]["PolicyDocument"] for p in stack.resources("AWS::IAM::Policy").values()]
    documents += [
        inline["PolicyDocument"]
        for role in stack.resources("AWS::IAM::Role").values()
        for inline in role["Properties"].get("Policies", [])
    ]
    wildcard_actions = set()
    for document in documents:
        for statement in document["Statement"]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if "*" in resources:
                actions = statement["Action"]
                wildcard_actions |= set(actions if isinstance(actions, list) else [actions])

    assert wildcard_actions <= XRAY_ACTIONS


def _granted(stack: Synthesized, function_name: str, action: str) -> set[str]:
    """Logical ids of the resources a function's role may apply `action` to."""
    granted = set()
    for statement in stack.role_policy(function_name)["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if action in actions:
            granted |= {r["Fn::GetAtt"][0] if "Fn::GetAtt" in r else json.dumps(r) for r in resources}
    return granted


def test_status_may_read_queue_depths_and_redrive_and_drop_from_the_dlq_only(stack: Synthesized) -> None:
    queue, dlq = stack.queue("-payments.fifo"), stack.queue("-payments-dlq.fifo")

    assert _granted(stack, "status", "sqs:GetQueueAttributes") == {queue, dlq}
    assert _granted(stack, "status", "sqs:StartMessageMoveTask") == {dlq}
    assert _granted(stack, "status", "sqs:ReceiveMessage") == {dlq}
    # A drop deletes the job's DLQ messages and gives the others back (shared/adapters/aws.py).
    assert _granted(stack, "status", "sqs:DeleteMessage") == {dlq}
    assert _granted(stack, "status", "sqs:ChangeMessageVisibility") == {dlq}
    assert _granted(stack, "status", "sqs:SendMessage") == {queue}


def test_processor_may_send_to_the_dlq_and_to_its_queue_and_delete_from_the_queue_it_consumes(
    stack: Synthesized,
) -> None:
    queue, dlq = stack.queue("-payments.fifo"), stack.queue("-payments-dlq.fifo")

    assert _environment(stack, "process_payment")["PQ_DLQ_URL"] == {"Ref": dlq}
    # the DLQ for poison; its own queue for the gateway jobs it sends again (a resend after a park, a
    # job whose receives only waited for a limiter slot)
    assert _granted(stack, "process_payment", "sqs:SendMessage") == {queue, dlq}
    assert _granted(stack, "process_payment", "sqs:DeleteMessage") == {queue}


def test_gateway_credentials_reach_the_functions_that_call_or_verify_the_gateways(stack: Synthesized) -> None:
    # enqueue: checkouts and signature checks; status: Razorpay's key_id; processor, sweeper: gateway calls
    for name in ("enqueue", "status", "process_payment", "sweeper"):
        variables = _environment(stack, name)
        assert "payment-queue/razorpay" in json.dumps(variables["PQ_RAZORPAY_SECRET_ARN"]), name
        assert "payment-queue/cashfree" in json.dumps(variables["PQ_CASHFREE_SECRET_ARN"]), name
        granted = json.dumps(sorted(_granted(stack, name, "secretsmanager:GetSecretValue")))
        assert "payment-queue/razorpay" in granted and "payment-queue/cashfree" in granted, name
    notify_secrets = json.dumps(sorted(_granted(stack, "notify", "secretsmanager:GetSecretValue")))
    assert "razorpay" not in notify_secrets and "cashfree" not in notify_secrets


def test_notify_gets_the_webhook_and_may_read_its_signing_key(stack: Synthesized) -> None:
    variables = _environment(stack, "notify")

    assert variables["PQ_WEBHOOK_URL"] == "https://merchant.example.com/hooks/payments"
    assert "payment-queue/webhook-hmac" in json.dumps(variables["PQ_WEBHOOK_SECRET_ARN"])
    assert "payment-queue/webhook-hmac" in json.dumps(
        sorted(_granted(stack, "notify", "secretsmanager:GetSecretValue"))
    )


def test_the_sweeper_runs_every_minute(stack: Synthesized) -> None:
    sweeper_id, _ = stack.function("sweeper")

    stack.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(1 minute)",
            "Targets": [
                {
                    "Arn": {"Fn::GetAtt": [sweeper_id, "Arn"]},
                    "Id": "Target0",
                    "RetryPolicy": {"MaximumRetryAttempts": 0},
                }
            ],
        },
    )


def test_the_processor_knows_the_redrive_policys_receive_count_and_only_it_reads_it(stack: Synthesized) -> None:
    # Given the queue's redrive policy as deployed
    queue = stack.json["Resources"][stack.queue("-payments.fifo")]
    max_receive_count = queue["Properties"]["RedrivePolicy"]["maxReceiveCount"]

    # Then the processor, which records a failed record's last delivery as dead-lettered, has the
    # same number, and no other function is given a setting it never reads
    assert _environment(stack, "process_payment")["PQ_MAX_RECEIVE_COUNT"] == str(max_receive_count)
    for name in FUNCTION_NAMES:
        if name != "process_payment":
            assert "PQ_MAX_RECEIVE_COUNT" not in _environment(stack, name), name


def test_the_root_cas_for_the_proxy_ship_in_a_layer_of_the_database_functions(
    cloud_assembly: cx_api.CloudAssembly, dev: Synthesized
) -> None:
    layers = dev.resources("AWS::Lambda::LayerVersion")
    cert_layers = [k for k, r in layers.items() if (asset_dir(cloud_assembly, r) / ROOT_CERTS_FILE).is_file()]
    assert len(cert_layers) == 1
    staged = asset_dir(cloud_assembly, layers[cert_layers[0]]) / ROOT_CERTS_FILE

    # Layers are mounted at /opt: the file is where PQ_DB_SSLROOTCERT points.
    assert f"/opt/{ROOT_CERTS_FILE}" == LAYER_ROOT_CERT
    assert staged.read_bytes() == (ROOT_CERTS_DIR / ROOT_CERTS_FILE).read_bytes()
    for name in DATABASE_FUNCTIONS:
        _, function = dev.function(name)
        assert {"Ref": cert_layers[0]} in function["Properties"]["Layers"], name


def test_the_template_environment_makes_a_verify_full_dsn_with_the_shipped_roots(
    dev: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the processor's and the migrate function's environments as deployed, references replaced by
    # plain values
    from aws_lambda_powertools.utilities import parameters

    from shared.bootstrap import _dsn
    from shared.settings import Settings

    host = "payment-queue-dev.proxy-abc.ap-south-1.rds.amazonaws.com"
    monkeypatch.setattr(parameters, "get_secret", lambda *a, **k: json.dumps({"username": "u", "password": "p"}))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    # (and what Lambda puts in every environment: the region and the function's credentials)
    lambda_runtime = {
        "AWS_REGION": dev.config.region,
        "AWS_DEFAULT_REGION": dev.config.region,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "example",
    }
    for key, value in lambda_runtime.items():
        monkeypatch.setenv(key, value)
    for name in ("process_payment", "migrate"):
        variables = {k: v if isinstance(v, str) else "x" for k, v in _environment(dev, name).items()}
        for key in ("PQ_DB_USER", "PQ_DB_SECRET_ARN"):
            monkeypatch.delenv(key, raising=False)
        for key, value in (variables | {"PQ_DB_HOST": host}).items():
            monkeypatch.setenv(key, value)

        # When the function's settings build the DSN
        dsn = urlsplit(_dsn(Settings()))

        # Then libpq is told to verify the proxy's certificate and name against the shipped roots
        assert dsn.query == f"sslmode=verify-full&sslrootcert={LAYER_ROOT_CERT}", name
        assert (dsn.hostname, dsn.port) == (host, 5432), name
        # with the processor's own role and an IAM token for it at the proxy (a presigned connect
        # request, valid 15 minutes); the migrate function with the master secret's user
        if name == "process_payment":
            token = parse_qs(urlsplit("https://" + unquote(dsn.password or "")).query)
            assert dsn.username == LOGIN_ROLES["process_payment"]
            assert token["Action"] == ["connect"] and token["DBUser"] == [LOGIN_ROLES["process_payment"]]
            assert token["X-Amz-Expires"] == ["900"]
            assert f"/{dev.config.region}/rds-db/aws4_request" in token["X-Amz-Credential"][0]
        else:
            assert (dsn.username, dsn.password) == ("u", "p")


def test_migrations_wait_for_everything_their_first_connection_needs(stack: Synthesized) -> None:
    _, trigger = stack.only("Custom::Trigger")
    depends_on = set(trigger.get("DependsOn", []))
    endpoints = stack.resources("AWS::EC2::VPCEndpoint")
    secrets_endpoint = next(
        k for k, r in endpoints.items() if "secretsmanager" in json.dumps(r["Properties"]["ServiceName"])
    )
    proxy_id, _ = stack.only("AWS::RDS::DBProxy")
    target_group_id, _ = stack.only("AWS::RDS::DBProxyTargetGroup")
    _, migrate = stack.function("migrate")
    clients_sg = migrate["Properties"]["VpcConfig"]["SecurityGroupIds"][0]["Fn::GetAtt"][0]
    proxy_ingress = [
        k
        for k, r in stack.resources("AWS::EC2::SecurityGroupIngress").items()
        if r["Properties"].get("SourceSecurityGroupId") == {"Fn::GetAtt": [clients_sg, "GroupId"]}
    ]

    # The credentials are read through the Secrets Manager endpoint from the isolated subnets.
    assert secrets_endpoint in depends_on
    assert {proxy_id, target_group_id} <= depends_on
    assert proxy_ingress and set(proxy_ingress) <= depends_on


def test_migrations_run_after_the_database_and_before_the_other_functions(stack: Synthesized) -> None:
    trigger_id, trigger = stack.only("Custom::Trigger")
    migrate_id, _ = stack.function("migrate")

    version_id = trigger["Properties"]["HandlerArn"]["Ref"]
    assert stack.json["Resources"][version_id]["Properties"]["FunctionName"] == {"Ref": migrate_id}
    assert any(d.startswith("DatabaseInstance") for d in trigger.get("DependsOn", []))
    for name in FUNCTION_NAMES:
        if name != "migrate":
            _, function = stack.function(name)
            assert trigger_id in function.get("DependsOn", []), name


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_each_asset_holds_shared_and_only_its_own_handler(
    cloud_assembly: cx_api.CloudAssembly, stacks: dict[str, Synthesized], name: str
) -> None:
    _, function = stacks["dev"].function(name)
    staged = asset_dir(cloud_assembly, function)

    present = {str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file()}

    # Compared with the tree as it is now: tolerant of files added while the suite runs.
    essentials = {"functions/__init__.py", f"functions/{name}/handler.py", "shared/__init__.py"}
    for sql_dir in ("migrations", "sql"):  # the schema and the functions the migrate trigger applies
        essentials |= {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "shared" / sql_dir).glob("*.sql")}
    assert {e for e in essentials if (REPO_ROOT / e).is_file()} <= present
    assert {p.split("/")[0] for p in present} <= {"functions", "shared"}
    foreign = [p for p in present if p.startswith("functions/") and p.count("/") > 1 and p.split("/")[1] != name]
    assert foreign == []
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in present)


def test_dependency_layer_is_built_from_requirements_lambda(
    cloud_assembly: cx_api.CloudAssembly, dev: Synthesized
) -> None:
    _, layer = dev.only(
        "AWS::Lambda::LayerVersion", Description="requirements-lambda.lock installed for arm64 / CPython 3.12"
    )
    staged = asset_dir(cloud_assembly, layer)

    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    requirements = REPO_ROOT / "requirements-lambda.lock"
    if requirements.is_file():
        assert (staged / "python" / "requirements-lambda.lock").read_text() == requirements.read_text()


def test_a_checkout_fits_its_two_gateway_requests_in_enqueues_timeout(stack: Synthesized) -> None:
    _, enqueue = stack.function("enqueue")
    timeout_s = float(_environment(stack, "enqueue")["PQ_GATEWAY_TIMEOUT_S"])

    assert 2 * timeout_s < enqueue["Properties"]["Timeout"]

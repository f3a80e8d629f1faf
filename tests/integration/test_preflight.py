"""`make preflight` against moto: a new account with a concurrency limit of 10 fits dev, not prod, and
the report says why and what to request.

moto (5.2) models Lambda's unreserved minimum when MOTO_LAMBDA_CONCURRENCY_QUOTA is set (it refuses a
reservation with Lambda's own message), but implements neither Lambda GetAccountSettings nor RDS
DescribeAccountAttributes, nor Service Quotas for RDS. The test answers those two reads from moto's own
state, as the account would (`_moto_account`); every other call is moto's. Service Quotas answers
nothing for RDS, so the report's fallback to the documented default is exercised too.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from contextlib import redirect_stdout
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.awslambda.models import lambda_backends
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.rds.models import rds_backends

from infra import preflight
from infra.config import DEV, ENVIRONMENTS

REGION = DEV.region
# "Quotas and constraints for Amazon RDS": DB instances 40, total storage 100 TB, per Region.
DB_INSTANCES_ALLOWED, STORAGE_GB_ALLOWED = 40, 100_000


def _moto_account(session: boto3.Session, concurrency_limit: int) -> None:
    """Answer the reads moto lacks from moto's own state, before any call reaches it."""

    def account_settings(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        functions = lambda_backends[DEFAULT_ACCOUNT_ID][REGION].list_functions()
        reserved = sum(int(f.reserved_concurrency or 0) for f in functions)
        limits = {
            "ConcurrentExecutions": concurrency_limit,
            "UnreservedConcurrentExecutions": concurrency_limit - reserved,
        }
        return AWSResponse("", 200, {}, None), {"AccountLimit": limits}

    def account_attributes(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        instances = list(rds_backends[DEFAULT_ACCOUNT_ID][REGION].databases.values())
        storage = sum(int(i.allocated_storage or 0) for i in instances)
        quotas = [
            {"AccountQuotaName": "DBInstances", "Used": len(instances), "Max": DB_INSTANCES_ALLOWED},
            {"AccountQuotaName": "AllocatedStorage", "Used": storage, "Max": STORAGE_GB_ALLOWED},
        ]
        return AWSResponse("", 200, {}, None), {"AccountQuotas": quotas}

    session.events.register("before-call.lambda.GetAccountSettings", account_settings)
    session.events.register("before-call.rds.DescribeAccountAttributes", account_attributes)


@pytest.fixture
def new_account(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.Session]:
    """An account whose Lambda concurrency limit is 10, as many new accounts' is."""
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "10")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        _moto_account(session, 10)
        yield session


@pytest.fixture
def raised_account(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.Session]:
    """An account at Lambda's default limit of 1,000."""
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "1000")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        _moto_account(session, 1000)
        yield session


def _preflight(session: boto3.Session, env: str) -> tuple[int, str]:
    printed = io.StringIO()
    with redirect_stdout(printed):
        status = preflight.main(["--env", env], session=session)
    return status, printed.getvalue()


def _deploy_functions(session: boto3.Session, env: str) -> None:
    """The environment's functions as CloudFormation names them, each with its reservation."""
    config = ENVIRONMENTS[env]
    iam = session.client("iam")
    role = iam.create_role(RoleName=f"role-{env}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    lambda_ = session.client("lambda")
    for name, reserved in config.reserved_concurrency().items():
        function = f"{config.stack_name}-Functions{name.title().replace('_', '')}-ABC123"
        lambda_.create_function(
            FunctionName=function,
            Runtime="python3.12",
            Role=role,
            Handler="handler.handler",
            Code={"ZipFile": code.getvalue()},
        )
        lambda_.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=reserved)


def test_a_new_account_with_ten_concurrency_fits_dev_and_says_what_prod_needs(new_account: boto3.Session) -> None:
    # When preflight reads the account for dev and for prod
    dev_status, dev_report = _preflight(new_account, "dev")
    prod_status, prod_report = _preflight(new_account, "prod")

    # Then dev fits: it reserves nothing and its processor's 5 fit in 10
    assert dev_status == 0, dev_report
    assert "dev reserves none; the processor runs up to 5 at once" in dev_report
    assert "the account allows 10" in dev_report and "dev fits this account" in dev_report
    # and prod does not, saying why and what to ask for
    assert prod_status == 1, prod_report
    assert "prod reserves 252" in prod_report
    assert "the account's limit is 10, 0 reserved by other functions, and Lambda keeps 10 unreserved" in prod_report
    request = "raise Service Quotas lambda 'Concurrent executions' (L-B99A9384) in ap-south-1 to at least 352"
    assert request in prod_report
    assert "prod does not fit this account" in prod_report
    # and the RDS quotas, read from the account, have room for one more instance and proxy
    assert "[ok] RDS DB instances: needs 1 more instance(s); 0 of 40 used" in prod_report
    assert f"RDS proxies (quota unreadable: default {preflight.DEFAULT_PROXIES})" in prod_report


def test_what_preflight_refuses_lambda_refuses(new_account: boto3.Session) -> None:
    # Given preflight's verdict on staging in a 10-concurrency account
    status, _ = _preflight(new_account, "staging")
    assert status == 1

    # When the functions are deployed anyway, then Lambda (as moto models it) refuses the first reservation
    with pytest.raises(ClientError, match="UnreservedConcurrentExecution below its minimum"):
        _deploy_functions(new_account, "staging")


def test_a_redeploy_counts_the_stacks_own_reservations_as_its_own(raised_account: boto3.Session) -> None:
    # Given prod deployed in an account at the default 1,000 (prod's 252 reserved, 748 unreserved)
    status, report = _preflight(raised_account, "prod")
    assert status == 0, report
    _deploy_functions(raised_account, "prod")

    # When preflight runs again before the next deployment
    status, report = _preflight(raised_account, "prod")

    # Then the stack's own 252 are not counted against it
    assert status == 0, report
    assert "0 reserved by other functions, and Lambda keeps 100 unreserved: 900 can be reserved" in report

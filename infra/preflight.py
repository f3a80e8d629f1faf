"""`make preflight ENV=dev|staging|prod`: does this AWS account and region fit the environment, and if not,
what to ask AWS for, before a deployment fails half-way.

Read-only, with the deployer's credentials (boto3's default chain; AWS_PROFILE and AWS_REGION work; the
region defaults to the environment's):
- Lambda GetAccountSettings: the account's concurrency limit and how much of it is unreserved now, and
  the reservations this stack's own functions hold already (a redeploy gives them back and takes them again);
- RDS DescribeAccountAttributes: DB instances and allocated storage, used and allowed;
- RDS DescribeDBProxies and Service Quotas: proxies, used and allowed;
- whether the stack's own instance and proxy exist already (then they need no new quota).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from infra.config import ENVIRONMENTS, EnvironmentConfig

# PutFunctionConcurrency: "You can reserve concurrency for as many functions as you like, as long as you
# leave at least 100 simultaneous executions unreserved for functions that aren't configured with a
# per-function limit." An account whose whole limit is smaller keeps all of it unreserved (the error then
# reads "... below its minimum value of [50]" for a limit of 50), so nothing can be reserved there.
UNRESERVED_MINIMUM = 100
# Service Quotas: Lambda "Concurrent executions" (L-B99A9384), the quota to raise.
LAMBDA_CONCURRENCY_QUOTA = ("lambda", "L-B99A9384", "Concurrent executions")
# "Quotas and constraints for Amazon RDS": Proxies, 20 per Region by default. Service Quotas names the
# account's own figure when it answers; else the default stands in, and the report says so.
PROXIES_QUOTA_NAME = "Proxies"
DEFAULT_PROXIES = 20


@dataclass(frozen=True)
class Quota:
    used: int
    allowed: int


@dataclass(frozen=True)
class Account:
    """What preflight read of the account, in the environment's region."""

    region: str
    concurrency_limit: int
    unreserved: int
    # Reserved now by this environment's own functions (a redeploy hands them back first).
    reserved_by_stack: int
    db_instances: Quota
    storage_gb: Quota
    proxies: Quota
    proxies_quota_read: bool
    has_instance: bool
    has_proxy: bool


@dataclass(frozen=True)
class Check:
    name: str
    fits: bool
    detail: str
    # What to ask AWS for (Service Quotas) when it does not fit.
    request: str | None = None


def instance_identifier(config: EnvironmentConfig) -> str:
    """The DB instance's and the proxy's name (infra/components/database.py)."""
    return f"payment-queue-{config.name}"


def read_account(config: EnvironmentConfig, session: Any) -> Account:
    """The account's figures through boto3 clients of `session` (a boto3.Session)."""
    lambda_ = session.client("lambda", region_name=config.region)
    rds = session.client("rds", region_name=config.region)
    limits = lambda_.get_account_settings()["AccountLimit"]
    quotas = {q["AccountQuotaName"]: Quota(int(q["Used"]), int(q["Max"])) for q in _account_quotas(rds)}
    proxies = [p["DBProxyName"] for p in _pages(rds, "describe_db_proxies", "DBProxies")]
    allowed_proxies = _proxies_quota(session, config.region)
    instances = [i["DBInstanceIdentifier"] for i in _pages(rds, "describe_db_instances", "DBInstances")]
    return Account(
        region=config.region,
        concurrency_limit=int(limits["ConcurrentExecutions"]),
        unreserved=int(limits["UnreservedConcurrentExecutions"]),
        reserved_by_stack=_reserved_by_stack(lambda_, config),
        db_instances=quotas["DBInstances"],
        storage_gb=quotas["AllocatedStorage"],
        proxies=Quota(len(proxies), allowed_proxies or DEFAULT_PROXIES),
        proxies_quota_read=allowed_proxies is not None,
        has_instance=instance_identifier(config) in instances,
        has_proxy=instance_identifier(config) in proxies,
    )


def _account_quotas(rds: Any) -> list[dict[str, Any]]:
    quotas: list[dict[str, Any]] = rds.describe_account_attributes()["AccountQuotas"]
    return quotas


def _pages(client: Any, operation: str, key: str) -> Iterable[dict[str, Any]]:
    for page in client.get_paginator(operation).paginate():
        yield from page[key]


def _reserved_by_stack(lambda_: Any, config: EnvironmentConfig) -> int:
    """CloudFormation names a function `<stack>-<logical id>-<suffix>`: the stack's are those."""
    prefix = f"{config.stack_name}-"
    total = 0
    for function in _pages(lambda_, "list_functions", "Functions"):
        if function["FunctionName"].startswith(prefix):
            answer = lambda_.get_function_concurrency(FunctionName=function["FunctionName"])
            total += int(answer.get("ReservedConcurrentExecutions") or 0)
    return total


def _proxies_quota(session: Any, region: str) -> int | None:
    """The account's RDS "Proxies" quota from Service Quotas, or None when it does not say."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = session.client("service-quotas", region_name=region)
    try:
        for page in client.get_paginator("list_service_quotas").paginate(ServiceCode="rds"):
            for quota in page["Quotas"]:
                if quota["QuotaName"] == PROXIES_QUOTA_NAME:
                    return int(quota["Value"])
    except (BotoCoreError, ClientError, NotImplementedError):
        return None
    return None


def checks(config: EnvironmentConfig, account: Account) -> list[Check]:
    # Where the environment reserves, the processor's reservation (at least its event source's maximum
    # concurrency) is in the reservation check; where it does not, its peak must fit the account.
    lambda_check = _reservations(config, account) if config.reserve_concurrency else _processor(config, account)
    return [
        lambda_check,
        _quota_check(
            "RDS DB instances",
            account.db_instances,
            0 if account.has_instance else 1,
            "instance",
            "Amazon RDS quota 'DB instances'",
        ),
        _quota_check(
            "RDS allocated storage (GiB)",
            account.storage_gb,
            0 if account.has_instance else config.database.allocated_storage_gb,
            "GiB",
            "Amazon RDS quota 'Total storage for all DB instances'",
        ),
        _quota_check(
            "RDS proxies" + ("" if account.proxies_quota_read else f" (quota unreadable: default {DEFAULT_PROXIES})"),
            account.proxies,
            0 if account.has_proxy else 1,
            "proxy",
            "Amazon RDS quota 'Proxies'",
        ),
    ]


def _reservations(config: EnvironmentConfig, account: Account) -> Check:
    needed = sum(config.reserved_concurrency().values())
    minimum = min(UNRESERVED_MINIMUM, account.concurrency_limit)
    # What others (functions outside this stack) reserve stays reserved; ours is given back first.
    others = account.concurrency_limit - account.unreserved - account.reserved_by_stack
    reservable = account.concurrency_limit - others - minimum
    shares = ", ".join(f"{name} {n}" for name, n in config.reserved_concurrency().items())
    detail = (
        f"{config.name} reserves {needed} ({shares}); the account's limit is {account.concurrency_limit}, "
        f"{others} reserved by other functions, and Lambda keeps {minimum} unreserved: {max(reservable, 0)} can be "
        "reserved"
    )
    if needed <= reservable:
        return Check("Lambda reserved concurrency", True, detail)
    wanted = others + needed + UNRESERVED_MINIMUM
    service, code, name = LAMBDA_CONCURRENCY_QUOTA
    return Check(
        "Lambda reserved concurrency",
        False,
        detail,
        f"raise Service Quotas {service} '{name}' ({code}) in {account.region} to at least {wanted}",
    )


def _processor(config: EnvironmentConfig, account: Account) -> Check:
    peak = config.processor.max_concurrency
    detail = (
        f"{config.name} reserves none; the processor runs up to {peak} at once (its event source's maximum concurrency)"
    )
    if peak <= account.concurrency_limit:
        return Check(
            "Lambda concurrency for the processor", True, f"{detail}; the account allows {account.concurrency_limit}"
        )
    service, code, name = LAMBDA_CONCURRENCY_QUOTA
    return Check(
        "Lambda concurrency for the processor",
        False,
        f"{detail}, more than the account's whole limit of {account.concurrency_limit}",
        f"raise Service Quotas {service} '{name}' ({code}) in {account.region} to at least {peak + UNRESERVED_MINIMUM}",
    )


def _quota_check(name: str, quota: Quota, needed: int, unit: str, quota_name: str) -> Check:
    detail = f"needs {needed} more {unit}(s); {quota.used} of {quota.allowed} used"
    if quota.used + needed <= quota.allowed:
        return Check(name, True, detail)
    return Check(name, False, detail, f"raise the {quota_name} to at least {quota.used + needed}")


def render(config: EnvironmentConfig, account: Account, results: list[Check]) -> str:
    fits = all(c.fits for c in results)
    lines = [f"preflight {config.name} ({config.stack_name}) in {account.region}:"]
    for check in results:
        lines.append(f"  [{'ok' if check.fits else 'NO'}] {check.name}: {check.detail}")
        if check.request:
            lines.append(f"       request: {check.request}")
    verdict = "fits this account" if fits else "does not fit this account: make the requests above, then deploy"
    lines.append(f"{config.name} {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None, session: Any = None) -> int:
    """Prints the checks; exit status 0 when the environment fits, 1 when something must be requested."""
    parser = argparse.ArgumentParser(prog="make preflight", description="Does this AWS account fit the environment?")
    parser.add_argument("--env", required=True, choices=sorted(ENVIRONMENTS))
    parser.add_argument("--region", help="default: the environment's own region (infra/config.py)")
    args = parser.parse_args(argv)
    config = ENVIRONMENTS[args.env]
    if args.region:
        config = replace(config, region=args.region)
    if session is None:
        import boto3

        session = boto3.Session()
    account = read_account(config, session)
    results = checks(config, account)
    print(render(config, account, results))
    return 0 if all(c.fits for c in results) else 1


if __name__ == "__main__":
    sys.exit(main())

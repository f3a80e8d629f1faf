"""infra/preflight.py's verdicts from what it read of an account (no AWS here: tests/integration has moto)."""

from __future__ import annotations

from dataclasses import replace

from infra.config import DEV, PROD, EnvironmentConfig
from infra.preflight import Account, Quota, checks

ROOMY = Account(
    region="ap-south-1",
    concurrency_limit=1000,
    unreserved=1000,
    reserved_by_stack=0,
    db_instances=Quota(0, 40),
    storage_gb=Quota(0, 100_000),
    proxies=Quota(0, 20),
    proxies_quota_read=True,
    has_instance=False,
    has_proxy=False,
)


def _failing(config: EnvironmentConfig, account: Account) -> dict[str, str | None]:
    return {c.name: c.request for c in checks(config, account) if not c.fits}


def test_an_account_at_the_default_limit_fits_every_environment() -> None:
    assert _failing(PROD, ROOMY) == {} and _failing(DEV, ROOMY) == {}


def test_other_functions_reservations_leave_too_little_for_prod() -> None:
    # Given 700 of 1,000 reserved by functions outside this stack: 200 can be reserved, prod needs 252
    account = replace(ROOMY, unreserved=300)

    failing = _failing(PROD, account)

    assert failing == {
        "Lambda reserved concurrency": "raise Service Quotas lambda 'Concurrent executions' (L-B99A9384) in "
        "ap-south-1 to at least 1052"
    }


def test_a_full_rds_quota_names_what_to_raise_unless_the_stack_already_has_its_instance_and_proxy() -> None:
    full = replace(ROOMY, db_instances=Quota(40, 40), proxies=Quota(20, 20))

    assert _failing(DEV, full) == {
        "RDS DB instances": "raise the Amazon RDS quota 'DB instances' to at least 41",
        "RDS proxies": "raise the Amazon RDS quota 'Proxies' to at least 21",
    }
    assert _failing(DEV, replace(full, has_instance=True, has_proxy=True)) == {}


def test_dev_needs_its_processors_peak_within_the_account_limit() -> None:
    tiny = replace(ROOMY, concurrency_limit=4, unreserved=4)

    assert _failing(DEV, tiny) == {
        "Lambda concurrency for the processor": "raise Service Quotas lambda 'Concurrent executions' (L-B99A9384) "
        "in ap-south-1 to at least 105"
    }

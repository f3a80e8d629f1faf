"""Small helpers every component shares."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import EnvironmentConfig

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def log_retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch Logs retention that keeps `days` days."""
    return _RETENTION[min(d for d in _RETENTION if d >= days)]


def removal_policy(config: EnvironmentConfig) -> RemovalPolicy:
    return RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY


def log_group(scope: Construct, construct_id: str, config: EnvironmentConfig) -> logs.LogGroup:
    """A log group with the environment's retention (no LogRetention custom resource needed)."""
    return logs.LogGroup(
        scope,
        construct_id,
        retention=log_retention(config.log_retention_days),
        removal_policy=removal_policy(config),
    )

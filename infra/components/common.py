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
    """Retained on stack deletion and on removal from the template where data must survive, but
    deleted when the deployment that created it rolls back (CloudFormation's RetainExceptOnCreate):
    a plain Retain keeps them through that rollback, and the named ones (instance, queues, log
    groups) then collide with the retry while the others are orphaned."""
    return RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE if config.retain_data else RemovalPolicy.DESTROY


def log_group(scope: Construct, construct_id: str, config: EnvironmentConfig) -> logs.LogGroup:
    """A log group with the environment's retention (no LogRetention custom resource needed)."""
    return logs.LogGroup(
        scope,
        construct_id,
        retention=log_retention(config.log_retention_days),
        removal_policy=removal_policy(config),
    )

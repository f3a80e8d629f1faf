"""cdk-nag (AwsSolutions) suppressions: each names the rule, the resources, and why it is accepted.

Everything not listed here is fixed in the constructs instead (encryption, TLS-only policies,
access logs, flow logs, DLQs, backups). Environment-dependent findings (Multi-AZ, deletion
protection) are suppressed only in the environments whose config turns the feature off.
"""

from __future__ import annotations

from aws_cdk import Stack
from cdk_nag import NagPackSuppression, NagSuppressions

from infra.components.database import Database
from infra.components.functions import Functions
from infra.components.network import Network
from infra.components.notifications import Notifications
from infra.config import EnvironmentConfig

_MANAGED_POLICY = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/{}"

FUNCTION_SUPPRESSIONS = [
    NagPackSuppression(
        id="AwsSolutions-IAM4",
        reason="AWS managed Lambda execution policies: writing the function's own logs, and for "
        "VPC functions creating and deleting the ENIs Lambda attaches; the EC2 network-interface "
        "actions do not support resource-level permissions, so a custom policy would be no narrower.",
        applies_to=[
            _MANAGED_POLICY.format("AWSLambdaBasicExecutionRole"),
            _MANAGED_POLICY.format("AWSLambdaVPCAccessExecutionRole"),
        ],
    ),
    NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason="X-Ray tracing (xray:PutTraceSegments, xray:PutTelemetryRecords) supports no "
        "resource-level permissions; every data permission (queues, bus, secrets) is resource-scoped.",
        applies_to=["Resource::*"],
    ),
    NagPackSuppression(
        id="AwsSolutions-L1",
        reason="Pinned to Python 3.12: the dependency layer is built for cp312 (psycopg2-binary "
        "aarch64 wheels) and the local runtime and tests run 3.12; moving on is one change of "
        "RUNTIME and PIP_PLATFORM_ARGS together.",
    ),
]


def suppress_findings(
    stack: Stack,
    *,
    config: EnvironmentConfig,
    network: Network,
    database: Database,
    functions: Functions,
    notifications: Notifications,
) -> None:
    for function in functions.all:
        NagSuppressions.add_resource_suppressions(function, FUNCTION_SUPPRESSIONS, apply_to_children=True)

    NagSuppressions.add_resource_suppressions(
        notifications.dlq,
        [
            NagPackSuppression(
                id="AwsSolutions-SQS3",
                reason="This queue is itself a dead-letter queue: of the EventBridge rule targets, "
                "the SNS subscription and the notify function's failed invocations. cdk-nag only "
                "recognises queues named in an SQS redrive policy.",
            )
        ],
        apply_to_children=True,
    )

    database_findings = [
        NagPackSuppression(
            id="AwsSolutions-RDS11",
            reason="The default port 5432 is part of the functions' contract (PQ_DB_PORT); the "
            "instance sits in isolated subnets and admits only the proxy's security group, so a "
            "non-default port would hide nothing.",
        )
    ]
    if config.database.enhanced_monitoring_interval_seconds:
        database_findings.append(
            NagPackSuppression(
                id="AwsSolutions-IAM4",
                reason="The role RDS Enhanced Monitoring assumes to write the OS metrics to CloudWatch Logs: "
                "AWS's own policy for it, whose log actions are limited to log groups named RDS* (RDSOSMetrics).",
                applies_to=[_MANAGED_POLICY.format("AmazonRDSEnhancedMonitoringRole")],
            )
        )
    if not config.database.multi_az:
        database_findings.append(
            NagPackSuppression(
                id="AwsSolutions-RDS3",
                reason=f"{config.name} runs single-AZ to halve the database cost; prod is Multi-AZ (infra/config.py).",
            )
        )
    if not config.database.deletion_protection:
        database_findings.append(
            NagPackSuppression(
                id="AwsSolutions-RDS10",
                reason=f"{config.name} is disposable and is torn down with its stack; prod has "
                "deletion protection (infra/config.py).",
            )
        )
    elif not config.deletion_protection:
        database_findings.append(
            NagPackSuppression(
                id="AwsSolutions-RDS10",
                reason="The stack's first deployment (pq:first-create) leaves deletion protection off so "
                "that a failed create can roll back and delete the new, empty instance; the next "
                "deployment turns it on (EnvironmentConfig.deletion_protection, docs/deploy.md).",
            )
        )
    NagSuppressions.add_resource_suppressions(database.instance, database_findings, apply_to_children=True)

    NagSuppressions.add_resource_suppressions(
        network.endpoints_security_group,
        [
            NagPackSuppression(
                id="CdkNagValidationFailure",
                reason="AwsSolutions-EC23 cannot evaluate the VPC CIDR token; the only ingress rule "
                "is HTTPS from the VPC's own CIDR to the interface endpoints.",
            )
        ],
        apply_to_children=True,
    )

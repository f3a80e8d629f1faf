"""PostgreSQL behind RDS Proxy: private, encrypted, TLS-only, reachable from the DB functions only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import cx_api
from aws_cdk.assertions import Match

from infra import config as cfg
from infra.synth import errors, synth
from tests.infra.conftest import DEPLOYER_CONTEXT, Synthesized

# What must outlive the stack in prod, and what a failed first create must not leave behind.
DATA_STORES = (
    "AWS::RDS::DBInstance",
    "AWS::RDS::DBSubnetGroup",
    "AWS::SQS::Queue",
    "AWS::Logs::LogGroup",
    "AWS::KMS::Key",
)


def test_database_is_encrypted_backed_up_and_private(stack: Synthesized) -> None:
    database = stack.config.database

    stack.template.has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "Engine": "postgres",
            "StorageEncrypted": True,
            "BackupRetentionPeriod": database.backup_retention_days,
            "PubliclyAccessible": False,
            "ManageMasterUserPassword": True,
            "MasterUserPassword": Match.absent(),
            "MultiAZ": database.multi_az,
            "DeletionProtection": database.deletion_protection,
        },
    )


def test_prod_database_is_multi_az_retained_and_deletion_protected(prod: Synthesized, dev: Synthesized) -> None:
    _, prod_db = prod.only("AWS::RDS::DBInstance")
    _, dev_db = dev.only("AWS::RDS::DBInstance")

    assert prod_db["Properties"]["MultiAZ"] and prod_db["Properties"]["DeletionProtection"]
    assert prod_db["DeletionPolicy"] == "RetainExceptOnCreate"
    assert not dev_db["Properties"]["MultiAZ"] and not dev_db["Properties"]["DeletionProtection"]


def test_proxy_requires_tls_and_authenticates_with_the_rds_managed_secret(stack: Synthesized) -> None:
    instance_id, _ = stack.only("AWS::RDS::DBInstance")

    stack.template.has_resource_properties(
        "AWS::RDS::DBProxy",
        {
            "EngineFamily": "POSTGRESQL",
            "RequireTLS": True,
            "Auth": [
                Match.object_like(
                    {
                        "AuthScheme": "SECRETS",
                        "SecretArn": {"Fn::GetAtt": [instance_id, "MasterUserSecret.SecretArn"]},
                        "ClientPasswordAuthType": "POSTGRES_SCRAM_SHA_256",
                    }
                )
            ],
        },
    )
    stack.template.has_resource_properties(
        "AWS::RDS::DBProxyTargetGroup",
        {
            "ConnectionPoolConfigurationInfo": Match.object_like(
                {"MaxConnectionsPercent": stack.config.database.proxy_max_connections_percent}
            )
        },
    )


def test_only_the_database_functions_can_reach_the_proxy_and_only_the_proxy_the_instance(
    stack: Synthesized,
) -> None:
    _, proxy = stack.only("AWS::RDS::DBProxy")
    _, instance = stack.only("AWS::RDS::DBInstance")
    proxy_sg = proxy["Properties"]["VpcSecurityGroupIds"][0]["Fn::GetAtt"][0]
    instance_sg = instance["Properties"]["VPCSecurityGroups"][0]["Fn::GetAtt"][0]
    _, enqueue = stack.function("enqueue")
    clients_sg = enqueue["Properties"]["VpcConfig"]["SecurityGroupIds"][0]["Fn::GetAtt"][0]

    def sources_into(group: str) -> set[str]:
        rules = stack.resources("AWS::EC2::SecurityGroupIngress").values()
        return {
            r["Properties"]["SourceSecurityGroupId"]["Fn::GetAtt"][0]
            for r in rules
            if r["Properties"]["GroupId"]["Fn::GetAtt"][0] == group
        }

    assert sources_into(proxy_sg) == {clients_sg}
    assert sources_into(instance_sg) == {proxy_sg}
    assert stack.json["Resources"][proxy_sg]["Properties"].get("SecurityGroupIngress") is None
    assert stack.json["Resources"][instance_sg]["Properties"].get("SecurityGroupIngress") is None


def test_vpc_endpoints_cover_every_aws_api_the_vpc_functions_call(stack: Synthesized) -> None:
    services = {
        e["Properties"]["ServiceName"].removeprefix(f"com.amazonaws.{stack.config.region}.")
        for e in stack.resources("AWS::EC2::VPCEndpoint").values()
    }

    assert services == {"sqs", "secretsmanager", "events"}


def test_nat_gateways_follow_the_config(stack: Synthesized) -> None:
    assert len(stack.resources("AWS::EC2::NatGateway")) == stack.config.nat_gateways


def test_prod_data_stores_are_retained_except_when_their_own_create_rolls_back(prod: Synthesized) -> None:
    for resource_type in DATA_STORES:
        resources = prod.resources(resource_type)
        assert resources, resource_type
        for logical_id, resource in resources.items():
            # RetainExceptOnCreate: kept on stack deletion and removal, deleted by the rollback
            # of the deployment that created it, so a retried first create finds no leftovers.
            assert resource.get("DeletionPolicy") == "RetainExceptOnCreate", logical_id
            assert resource.get("UpdateReplacePolicy") == "Retain", logical_id


def test_dev_and_staging_data_stores_go_with_the_stack(stacks: dict[str, Synthesized]) -> None:
    for env in ("dev", "staging"):
        for resource_type in DATA_STORES:
            for logical_id, resource in stacks[env].resources(resource_type).items():
                assert resource.get("DeletionPolicy", "Delete") == "Delete", (env, logical_id)


def test_no_resource_keeps_a_plain_retain_that_would_survive_a_create_rollback(stack: Synthesized) -> None:
    retained = [k for k, r in stack.json["Resources"].items() if r.get("DeletionPolicy") == "Retain"]

    assert retained == []


@pytest.fixture(scope="module")
def first_create(tmp_path_factory: pytest.TempPathFactory) -> tuple[cx_api.CloudAssembly, dict[str, Any]]:
    context = DEPLOYER_CONTEXT | {cfg.FIRST_CREATE_CONTEXT_KEY: "true"}
    assembly = synth(
        "prod", Path(tmp_path_factory.mktemp("first-create")), install_dependencies=False, extra_context=context
    )
    return assembly, assembly.get_stack_by_name("PaymentQueue-prod").template


def test_prods_first_create_leaves_deletion_protection_off_so_its_rollback_can_delete(
    first_create: tuple[cx_api.CloudAssembly, dict[str, Any]],
) -> None:
    assembly, template = first_create
    instance = next(r for r in template["Resources"].values() if r["Type"] == "AWS::RDS::DBInstance")

    # Deletion protection refuses the rollback's delete too; RetainExceptOnCreate alone is not enough.
    assert instance["Properties"]["DeletionProtection"] is False
    assert instance["DeletionPolicy"] == "RetainExceptOnCreate"
    # cdk-nag's deletion-protection finding is suppressed for this deployment, with its reason.
    assert errors(assembly) == []


def test_proxy_borrow_timeout_is_well_under_every_database_functions_timeout(stack: Synthesized) -> None:
    _, target_group = stack.only("AWS::RDS::DBProxyTargetGroup")
    borrow = target_group["Properties"]["ConnectionPoolConfigurationInfo"]["ConnectionBorrowTimeout"]

    assert borrow == stack.config.database.proxy_borrow_timeout_seconds
    for name in stack.config.database_clients():
        _, function = stack.function(name)
        assert 2 * borrow <= function["Properties"]["Timeout"], name


def test_prod_database_sends_enhanced_monitoring_os_metrics_every_minute(stacks: dict[str, Synthesized]) -> None:
    for name, stack in stacks.items():
        _, instance = stack.only("AWS::RDS::DBInstance")
        properties = instance["Properties"]

        if name == "prod":
            # The OS's view (memory, swap, processes) for the one environment that is paged on
            assert properties["MonitoringInterval"] == 60
            role = properties["MonitoringRoleArn"]["Fn::GetAtt"][0]
            trust = stack.json["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            assert [s["Principal"] for s in trust] == [{"Service": "monitoring.rds.amazonaws.com"}]
        else:
            assert "MonitoringInterval" not in properties, name

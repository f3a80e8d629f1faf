"""PostgreSQL behind RDS Proxy: private, encrypted, TLS-only, reachable from the DB functions only."""

from __future__ import annotations

from aws_cdk.assertions import Match

from tests.infra.conftest import Synthesized


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
    assert prod_db["DeletionPolicy"] == "Retain"
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

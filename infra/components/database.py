"""PostgreSQL on RDS behind RDS Proxy; the functions only ever see the proxy."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.components.common import log_retention, removal_policy
from infra.components.network import Network
from infra.config import EnvironmentConfig
from shared.db_roles import LOGIN_ROLES

DB_NAME = "payments"
DB_PORT = 5432
DB_USER = "payments_admin"
_EXPORTED_LOGS = ("postgresql", "upgrade")


class Database(Construct):
    """An encrypted, backed-up instance in isolated subnets and a TLS-only proxy in front of it.

    RDS manages the master password in Secrets Manager and rotates it itself, so no rotation
    function has to run inside the VPC. Only the migrate function logs in with it (the master user owns
    the schema); every other function logs in as its own role (shared/db_roles.py) with an IAM token,
    and the proxy logs in to the instance as that role with IAM too: end-to-end IAM authentication,
    no password for them anywhere.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, network: Network) -> None:
        super().__init__(scope, construct_id)
        db = config.database
        engine = rds.DatabaseInstanceEngine.postgres(
            version=rds.PostgresEngineVersion.of(db.engine_version, db.engine_version.split(".")[0])
        )
        self.instance_security_group = ec2.SecurityGroup(
            self,
            "InstanceSecurityGroup",
            vpc=network.vpc,
            allow_all_outbound=False,
            description="PostgreSQL: reachable from the proxy only",
        )
        self.proxy_security_group = ec2.SecurityGroup(
            self,
            "ProxySecurityGroup",
            vpc=network.vpc,
            allow_all_outbound=False,
            description="RDS Proxy: reachable from the database functions only",
        )
        # add_proxy() opens the instance to the proxy group (both directions); nothing else is.

        parameters = rds.ParameterGroup(
            self,
            "Parameters",
            engine=engine,
            parameters={
                "max_connections": str(db.max_connections),
                # Refuse plaintext connections even from inside the VPC.
                "rds.force_ssl": "1",
                # A payment transaction takes milliseconds; a stuck one must not hold row locks.
                "idle_in_transaction_session_timeout": "60000",
                "log_min_duration_statement": "1000",
            },
        )
        identifier = f"payment-queue-{config.name}"
        # Created here, not by RDS, so they get the environment's retention without a
        # LogRetention custom resource; RDS writes into the groups named after the instance.
        instance_logs = [
            logs.LogGroup(
                self,
                f"{kind.title()}Logs",
                log_group_name=f"/aws/rds/instance/{identifier}/{kind}",
                retention=log_retention(config.log_retention_days),
                removal_policy=removal_policy(config),
            )
            for kind in _EXPORTED_LOGS
        ]
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            instance_identifier=identifier,
            engine=engine,
            instance_type=ec2.InstanceType(db.instance_class),
            vpc=network.vpc,
            vpc_subnets=network.isolated_subnets,
            security_groups=[self.instance_security_group],
            database_name=DB_NAME,
            port=DB_PORT,
            credentials=rds.Credentials.from_username(DB_USER),
            manage_master_user_password=True,
            parameter_group=parameters,
            multi_az=db.multi_az,
            storage_encrypted=True,
            storage_type=rds.StorageType.GP3,
            allocated_storage=db.allocated_storage_gb,
            max_allocated_storage=db.max_allocated_storage_gb,
            backup_retention=Duration.days(db.backup_retention_days),
            # Off only on the stack's first deployment (EnvironmentConfig.deletion_protection).
            deletion_protection=config.deletion_protection,
            removal_policy=removal_policy(config),
            delete_automated_backups=not config.retain_data,
            auto_minor_version_upgrade=True,
            iam_authentication=True,
            enable_performance_insights=db.performance_insights,
            # CDK makes the role RDS publishes the OS metrics with (AmazonRDSEnhancedMonitoringRole).
            monitoring_interval=(
                Duration.seconds(db.enhanced_monitoring_interval_seconds)
                if db.enhanced_monitoring_interval_seconds
                else None
            ),
            cloudwatch_logs_exports=list(_EXPORTED_LOGS),
        )
        for group in instance_logs:
            self.instance.node.add_dependency(group)
        # CDK gives the subnet group it makes the instance's policy only for a plain Retain; a
        # subnet group deleted under a retained instance fails the stack deletion (it is in use).
        subnet_group = self.instance.node.find_child("SubnetGroup")
        assert isinstance(subnet_group, rds.SubnetGroup)
        subnet_group.apply_removal_policy(removal_policy(config))
        self.secret: secretsmanager.ISecret = self.instance.secret  # type: ignore[assignment]

        proxy_logs = logs.LogGroup(
            self,
            "ProxyLogs",
            log_group_name=f"/aws/rds/proxy/{identifier}",
            retention=log_retention(config.log_retention_days),
            removal_policy=removal_policy(config),
        )
        # End-to-end IAM authentication (DefaultAuthScheme IAM_AUTH): a client presenting an IAM token
        # for a database user is logged in to the instance as that user with the proxy's own IAM role,
        # which needs rds-db:connect on the instance's user ("Configuring IAM authentication for RDS
        # Proxy", end-to-end; the users hold rds_iam, migration 0014). Secrets stay optional with it
        # ("Creating a proxy": Secrets Manager secrets); the master user's keeps the migrate function's
        # password login (IAMAuth DISABLED for that secret).
        proxy_role = iam.Role(
            self,
            "ProxyRole",
            assumed_by=iam.ServicePrincipal("rds.amazonaws.com"),
            description="RDS Proxy: reads the master secret, logs in to the instance as the functions' roles",
        )
        for user in LOGIN_ROLES.values():
            self.instance.grant_connect(proxy_role, user)
        self.proxy = self.instance.add_proxy(
            "Proxy",
            db_proxy_name=identifier,
            role=proxy_role,
            default_auth_scheme=rds.DefaultAuthScheme.IAM_AUTH,
            secrets=[self.secret],
            vpc=network.vpc,
            vpc_subnets=network.isolated_subnets,
            security_groups=[self.proxy_security_group],
            require_tls=True,
            iam_auth=False,
            client_password_auth_type=rds.ClientPasswordAuthType.POSTGRES_SCRAM_SHA_256,
            max_connections_percent=db.proxy_max_connections_percent,
            # Well under every database function's timeout (checked in infra/config.py): a failed
            # borrow is answered 503 service_busy, or the payment retried, before Lambda gives up.
            borrow_timeout=Duration.seconds(db.proxy_borrow_timeout_seconds),
            debug_logging=False,
        )
        self.proxy.node.add_dependency(proxy_logs)

    def allow_from(self, security_group: ec2.ISecurityGroup, description: str) -> None:
        """Lets a function's security group open connections to the proxy."""
        self.proxy_security_group.add_ingress_rule(security_group, ec2.Port.tcp(DB_PORT), description)

"""VPC: the database in isolated subnets, the functions that reach it in private ones."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.components.common import log_group
from infra.config import EnvironmentConfig


class Network(Construct):
    """Subnets, the NAT egress the processor needs, and endpoints for every AWS API called.

    Only the processor calls the internet (Razorpay, Cashfree), so only it sits in the subnets
    with a NAT route; the other VPC functions run in isolated subnets and reach SQS, Secrets
    Manager and EventBridge through interface endpoints.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            availability_zones=list(config.availability_zones),
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="egress", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
                ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=22),
            ],
            restrict_default_security_group=True,
        )
        flow_logs = log_group(self, "FlowLogs", config)
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )

        self.isolated_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.egress_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)

        self.endpoints_security_group = ec2.SecurityGroup(
            self,
            "EndpointsSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="Interface endpoints: HTTPS from inside the VPC",
        )
        self.endpoints_security_group.add_ingress_rule(
            ec2.Peer.ipv4(self.vpc.vpc_cidr_block), ec2.Port.tcp(443), "HTTPS from the VPC"
        )
        self.endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        for endpoint_id, service in (
            ("Sqs", ec2.InterfaceVpcEndpointAwsService.SQS),
            ("SecretsManager", ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER),
            ("Events", ec2.InterfaceVpcEndpointAwsService.EVENTBRIDGE),
        ):
            self.endpoints[endpoint_id] = self.vpc.add_interface_endpoint(
                endpoint_id,
                service=service,
                subnets=self.isolated_subnets,
                security_groups=[self.endpoints_security_group],
                private_dns_enabled=True,
            )

"""One stack per environment, composed of one construct per concern."""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack, Tags
from constructs import Construct

from infra.components.api import PaymentsApi
from infra.components.database import Database
from infra.components.functions import Functions
from infra.components.migrations import Migrations
from infra.components.monitoring import Monitoring
from infra.components.network import Network
from infra.components.notifications import Notifications
from infra.components.queues import PaymentQueues
from infra.components.waiting import NowServingCdn
from infra.config import EnvironmentConfig
from infra.nag import suppress_findings


class PaymentQueueStack(Stack):
    def __init__(self, scope: Construct, *, config: EnvironmentConfig, install_dependencies: bool = True) -> None:
        # Region-pinned, account-agnostic: deploys into whichever account the caller's
        # credentials name, and synthesizes without any (the zones come from cdk.json).
        super().__init__(
            scope,
            config.stack_name,
            env=Environment(region=config.region),
            description=f"Payment Queue ({config.name}): API, payment queue, processor, database",
            termination_protection=config.retain_data,
        )
        # The CloudFormation schema of AWS::RDS::DBProxyTargetGroup has no Tags property.
        untaggable = ["AWS::RDS::DBProxyTargetGroup"]
        Tags.of(self).add("project", "payment-queue", exclude_resource_types=untaggable)
        Tags.of(self).add("environment", config.name, exclude_resource_types=untaggable)

        network = Network(self, "Network", config=config)
        database = Database(self, "Database", config=config, network=network)
        queues = PaymentQueues(self, "Queues", config=config)
        notifications = Notifications(self, "Notifications", config=config)
        functions = Functions(
            self,
            "Functions",
            config=config,
            network=network,
            database=database,
            queues=queues,
            notifications=notifications,
            install_dependencies=install_dependencies,
        )
        notifications.subscribe(functions.notify)
        api = PaymentsApi(self, "Api", config=config, enqueue=functions.enqueue, status=functions.status)
        waiting = NowServingCdn(self, "NowServing", config=config, api=api)
        functions.send_waiting_clients_to(waiting.now_serving_url)
        Migrations(
            self,
            "Migrations",
            migrate=functions.migrate,
            after=[database, network.endpoints["SecretsManager"]],
            before=[f for f in functions.all if f is not functions.migrate],
        )
        monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            queues=queues,
            functions=functions,
            proxy=database.proxy,
            notifications=notifications,
            api=api,
            key=notifications.key,
        )

        self.functions = functions
        outputs = {
            "ApiUrl": (api.url, "Base URL of the HTTP API"),
            "NowServingUrl": (waiting.url, "Base URL of GET /v1/queue/now-serving for waiting shoppers (CloudFront)"),
            "QueueUrl": (queues.queue.queue_url, "payments.fifo"),
            "DeadLetterQueueUrl": (queues.dlq.queue_url, "payments DLQ: redrive from the SQS console"),
            "NotificationsDeadLetterQueueUrl": (notifications.dlq.queue_url, "Undelivered payment events"),
            "PaymentEventsTopicArn": (notifications.topic.topic_arn, "Subscribe here for payment events"),
            "EventBusName": (notifications.bus.event_bus_name, "PaymentSucceeded / PaymentFailed events"),
            "OpsTopicArn": (monitoring.ops_topic.topic_arn, "Every alarm notifies this topic"),
            "DashboardUrl": (monitoring.dashboard_url, "CloudWatch dashboard"),
            "DatabaseProxyEndpoint": (database.proxy.endpoint, "RDS Proxy endpoint (TLS required)"),
            "DatabaseSecretArn": (database.secret.secret_arn, "RDS-managed master credentials"),
        }
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)

        suppress_findings(
            self,
            config=config,
            network=network,
            database=database,
            functions=functions,
            notifications=notifications,
        )

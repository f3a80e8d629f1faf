"""Payment events: EventBridge bus -> rules -> SNS topic -> notify function (and any subscriber)."""

from __future__ import annotations

import jsii
from aws_cdk import Aws, Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk.interfaces import aws_events as events_refs
from constructs import Construct

from infra.components.common import removal_policy
from infra.config import EnvironmentConfig

EVENT_SOURCE = "payment-queue"
DETAIL_TYPES = ("PaymentSucceeded", "PaymentFailed")


class Notifications(Construct):
    """The processor publishes to the bus after commit (via the outbox); one rule per outcome
    forwards to the topic, so the dashboard counts successes and failures per rule, and other
    systems subscribe to the topic without touching this stack.

    Every hop that can drop an event has a dead-letter queue: the rule target, the SNS
    subscription and the notify function's asynchronous invocation all land in `dlq`.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, construct_id)
        prefix = f"payment-queue-{config.name}"
        # A customer managed key: EventBridge and CloudWatch can publish to an encrypted topic
        # only if the key policy lets them, which the AWS managed SNS key does not.
        self.key = kms.Key(
            self,
            "TopicKey",
            description=f"{prefix}: encrypts the payment-events and alarm topics",
            enable_key_rotation=True,
            removal_policy=removal_policy(config),
        )
        # CloudWatch (alarms to the ops topic) only. EventBridge is not named here: AWS does not
        # document aws:SourceAccount for EventBridge's use of a topic's key, and its delivery to
        # the payment-events topic works through the statement targets.SnsTopic adds itself.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                resources=["*"],  # in a key policy "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )

        self.bus = events.EventBus(self, "Bus", event_bus_name=prefix)
        self.topic = sns.Topic(
            self,
            "PaymentEvents",
            topic_name=f"{prefix}-payment-events",
            display_name="Payment Queue payment events",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.dlq = sqs.Queue(
            self,
            "NotificationsDeadLetterQueue",
            queue_name=f"{prefix}-notifications-dlq",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=removal_policy(config),
        )
        self.rules: dict[str, events.Rule] = {}
        for detail_type in DETAIL_TYPES:
            self.rules[detail_type] = events.Rule(
                self,
                f"{detail_type}Rule",
                event_bus=self.bus,
                description=f"{detail_type} events to the payment-events topic",
                event_pattern=events.EventPattern(source=[EVENT_SOURCE], detail_type=[detail_type]),
                targets=[_PublishFromThisRule(self.topic, self.dlq)],
            )

    def subscribe(self, notify: lambda_.Function) -> None:
        """Delivers every topic message to `notify`; failures end in the notifications DLQ."""
        notify.configure_async_invoke(
            retry_attempts=2,
            max_event_age=Duration.hours(6),
            on_failure=destinations.SqsDestination(self.dlq),
        )
        self.topic.add_subscription(subscriptions.LambdaSubscription(notify, dead_letter_queue=self.dlq))


@jsii.implements(events.IRuleTarget)
class _PublishFromThisRule:
    """A rule's SNS target whose topic policy lets EventBridge publish for this rule only.

    CDK's targets.SnsTopic grants events.amazonaws.com sns:Publish with no condition: any rule in any
    account could then publish to the topic through EventBridge. Here each rule's statement carries
    aws:SourceArn, the rule's ARN, as EventBridge's own policy for an SNS target does ("Using
    resource-based policies for Amazon EventBridge", Amazon SNS permissions); so does the statement
    letting it send what it could not deliver to the DLQ. No role: for SNS targets with KMS encryption
    a RoleArn can make delivery fail (same page), so the resource policy it is.
    """

    # EventBridge's maximum; with its 24 h maximum event age, an event is retried for a day.
    RETRY_ATTEMPTS = 185

    def __init__(self, topic: sns.Topic, dlq: sqs.Queue) -> None:
        self.topic, self.dlq = topic, dlq

    def bind(self, rule: events_refs.IRuleRef, id: str | None = None) -> events.RuleTargetConfig:
        from_this_rule = {"ArnEquals": {"aws:SourceArn": rule.rule_ref.rule_arn}}
        events_principal = iam.ServicePrincipal("events.amazonaws.com")
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["sns:Publish"],
                principals=[events_principal],
                resources=[self.topic.topic_arn],
                conditions=from_this_rule,
            )
        )
        self.dlq.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["sqs:SendMessage"],
                principals=[events_principal],
                resources=[self.dlq.queue_arn],
                conditions=from_this_rule,
            )
        )
        return events.RuleTargetConfig(
            arn=self.topic.topic_arn,
            target_resource=self.topic,
            dead_letter_config=events.CfnRule.DeadLetterConfigProperty(arn=self.dlq.queue_arn),
            retry_policy=events.CfnRule.RetryPolicyProperty(maximum_retry_attempts=self.RETRY_ATTEMPTS),
        )

"""Alarms with the seed's thresholds, all to one ops topic, and the operators' dashboard."""

from __future__ import annotations

from functools import partial

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.components.api import PaymentsApi
from infra.components.functions import Functions
from infra.components.notifications import DETAIL_TYPES, Notifications
from infra.components.queues import PaymentQueues
from infra.config import EnvironmentConfig
from shared.observability import ENVIRONMENT_DIMENSION, NAMESPACE, SERVICE

_MINUTE = Duration.minutes(1)


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        queues: PaymentQueues,
        functions: Functions,
        proxy: rds.DatabaseProxy,
        notifications: Notifications,
        api: PaymentsApi,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        prefix = f"payment-queue-{config.name}"
        thresholds = config.alarms
        self.ops_topic = sns.Topic(
            self,
            "OpsTopic",
            topic_name=f"{prefix}-ops-alarms",
            display_name="Payment Queue alarms",
            master_key=key,
            enforce_ssl=True,
        )
        # The topic's own policy (TLS only) replaces SNS's default one, so CloudWatch needs an
        # explicit allow to deliver alarms.
        self.ops_topic.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["sns:Publish"],
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                resources=[self.ops_topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        if config.alarm_email:
            self.ops_topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        self.alarms: list[cw.Alarm] = []

        queue, dlq = queues.queue, queues.dlq
        depth = queue.metric_approximate_number_of_messages_visible(period=_MINUTE, statistic="Maximum")
        in_flight = queue.metric_approximate_number_of_messages_not_visible(period=_MINUTE, statistic="Maximum")
        age = queue.metric_approximate_age_of_oldest_message(period=_MINUTE, statistic="Maximum")
        dlq_depth = dlq.metric_approximate_number_of_messages_visible(period=_MINUTE, statistic="Maximum")
        sent = queue.metric_number_of_messages_sent(period=_MINUTE, statistic="Sum")
        deleted = queue.metric_number_of_messages_deleted(period=_MINUTE, statistic="Sum")

        processor = functions.process_payment
        invocations = processor.metric_invocations(period=_MINUTE, statistic="Sum")
        errors = processor.metric_errors(period=_MINUTE, statistic="Sum")
        error_rate = cw.MathExpression(
            expression="IF(invocations > 0, 100 * errors / invocations, 0)",
            using_metrics={"invocations": invocations, "errors": errors},
            label="Processor error rate (%)",
            period=_MINUTE,
        )
        # RDS Proxy's own metrics (AWS/RDS, dimension set 1: ProxyName; "Monitoring RDS Proxy
        # metrics with Amazon CloudWatch": "RDS publishes these metrics for each underlying Amazon
        # EC2 instance associated with a proxy ... Use CloudWatch statistics to aggregate the values
        # for a proxy across all the associated instances"). A proxy served by two nodes reports two
        # data points a minute, so connection counts are summed (Maximum would read one node's
        # count); the borrow latency is averaged, in microseconds.
        proxy_connections = _proxy_metric(proxy, "DatabaseConnections", "Sum")
        proxy_client_connections = _proxy_metric(proxy, "ClientConnections", "Sum")
        proxy_pinned = _proxy_metric(proxy, "DatabaseConnectionsCurrentlySessionPinned", "Sum")
        proxy_borrow_latency = _proxy_metric(proxy, "DatabaseConnectionsBorrowLatency", "Average")

        # The functions' own EMF metrics (shared/observability.py): this environment's only.
        _app_metric = partial(app_metric, config.name)

        # The processor's failed records against every record it handled: each one ends in exactly
        # one outcome metric, or fails.
        records_failed = _app_metric("RecordsFailed")
        outcomes = {
            "succeeded": _app_metric("PaymentsSucceeded"),
            "failed": _app_metric("PaymentsFailed"),
            "redelivered": _app_metric("PaymentsRedelivered"),
            # a Cashfree order still ACTIVE: the job waits for its webhook or the reconciliation
            "parked": _app_metric("PaymentsAwaitingGateway"),
        }
        handled = "FILL(recordsFailed, 0) + " + " + ".join(f"FILL({k}, 0)" for k in outcomes)
        records_failed_rate = cw.MathExpression(
            expression=f"IF(({handled}) > 0, 100 * FILL(recordsFailed, 0) / ({handled}), 0)",
            using_metrics={"recordsFailed": records_failed, **outcomes},
            label="Processor records failed (%)",
            period=_MINUTE,
        )
        proxy_connection_limit = config.database.proxy_connection_budget
        proxy_threshold = proxy_connection_limit * thresholds.proxy_connections_percent / 100

        self._alarm(
            "QueueDepth",
            depth,
            thresholds.queue_depth,
            periods=3,
            description=f"More than {thresholds.queue_depth} payments waiting in payments.fifo",
        )
        self._alarm(
            "OldestMessageAge",
            age,
            thresholds.oldest_message_age_seconds,
            periods=1,
            description=f"A payment has waited longer than {thresholds.oldest_message_age_seconds // 60} minutes",
        )
        self._alarm(
            "ProcessorErrorRate",
            error_rate,
            thresholds.processor_error_rate_percent,
            periods=3,
            description=f"More than {thresholds.processor_error_rate_percent}% of processor invocations failed",
        )
        self._alarm(
            "DeadLetterQueueNotEmpty",
            dlq_depth,
            thresholds.dlq_messages,
            periods=1,
            description="Payments moved to the DLQ: inspect and redrive (docs/deploy.md)",
        )
        self._alarm(
            "NotificationsDeadLetterQueueNotEmpty",
            notifications.dlq.metric_approximate_number_of_messages_visible(period=_MINUTE, statistic="Maximum"),
            0,
            periods=1,
            description="Payment events that could not be delivered to the webhook",
        )
        self._alarm(
            "ProxyConnections",
            proxy_connections,
            proxy_threshold,
            periods=3,
            description=f"RDS Proxy uses more than {thresholds.proxy_connections_percent}% of its "
            f"{proxy_connection_limit} database connections",
        )
        self._alarm(
            "ProcessorRecordsFailed",
            records_failed_rate,
            thresholds.processor_records_failed_percent,
            periods=3,
            description=f"More than {thresholds.processor_records_failed_percent}% of payment records failed "
            "(database or gateway trouble; failed records do not count as Lambda errors)",
        )
        self._alarm(
            "GatewayRefundsFailed",
            _app_metric("RefundsFailed"),
            0,
            periods=1,
            description="A gateway refund is owed: the gateway failed it after every attempt or refused it; the "
            "shopper's money is still with us. Fix the cause, then POST /v1/refunds/{id}/retry (GET /v1/queue/status "
            "lists it under refunds.owed_refunds)",
        )
        self._alarm(
            "GatewayMoneyUnaccounted",
            _app_metric("GatewayMoneyUnaccounted"),
            0,
            periods=1,
            description="A sweep found gateway money our books place nowhere (not applied, refunded, refunding or "
            "owed): a defect of ours. The sweeper's error line 'gateway money in no book' names the payment; "
            "pq_gateway_books() shows its books (docs/deploy.md, alarms)",
        )
        self._alarm(
            "SweeperErrors",
            functions.sweeper.metric_errors(period=_MINUTE, statistic="Sum"),
            0,
            periods=1,
            description="A sweeper run failed. Its reconciliation goes on past an item it cannot settle and fails the "
            "run at the end, so a recurring failure is one item the gateways' money waits on: the sweeper's "
            "error log line names it (docs/deploy.md, alarms)",
        )
        self._alarm(
            "ProxyPinnedConnections",
            proxy_pinned,
            thresholds.proxy_pinned_connections,
            periods=3,
            description="RDS Proxy has pinned sessions: some client sent session state (docs/deploy.md, pinning)",
        )
        self._alarm(
            "ProxyBorrowLatency",
            proxy_borrow_latency,
            thresholds.proxy_borrow_latency_ms * 1_000,  # the metric is in microseconds
            periods=3,
            description=f"Borrowing a DB connection from RDS Proxy takes over {thresholds.proxy_borrow_latency_ms} ms "
            "on average: the connection budget is exhausted (clients get 503 service_busy)",
        )
        for function in functions.all:
            name = function.node.id
            self._alarm(
                f"{name}Throttles",
                function.metric_throttles(period=_MINUTE, statistic="Sum"),
                thresholds.throttles,
                periods=1,
                description=f"The {name} function was throttled",
            )

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=prefix, default_interval=Duration.hours(3))
        accepted, succeeded, failed = (
            _app_metric(n) for n in ("PaymentsAccepted", "PaymentsSucceeded", "PaymentsFailed")
        )
        gateway = [_app_metric(n) for n in ("GatewayCaptures", "GatewayThrottled", "GatewayBackoffs")]
        limiter_wait = _app_metric("LimiterWaitMs", "p99")
        matched = [
            cw.Metric(
                namespace="AWS/Events",
                metric_name="MatchedEvents",
                dimensions_map={
                    "EventBusName": notifications.bus.event_bus_name,
                    "RuleName": notifications.rules[detail_type].rule_name,
                },
                period=_MINUTE,
                statistic="Sum",
                label=f"{detail_type} events",
            )
            for detail_type in DETAIL_TYPES
        ]
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Queue depth", left=[depth, in_flight], right=[dlq_depth], width=8),
            cw.GraphWidget(
                title="Wait time: oldest message age (s)",
                left=[age],
                left_annotations=[cw.HorizontalAnnotation(value=thresholds.oldest_message_age_seconds, label="alarm")],
                width=8,
            ),
            cw.GraphWidget(title="Throughput per minute", left=[sent, deleted], width=8),
            cw.GraphWidget(
                title="Payments: accepted / succeeded / failed",
                left=[accepted, succeeded, failed],
                right=matched,
                width=8,
            ),
            cw.GraphWidget(
                title="Processor error rate (%)",
                left=[error_rate],
                right=[invocations, errors],
                left_annotations=[
                    cw.HorizontalAnnotation(value=thresholds.processor_error_rate_percent, label="alarm")
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Processor duration (ms)",
                left=[
                    processor.metric_duration(period=_MINUTE, statistic="p50"),
                    processor.metric_duration(period=_MINUTE, statistic="p99"),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="RDS Proxy connections",
                left=[proxy_connections, proxy_client_connections],
                right=[proxy_pinned],
                left_annotations=[cw.HorizontalAnnotation(value=proxy_threshold, label="alarm")],
                width=8,
            ),
            cw.GraphWidget(
                title="RDS Proxy borrow latency (µs)",
                left=[proxy_borrow_latency],
                left_annotations=[
                    cw.HorizontalAnnotation(value=thresholds.proxy_borrow_latency_ms * 1_000, label="alarm")
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Processor records failed (%)",
                left=[records_failed_rate],
                right=[records_failed],
                left_annotations=[
                    cw.HorizontalAnnotation(value=thresholds.processor_records_failed_percent, label="alarm")
                ],
                width=8,
            ),
            cw.GraphWidget(title="DLQ depth", left=[dlq_depth], width=8),
            cw.GraphWidget(
                title="Gateway calls and rate-limiter wait (ms, p99)", left=gateway, right=[limiter_wait], width=8
            ),
            cw.GraphWidget(
                title="API requests and latency",
                left=[
                    api.http_api.metric_count(period=_MINUTE),
                    api.http_api.metric_server_error(period=_MINUTE),
                    api.http_api.metric_client_error(period=_MINUTE),
                ],
                right=[api.http_api.metric_latency(period=_MINUTE, statistic="p99")],
                width=8,
            ),
            cw.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24),
        )

    @property
    def dashboard_url(self) -> str:
        region = Stack.of(self).region
        return (
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#dashboards:name={self.dashboard.dashboard_name}"
        )

    def _alarm(self, alarm_id: str, metric: cw.IMetric, threshold: float, *, periods: int, description: str) -> None:
        alarm = cw.Alarm(
            self,
            alarm_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=periods,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.ops_topic))
        alarm.add_ok_action(cw_actions.SnsAction(self.ops_topic))
        self.alarms.append(alarm)


def app_metric(environment: str, name: str, statistic: str = "Sum") -> cw.Metric:
    """One of the functions' EMF metrics, as Powertools emits it: namespace, service and environment."""
    return cw.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE, ENVIRONMENT_DIMENSION: environment},
        period=_MINUTE,
        statistic=statistic,
    )


def _proxy_metric(proxy: rds.DatabaseProxy, name: str, statistic: str) -> cw.Metric:
    return cw.Metric(
        namespace="AWS/RDS",
        metric_name=name,
        dimensions_map={"ProxyName": proxy.db_proxy_name},
        period=_MINUTE,
        statistic=statistic,
    )

"""Alarms at the seed's thresholds (per environment config), the dashboard and the outputs."""

from __future__ import annotations

import json
from typing import Any

from shared.observability import NAMESPACE, SERVICE
from tests.infra.conftest import Synthesized


def _alarms_on(stack: Synthesized, metric_name: str, **dimensions: Any) -> list[dict[str, Any]]:
    found = []
    for alarm in stack.resources("AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        actual = {d["Name"]: d["Value"] for d in properties.get("Dimensions", [])}
        if properties.get("MetricName") == metric_name and all(actual.get(k) == v for k, v in dimensions.items()):
            found.append(properties)
    return found


def _single_alarm_on(stack: Synthesized, metric_name: str, **dimensions: Any) -> dict[str, Any]:
    alarms = _alarms_on(stack, metric_name, **dimensions)
    assert len(alarms) == 1, f"{len(alarms)} alarms on {metric_name} {dimensions}"
    return alarms[0]


def test_queue_depth_alarm_fires_above_a_thousand_waiting_payments(stack: Synthesized) -> None:
    queue = {"Fn::GetAtt": [stack.queue("-payments.fifo"), "QueueName"]}
    alarm = _single_alarm_on(stack, "ApproximateNumberOfMessagesVisible", QueueName=queue)

    assert alarm["Threshold"] == stack.config.alarms.queue_depth == 1_000
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_oldest_message_alarm_fires_after_twenty_minutes(stack: Synthesized) -> None:
    queue = {"Fn::GetAtt": [stack.queue("-payments.fifo"), "QueueName"]}
    alarm = _single_alarm_on(stack, "ApproximateAgeOfOldestMessage", QueueName=queue)

    assert alarm["Threshold"] == stack.config.alarms.oldest_message_age_seconds == 20 * 60


def test_dead_letter_queue_alarms_fire_on_the_first_message(stack: Synthesized) -> None:
    for suffix in ("-payments-dlq.fifo", "-notifications-dlq"):
        queue = {"Fn::GetAtt": [stack.queue(suffix), "QueueName"]}
        alarm = _single_alarm_on(stack, "ApproximateNumberOfMessagesVisible", QueueName=queue)

        assert alarm["Threshold"] == 0
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["EvaluationPeriods"] == 1


def test_processor_error_rate_alarm_fires_above_two_percent(stack: Synthesized) -> None:
    processor_id, _ = stack.function("process_payment")
    rate_alarms = [
        a["Properties"]
        for a in stack.resources("AWS::CloudWatch::Alarm").values()
        if any("errors / invocations" in m.get("Expression", "") for m in a["Properties"].get("Metrics", []))
    ]

    assert len(rate_alarms) == 1
    alarm = rate_alarms[0]
    assert alarm["Threshold"] == stack.config.alarms.processor_error_rate_percent == 2.0
    inputs = [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m]
    assert {m["MetricName"] for m in inputs} == {"Errors", "Invocations"}
    assert all(m["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": processor_id}}] for m in inputs)


def test_a_failed_sweeper_run_alarms_at_once(stack: Synthesized) -> None:
    # The sweeper settles what the gateways' webhooks did not (checkouts, refunds): a run that fails, even one
    # in half an hour (one item it cannot settle, retried on its backoff), is in front of the operator
    sweeper_id, _ = stack.function("sweeper")
    alarm = _single_alarm_on(stack, "Errors", FunctionName={"Ref": sweeper_id})

    assert alarm["Threshold"] == 0 and alarm["EvaluationPeriods"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["Statistic"] == "Sum"


def test_proxy_connection_alarm_fires_at_ninety_percent_of_the_proxy_budget(stack: Synthesized) -> None:
    proxy_id, _ = stack.only("AWS::RDS::DBProxy")
    database = stack.config.database
    alarm = _single_alarm_on(stack, "DatabaseConnections", ProxyName={"Ref": proxy_id})

    budget = database.max_connections * database.proxy_max_connections_percent / 100
    assert alarm["Threshold"] == budget * 0.9
    # RDS Proxy publishes the count per proxy node: summed, the alarm sees the proxy's total.
    assert alarm["Statistic"] == "Sum"


def test_every_function_has_a_throttle_alarm(stack: Synthesized) -> None:
    throttled = {alarm["Dimensions"][0]["Value"]["Ref"]: alarm["Threshold"] for alarm in _alarms_on(stack, "Throttles")}

    expected = {stack.function(n)[0] for n in ("enqueue", "status", "process_payment", "notify", "sweeper", "migrate")}
    assert set(throttled) == expected
    assert set(throttled.values()) == {0}


def test_every_alarm_notifies_the_ops_topic_when_raised_and_cleared(stack: Synthesized) -> None:
    ops_topic = {"Ref": stack.topic("-ops-alarms")}
    for alarm in stack.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [ops_topic]
        assert alarm["Properties"]["OKActions"] == [ops_topic]


def test_dashboard_and_operator_outputs_exist(stack: Synthesized) -> None:
    _, dashboard = stack.only("AWS::CloudWatch::Dashboard", DashboardName=f"payment-queue-{stack.config.name}")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    outputs = stack.json["Outputs"]

    for title in ("Queue depth", "Wait time", "Throughput", "succeeded", "error rate", "RDS Proxy connections", "DLQ"):
        assert title in body, title
    assert {"ApiUrl", "QueueUrl", "DeadLetterQueueUrl", "DashboardUrl"} <= set(outputs)
    assert outputs["DeadLetterQueueUrl"]["Value"] == {"Ref": stack.queue("-payments-dlq.fifo")}


def test_cloudwatch_may_publish_to_the_ops_topic(stack: Synthesized) -> None:
    ops_topic = {"Ref": stack.topic("-ops-alarms")}
    policy = next(
        p["Properties"]["PolicyDocument"]
        for p in stack.resources("AWS::SNS::TopicPolicy").values()
        if p["Properties"]["Topics"] == [ops_topic]
    )

    assert any(
        s["Effect"] == "Allow"
        and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        and s["Action"] == "sns:Publish"
        and "aws:SourceAccount" in s["Condition"]["StringEquals"]
        for s in policy["Statement"]
    )


def _math_alarm_using(stack: Synthesized, metric_name: str) -> dict[str, Any]:
    found = [
        a["Properties"]
        for a in stack.resources("AWS::CloudWatch::Alarm").values()
        if any(
            m.get("MetricStat", {}).get("Metric", {}).get("MetricName") == metric_name
            for m in a["Properties"].get("Metrics", [])
        )
    ]
    assert len(found) == 1, f"{len(found)} metric-math alarms read {metric_name}"
    alarm: dict[str, Any] = found[0]
    return alarm


def test_failed_records_alarm_reads_the_processors_emf_metric(stack: Synthesized) -> None:
    # Failed records are batchItemFailures of a successful invocation: Lambda Errors stays 0.
    alarm = _math_alarm_using(stack, "RecordsFailed")

    inputs = {m["Id"]: m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m}
    failed = inputs["recordsFailed"]
    assert failed["Namespace"] == NAMESPACE
    dimensions = {d["Name"]: d["Value"] for d in failed["Dimensions"]}
    assert dimensions == {"service": SERVICE, "environment": stack.config.name}
    assert {m["MetricName"] for m in inputs.values()} == {
        "RecordsFailed",
        "PaymentsSucceeded",
        "PaymentsFailed",
        "PaymentsRedelivered",
        "PaymentsAwaitingGateway",
    }
    assert alarm["Threshold"] == stack.config.alarms.processor_records_failed_percent
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


def test_pinned_proxy_sessions_raise_an_alarm(stack: Synthesized) -> None:
    proxy_id, _ = stack.only("AWS::RDS::DBProxy")
    alarm = _single_alarm_on(stack, "DatabaseConnectionsCurrentlySessionPinned", ProxyName={"Ref": proxy_id})

    assert alarm["Namespace"] == "AWS/RDS"
    assert alarm["Statistic"] == "Sum"  # per proxy node; summed over the nodes
    assert alarm["Threshold"] == stack.config.alarms.proxy_pinned_connections == 0


def test_slow_connection_borrows_raise_an_alarm_in_microseconds(stack: Synthesized) -> None:
    proxy_id, _ = stack.only("AWS::RDS::DBProxy")
    alarm = _single_alarm_on(stack, "DatabaseConnectionsBorrowLatency", ProxyName={"Ref": proxy_id})

    assert alarm["Namespace"] == "AWS/RDS"
    assert alarm["Threshold"] == stack.config.alarms.proxy_borrow_latency_ms * 1_000
    # Far below the borrow timeout: the alarm fires while clients still get answers.
    assert alarm["Threshold"] < stack.config.database.proxy_borrow_timeout_seconds * 1_000_000


def test_the_dashboard_shows_failed_records_pinning_and_borrow_latency(stack: Synthesized) -> None:
    _, dashboard = stack.only("AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])

    for metric in ("RecordsFailed", "DatabaseConnectionsCurrentlySessionPinned", "DatabaseConnectionsBorrowLatency"):
        assert metric in body, metric


def test_a_failed_gateway_refund_raises_an_alarm(stack: Synthesized) -> None:
    alarms = [
        a["Properties"]
        for a in stack.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "RefundsFailed"
    ]

    assert len(alarms) == 1
    assert alarms[0]["Namespace"] == NAMESPACE
    assert (alarms[0]["Threshold"], alarms[0]["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert alarms[0]["AlarmActions"]

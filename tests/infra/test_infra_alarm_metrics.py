"""Every alarm reads a metric that exists: the name, statistic and dimensions the code emits (our EMF
metrics) or AWS publishes (its namespaces). An alarm on a metric nobody publishes, or on the wrong
dimensions, sits in OK forever (TreatMissingData notBreaching) and says nothing when it should."""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit

from infra.build_assets import REPO_ROOT
from shared.observability import NAMESPACE, log_metrics, metrics
from shared.settings import get_settings
from tests.infra.conftest import Synthesized

# The probes switch environments within one process, which a function never does: Powertools warns
# that the dimension changes.
pytestmark = pytest.mark.filterwarnings("ignore:Dimension 'environment' has already been added")

# What AWS publishes, per (namespace, metric): the dimension names an alarm must name (one of the
# metric's dimension sets) and the statistics that read it right.
# - AWS/SQS: "Available CloudWatch metrics for Amazon SQS" (the one dimension is QueueName). The
#   Approximate* gauges are sampled several times a minute: Maximum reads the worst of the minute.
# - AWS/Lambda: "Types of metrics for Lambda functions": Invocations, Errors, Throttles are counts,
#   "use the Sum statistic"; dimension FunctionName.
# - AWS/RDS proxy metrics: "Monitoring RDS Proxy metrics with Amazon CloudWatch": published "for each
#   underlying Amazon EC2 instance associated with a proxy", so a count must be summed over the nodes
#   ("The most useful statistic for this metric is Sum"; Average for the borrow latency); dimension
#   set 1 is ProxyName.
AWS_PUBLISHES: dict[tuple[str, str], tuple[frozenset[str], frozenset[str]]] = {
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): (frozenset({"QueueName"}), frozenset({"Maximum"})),
    ("AWS/SQS", "ApproximateAgeOfOldestMessage"): (frozenset({"QueueName"}), frozenset({"Maximum"})),
    ("AWS/Lambda", "Invocations"): (frozenset({"FunctionName"}), frozenset({"Sum"})),
    ("AWS/Lambda", "Errors"): (frozenset({"FunctionName"}), frozenset({"Sum"})),
    ("AWS/Lambda", "Throttles"): (frozenset({"FunctionName"}), frozenset({"Sum"})),
    ("AWS/RDS", "DatabaseConnections"): (frozenset({"ProxyName"}), frozenset({"Sum"})),
    ("AWS/RDS", "DatabaseConnectionsCurrentlySessionPinned"): (frozenset({"ProxyName"}), frozenset({"Sum"})),
    ("AWS/RDS", "DatabaseConnectionsBorrowLatency"): (frozenset({"ProxyName"}), frozenset({"Average"})),
}
# Our EMF metrics are events: every one a count of 1 or more, summed per minute.
EMF_STATISTICS = frozenset({"Sum"})


def _emitted_names() -> set[str]:
    """Every metric name the code passes to add_metric, read from the source (a name built from a dict,
    as the processor's outcomes, counts with the dict's values)."""
    names: set[str] = set()
    for path in [*(REPO_ROOT / "shared").rglob("*.py"), *(REPO_ROOT / "functions").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_metric"):
                continue
            name = next(k.value for k in node.keywords if k.arg == "name")
            names |= _strings(name, path)
    return names


def _strings(expression: ast.expr, path: Path) -> set[str]:
    if isinstance(expression, ast.Constant) and isinstance(expression.value, str):
        return {expression.value}
    if isinstance(expression, ast.IfExp):
        return _strings(expression.body, path) | _strings(expression.orelse, path)
    if isinstance(expression, ast.Subscript) and isinstance(expression.value, ast.Name):
        module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        table = getattr(importlib.import_module(module), expression.value.id)
        return {str(v) for v in table.values()}
    raise AssertionError(f"{path}: a metric name this test cannot read: {ast.unparse(expression)}")


def _emitted_dimensions(environment: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The dimensions Powertools writes on a metric in a function of `environment` (its EMF record)."""
    monkeypatch.setenv("PQ_ENV", environment)
    get_settings.cache_clear()

    @log_metrics
    def handler(event: Any, context: Any) -> None:
        metrics.add_metric(name="Probe", unit=MetricUnit.Count, value=1)

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            handler({}, None)
    finally:
        get_settings.cache_clear()
    record = json.loads(printed.getvalue().splitlines()[-1])
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    (names,) = directive["Dimensions"]
    return {name: record[name] for name in names}


def _alarm_inputs(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str]]:
    """(namespace, metric, dimensions, statistic) of every metric an alarm reads, direct or in its math."""
    if "MetricName" in alarm:
        statistic = alarm.get("Statistic") or alarm["ExtendedStatistic"]
        dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        return [(alarm["Namespace"], alarm["MetricName"], dimensions, statistic)]
    inputs = []
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dimensions = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            inputs.append((metric["Namespace"], metric["MetricName"], dimensions, query["MetricStat"]["Stat"]))
    return inputs


def test_every_alarm_reads_a_metric_that_is_published_with_its_dimensions_and_statistic(
    stack: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given what the code emits in this environment and what AWS publishes
    emitted = _emitted_names()
    emf_dimensions = _emitted_dimensions(stack.config.name, monkeypatch)
    alarms = stack.resources("AWS::CloudWatch::Alarm")

    # Then every input of every alarm is one of them, named as it is published
    checked = 0
    for alarm_id, alarm in alarms.items():
        inputs = _alarm_inputs(alarm["Properties"])
        assert inputs, alarm_id
        for namespace, metric, dimensions, statistic in inputs:
            where = f"{alarm_id}: {namespace}/{metric}"
            if namespace == NAMESPACE:
                assert metric in emitted, f"{where} is never emitted"
                assert dimensions == emf_dimensions, f"{where} names {dimensions}, the code emits {emf_dimensions}"
                assert statistic in EMF_STATISTICS, where
            else:
                assert (namespace, metric) in AWS_PUBLISHES, f"{where}: not in this test's table of AWS metrics"
                names, statistics = AWS_PUBLISHES[(namespace, metric)]
                assert set(dimensions) == names, f"{where} names {sorted(dimensions)}, AWS publishes {sorted(names)}"
                assert statistic in statistics, f"{where} reads {statistic}, which misreads it; use {set(statistics)}"
            checked += 1
    assert checked >= len(alarms)


def test_our_metrics_carry_the_environment_so_one_environment_never_fires_anothers_alarms(
    stacks: dict[str, Synthesized], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the processor's failed-records alarm of each environment
    seen = {}
    for name, stack in stacks.items():
        for alarm in stack.resources("AWS::CloudWatch::Alarm").values():
            for namespace, metric, dimensions, _ in _alarm_inputs(alarm["Properties"]):
                if (namespace, metric) == (NAMESPACE, "RecordsFailed"):
                    seen[name] = dimensions

    # Then each reads only its own environment's series, the one its functions write
    assert set(seen) == set(stacks)
    for name, dimensions in seen.items():
        assert dimensions["environment"] == name == _emitted_dimensions(name, monkeypatch)["environment"]
    assert len({json.dumps(d, sort_keys=True) for d in seen.values()}) == len(stacks)


def test_the_code_emits_every_metric_the_alarms_and_the_dashboard_name(prod: Synthesized) -> None:
    # The dashboard's EMF metrics too: a widget on a metric nobody writes is a blank graph.
    emitted = _emitted_names()
    _, dashboard = prod.only("AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])

    for name in ("RecordsFailed", "RefundsFailed", "PaymentsAccepted", "GatewayCaptures", "LimiterWaitMs"):
        assert name in emitted and name in body, name
    assert f'\\"{NAMESPACE}\\"' in body and '\\"environment\\"' in body

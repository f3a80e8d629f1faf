"""cdk-nag reports nothing unsuppressed, every suppression has a reason, cfn-lint is clean."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

from aws_cdk import cx_api

from tests.infra.conftest import ENVIRONMENTS

CFN_LINT_TIMEOUT_SECONDS = 300


def _nag_rows(cloud_assembly: cx_api.CloudAssembly) -> list[dict[str, str]]:
    reports = sorted(Path(cloud_assembly.directory).glob("AwsSolutions-*-NagReport.csv"))
    assert len(reports) == len(ENVIRONMENTS)
    rows = []
    for report in reports:
        with report.open(newline="") as handle:
            rows += list(csv.DictReader(handle))
    return rows


def test_cdk_nag_finds_no_unsuppressed_problem(cloud_assembly: cx_api.CloudAssembly) -> None:
    rows = _nag_rows(cloud_assembly)
    unsuppressed = [f"{r['Rule ID']} {r['Resource ID']}" for r in rows if r["Compliance"] == "Non-Compliant"]

    assert rows
    assert unsuppressed == []


def test_every_cdk_nag_suppression_gives_a_reason(cloud_assembly: cx_api.CloudAssembly) -> None:
    suppressed = [r for r in _nag_rows(cloud_assembly) if r["Compliance"] == "Suppressed"]

    assert suppressed
    for row in suppressed:
        reason = row["Exception Reason"].split("] ", 1)[-1]
        assert len(reason) >= 40, f"{row['Rule ID']} {row['Resource ID']}: {reason!r}"


def test_synthesis_reports_no_error(cloud_assembly: cx_api.CloudAssembly) -> None:
    errors = [
        f"{stack.stack_name} {message.id}"
        for stack in cloud_assembly.stacks
        for message in stack.messages
        if message.level == cx_api.SynthesisMessageLevel.ERROR
    ]

    assert errors == []


def test_cfn_lint_passes_every_template(cfn_lint: subprocess.Popen[str]) -> None:
    output, _ = cfn_lint.communicate(timeout=CFN_LINT_TIMEOUT_SECONDS)

    assert cfn_lint.returncode == 0, output

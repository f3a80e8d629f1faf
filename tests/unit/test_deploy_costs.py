"""docs/deploy.md's cost estimate counts the custom metrics the code emits: each EMF metric name is a
billed custom metric per environment (one dimension set: environment, service)."""

from __future__ import annotations

import re

from infra.build_assets import REPO_ROOT
from tests.infra.test_infra_alarm_metrics import _emitted_names

DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"
# CloudWatch custom metrics in ap-south-1, first 10,000 (the price table's source in the doc).
USD_PER_METRIC_MONTH = 0.30


def test_the_cost_estimate_counts_every_metric_name_the_code_emits_at_its_price() -> None:
    # Given the doc's cost section and the names the code passes to add_metric
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    section = text[text.index("## Cost estimate") : text.index("## Notes and limits")]
    emitted = len(_emitted_names())

    # Then the prose and the table name that many, and the table's line is their ceiling at the price
    assert {int(n) for n in re.findall(r"(\d+) EMF custom metrics", section)} == {emitted}
    (line,) = [row for row in section.splitlines() if "EMF custom metrics (ceiling)" in row]
    cells = [c.strip() for c in line.strip("|").split("|")][1:]
    assert cells == [str(round(emitted * USD_PER_METRIC_MONTH))] * 3

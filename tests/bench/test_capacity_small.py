"""`make capacity` at a tiny scale: it runs, writes the JSON the model reads, and rewrites the doc block.

Only what does not depend on the machine's speed is asserted: a 0.3 s window on a busy machine may
finish no operation at all, and a backend's CPU time is read in clock ticks (10 ms), so a short window
can read 0. The side-by-side run drains a fixed number of jobs whatever the speed, so its counts are exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_tiny_capacity_run_writes_positive_costs_and_rewrites_the_doc_block(tmp_path: Path) -> None:
    # Given a document with the generated block
    out, doc = tmp_path / "capacity.json", tmp_path / "capacity.md"
    doc.write_text(
        "# Capacity\n\nprose stays\n\n<!-- capacity:begin (make capacity rewrites this block) -->\nstale numbers\n"
        "<!-- capacity:end -->\n\nafter\n"
    )
    env = os.environ | {
        "CAP_SECONDS": "0.3",
        "CAP_CONNECTIONS": "1,2",
        "CAP_DELAYS_MS": "0,2",
        "CAP_USERS": "1500",
        "CAP_HOT_USERS": "400",
        "CAP_LIFT_JOBS": "200",
        "CAP_SHARDS": "4",
        # Memory-backed and readable by the server's own user (pytest's tmp dirs are root-only); the
        # run deletes it when it stops the server.
        "CAP_DATA_DIR": f"/dev/shm/pq-capacity-test-{os.getpid()}",
        "OUT": str(out),
        "DOC": str(doc),
        "PYTHONPATH": str(ROOT),
    }

    # When the capacity run measures
    run = subprocess.run(
        [sys.executable, "-m", "bench.capacity"],
        check=False,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )

    # Then every operation has a level per connection count, each a measurement (never negative), and
    # any level that finished an operation measured its latency
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["operations"]) == {"enqueue", "enqueue_sent_mark", "status_poll", "payment", "sold_out"}
    measured = ("ops", "tps", "p50_ms", "p99_ms", "wal_bytes_per_op", "wal_records_per_op", "backend_cpu_ms_per_op")
    for op in report["operations"].values():
        assert [lv["connections"] for lv in op["levels"]] == [1, 2]
        for lv in op["levels"]:
            assert all(lv[key] >= 0 for key in measured), lv
            assert (lv["p50_ms"] > 0) == (lv["ops"] > 0), lv
    hot = report["hot_row"]["levels"]
    assert [lv["commit_delay_ms"] for lv in hot] == [0, 2]
    assert all(lv["tps"] >= 0 for lv in hot)
    # and the side-by-side run drained both designs exactly: 200 buyers for 150 units (a quarter refused),
    # every invariant 0
    for label in ("today", "sharded"):
        side = report["lift"][label]
        assert (side["jobs"], side["succeeded"], side["out_of_stock"], side["unfinished"]) == (200, 150, 50, 0)
        assert side["invariants"] == dict.fromkeys(side["invariants"], 0)
    # and the sold-out line's bulk end ended exactly the queued jobs holding the hot product (every fourth of
    # 1,500) in one statement, and the next statement, reading the rest of the line, ended none
    line = report["sold_out_line"]
    assert (line["line_jobs"], line["ended"]) == (1500, 375)
    assert [(st["queued"], st["ended"]) for st in line["statements"]] == [(1500, 375), (1125, 0)]
    assert line["scan_cpu_ms_per_queued_job"] >= 0 and line["end_cpu_ms_per_job"] >= 0
    # and the model has the three sizes, each naming its first limit
    assert [s["shoppers"] for s in report["model"]["sizes"]] == [5_000, 50_000, 500_000]
    assert all(s["first_limit"] for s in report["model"]["sizes"])
    # and only the block was rewritten
    text = doc.read_text()
    assert text.startswith("# Capacity\n\nprose stays\n") and text.endswith("<!-- capacity:end -->\n\nafter\n")
    assert "stale numbers" not in text and "| enqueue (1) | 1 |" in text and "| enqueue_sent_mark (2) | 1 |" in text
    assert "#### 500,000 shoppers: the previous release beside today's" in text

"""The benchmark harness at CI scale: it runs end to end and its invariant checks come back clean.

Speed is not asserted here (that is `make bench`'s job); correctness is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.lock import LOCK_NAME

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_small_flash_sale_runs_both_designs_with_every_invariant_zero(tmp_path: Path) -> None:
    out = tmp_path / "small.json"
    env = os.environ | {
        "USERS": "200",
        "PRODUCTS": "10",
        "WORKERS": "4",
        "API_WORKERS": "2",
        "OUT": str(out),
        "PGBENCH_SECONDS": "2",
        "METHODS": "mix",
        "PYTHONPATH": str(ROOT),
    }
    run = subprocess.run(
        [sys.executable, "-m", "bench.flash_sale"],
        check=False,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    report = json.loads(out.read_text())
    # Each shopper was accepted, or told at once that the hot product had sold out (no job made)
    assert report["users"] == report["accepted"] + report["refused_sold_out"] == 200
    assert report["succeeded"] + report["failed_business"] == report["accepted"]
    assert report["failed_by_reason"].get("out_of_stock", 0) + report["refused_sold_out"] > 0  # it sold out
    assert report["enqueue_round_trips_per_request"] <= 1.0
    # The poor shoppers' orders all hold the hot product: refused at once as sold out once it is gone
    assert report["failed_by_reason"].get("insufficient_balance", 0) <= 200 // 50
    assert report["round_trips_per_payment"] == 1.0
    assert report["invariants"] == dict.fromkeys(report["invariants"], 0)
    assert report["baseline"]["invariants"] == dict.fromkeys(report["baseline"]["invariants"], 0)
    assert report["baseline"]["succeeded"] == report["succeeded"]
    assert report["db_only_pps"] > 0 and report["pgbench_tps"] > 0
    gateway = report["gateway"]  # a tenth paid through the Razorpay simulator, under the shared limiter
    assert gateway["payments"] == 20 and gateway["captures"] == 20
    assert gateway["double_captures"] == 0 and gateway["refused_by_gateway_limit"] == 0
    assert gateway["peak_rps_observed"] <= gateway["limit_rps"] + gateway["burst"]
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "Flash sale: 200 shoppers" in out.with_suffix(".md").read_text()
    # The terminal gets a short summary with every goal judged (the JSON goes to the file only),
    # and the benchmark's databases are gone
    assert "Goals:" in run.stdout and "invariants all 0" in run.stdout
    assert '"invariants"' not in run.stdout and "None" not in run.stdout
    # (only the run lock's file may stay: a run starting then would lock a file being deleted)
    left = ROOT / ".data" / "bench"
    assert not left.exists() or [p.name for p in left.iterdir()] == [LOCK_NAME]

"""`make synth` on a machine without Node.js: one line saying what is missing, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_synth_without_node_says_so_in_one_line(tmp_path: Path) -> None:
    # Given a PATH with Python but no node
    env = os.environ | {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(ROOT)}

    # When the offline synthesis is started
    done = subprocess.run(
        [sys.executable, "-m", "infra.synth", "--no-deps", "--out", str(tmp_path / "cdk.out")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then it stops with one line naming Node.js, and no traceback
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr, done.stderr
    assert "Node.js 20 or newer" in done.stderr

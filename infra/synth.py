"""Offline synthesis, no CDK CLI, Docker or AWS credentials needed: `python -m infra.synth`.

Reads the context from cdk.json (as the CLI would), synthesizes into `cdk.out/`, prints each
stack's resource count, and exits non-zero if any stack carries an error annotation (an
unsuppressed cdk-nag finding among them).

    python -m infra.synth                 # all three environments
    python -m infra.synth --env prod      # one
    python -m infra.synth --no-deps       # skip pip-installing the Lambda dependencies
    python -m infra.synth --lint          # then run cfn-lint on every template
    python -m infra.synth -c pq:jwt-issuer=https://...   # context, as `cdk -c` takes it

staging and prod refuse the placeholder JWT issuer; when no issuer is given, this offline check
synthesizes them with an example one (and says so). `cdk deploy` gets no such default.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra import config as cfg
from infra.build_assets import REPO_ROOT
from infra.node import node_problem

if TYPE_CHECKING:  # the CDK itself is imported on use: importing it starts Node.js, which may be missing
    from aws_cdk import cx_api

CFN_LINT_CONFIG = REPO_ROOT / "infra" / "cfnlintrc.yaml"
# Shaped like a Cognito user pool's issuer; no such pool exists, so it would accept no token.
OFFLINE_ISSUER = "https://cognito-idp.ap-south-1.amazonaws.com/ap-south-1_OfflineSynth"
# And an app client id of that example pool (staging and prod refuse the placeholder audience).
OFFLINE_AUDIENCE = "example-app-client"


def load_cdk_context(path: Path = REPO_ROOT / "cdk.json") -> dict[str, Any]:
    return dict(json.loads(path.read_text()).get("context", {}))


def synth(
    env_name: str,
    outdir: Path,
    *,
    install_dependencies: bool = True,
    extra_context: dict[str, Any] | None = None,
) -> cx_api.CloudAssembly:
    from aws_cdk import App

    from infra.app import build_app

    context = load_cdk_context() | (extra_context or {})
    context[cfg.ENV_CONTEXT_KEY] = env_name
    context[cfg.BUNDLE_CONTEXT_KEY] = install_dependencies
    app = App(outdir=str(outdir), context=context)
    build_app(app)
    return app.synth()


def errors(assembly: cx_api.CloudAssembly) -> list[str]:
    from aws_cdk import cx_api

    return [
        f"{stack.stack_name} {message.id}: {message.entry.data}"
        for stack in assembly.stacks
        for message in stack.messages
        if message.level == cx_api.SynthesisMessageLevel.ERROR
    ]


def cfn_lint_command(templates: list[Path]) -> list[str]:
    """cfn-lint from this interpreter's environment, with the project's settings."""
    executable = Path(sys.executable).parent / "cfn-lint"
    return [str(executable), "--config-file", str(CFN_LINT_CONFIG), "--", *map(str, templates)]


def template_paths(assembly: cx_api.CloudAssembly) -> list[Path]:
    return [Path(assembly.directory) / stack.template_file for stack in assembly.stacks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="all", choices=["all", *cfg.ENVIRONMENTS])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "cdk.out")
    parser.add_argument("--no-deps", action="store_true", help="do not pip-install Lambda dependencies")
    parser.add_argument("--lint", action="store_true", help="run cfn-lint on the synthesized templates")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE", help="context value")
    args = parser.parse_args(argv)
    if problem := node_problem():
        print(problem, file=sys.stderr)
        return 2
    extra = dict(item.split("=", 1) for item in args.context)
    if not (extra.get("pq:jwt-issuer") or load_cdk_context().get("pq:jwt-issuer")):
        extra["pq:jwt-issuer"] = OFFLINE_ISSUER
        print(f"no pq:jwt-issuer given: synthesizing with the example issuer {OFFLINE_ISSUER}")
    if not (extra.get("pq:jwt-audience") or load_cdk_context().get("pq:jwt-audience")):
        extra["pq:jwt-audience"] = OFFLINE_AUDIENCE
        print(f"no pq:jwt-audience given: synthesizing with the example audience {OFFLINE_AUDIENCE}")

    started = time.perf_counter()
    assembly = synth(args.env, args.out, install_dependencies=not args.no_deps, extra_context=extra)
    elapsed = time.perf_counter() - started
    for stack in assembly.stacks:
        resources = stack.template.get("Resources", {})
        kinds = Counter(r["Type"] for r in resources.values())
        print(
            f"{stack.stack_name}: {len(resources)} resources "
            f"({kinds['AWS::Lambda::Function']} functions, {kinds['AWS::CloudWatch::Alarm']} alarms)"
            f" -> {Path(assembly.directory) / stack.template_file}"
        )
    print(f"synthesized in {elapsed:.1f} s")
    problems = errors(assembly)
    for problem in problems:
        print(f"ERROR {problem}")
    if args.lint:
        lint = subprocess.run(cfn_lint_command(template_paths(assembly)), check=False)  # noqa: S603
        print(f"cfn-lint: {'clean' if lint.returncode == 0 else f'exit {lint.returncode}'}")
        problems += ["cfn-lint"] if lint.returncode else []
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The CDK app: `cdk synth|deploy -c pq:env=<dev|staging|prod>` (cdk.json runs this module).

The environment comes from the `pq:env` context value ("all" builds the three stacks, which is
what `make synth` checks); everything that differs between environments is in `infra.config`.
Run by hand (`python -m infra.app`), it behaves as `python -m infra.synth`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Aspects
from cdk_nag import AwsSolutionsChecks

from infra import config as cfg
from infra.stack import PaymentQueueStack


def build_app(app: App, env_name: str | None = None) -> list[PaymentQueueStack]:
    """Adds the selected environment's stack (or all three) to `app`, with cdk-nag attached."""
    context: Mapping[str, Any] = _context(app)
    name = env_name or context.get(cfg.ENV_CONTEXT_KEY) or "dev"
    names = list(cfg.ENVIRONMENTS) if name == "all" else [name]
    install = cfg.bundle_dependencies(context)
    stacks = [PaymentQueueStack(app, config=cfg.load(context, n), install_dependencies=install) for n in names]
    # AwsSolutions findings become synth errors unless suppressed with a reason (infra/nag.py).
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return stacks


def _context(app: App) -> dict[str, Any]:
    keys = (
        cfg.ENV_CONTEXT_KEY,
        cfg.AZS_CONTEXT_KEY,
        cfg.BUNDLE_CONTEXT_KEY,
        cfg.FIRST_CREATE_CONTEXT_KEY,
        *cfg.OVERRIDE_KEYS,
    )
    return {key: app.node.try_get_context(key) for key in keys}


def main() -> None:
    if "CDK_OUTDIR" not in os.environ:
        # Run by hand rather than by the CDK CLI: no context from cdk.json would reach App().
        from infra.synth import main as synth_main

        raise SystemExit(synth_main())
    app = App()
    build_app(app)
    app.synth()


if __name__ == "__main__":
    main()

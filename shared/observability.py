"""The one place Powertools' Logger, Metrics and Tracer are created.

Powertools reads its own settings (log level, tracing on/off) from the POWERTOOLS_* environment
variables, so the same objects serve Lambda and the local runtime.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer

from shared.settings import get_settings

SERVICE = "payment-queue"
NAMESPACE = "PaymentQueue"
# Every EMF metric carries the environment (PQ_ENV: dev, staging, prod; "local" on a laptop) beside the
# service: environments sharing an account and region would otherwise add up in one series, and dev's
# failures would fire prod's alarms. The alarms name both dimensions (infra/components/monitoring.py).
ENVIRONMENT_DIMENSION = "environment"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

Handler = TypeVar("Handler", bound=Callable[..., Any])


def log_metrics(handler: Handler) -> Handler:
    """Powertools' log_metrics with the environment dimension on every metric of the invocation.

    The dimension is set when the function is invoked, from the settings, not when the module is
    imported; Powertools keeps default dimensions across its flushes."""

    @functools.wraps(handler)
    def with_environment(event: Any, context: Any) -> Any:
        environment = get_settings().env
        # Once per container: Powertools warns on setting a dimension it already has.
        if metrics.default_dimensions.get(ENVIRONMENT_DIMENSION) != environment:
            metrics.set_default_dimensions(**{ENVIRONMENT_DIMENSION: environment})
        return handler(event, context)

    return metrics.log_metrics(with_environment)  # type: ignore[return-value]

"""The one place Powertools' Logger, Metrics and Tracer are created.

Powertools reads its own settings (service name, namespace, log level, tracing on/off) from
the POWERTOOLS_* environment variables, so the same objects serve Lambda and the local runtime.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "payment-queue"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="PaymentQueue", service=SERVICE)
tracer = Tracer(service=SERVICE)

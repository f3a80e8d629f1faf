"""The payment gateways, one package each (shared/gateways/<name>/), every one behind the port in
shared/gateways/port.py and built once by the registry (shared/gateways/registry.py, from bootstrap).

This module holds only their names: the request models' Literal types and the webhook routes come from
here, and the schema's method CHECKs (gateway_attempts, gateway_checkouts, gateway_webhook_events, in
locked migrations) are held equal to it and to the registry by tests/integration/test_gateway_registry.py.
A new gateway: its package, listed in the registry, its name here, and one migration widening the three
CHECKs. This module imports nothing: shared/routes.py and shared/domain.py read it.
"""

from __future__ import annotations

from typing import Literal

GatewayName = Literal["razorpay", "cashfree"]
PaymentMethod = Literal["wallet", "razorpay", "cashfree"]
GATEWAY_NAMES: tuple[GatewayName, ...] = ("razorpay", "cashfree")

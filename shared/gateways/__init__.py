"""The payment gateways, one package each (shared/gateways/<name>/), every one behind the port in
shared/gateways/port.py and built once by the registry (shared/gateways/registry.py, from bootstrap).

This module holds only their names, the one place the method CHECKs of the schema and the request
models' Literal types come from (tests/unit/test_gateway_registry.py holds the three equal). It imports
nothing: shared/routes.py and shared/domain.py read it.
"""

from __future__ import annotations

from typing import Literal

GatewayName = Literal["razorpay", "cashfree"]
PaymentMethod = Literal["wallet", "razorpay", "cashfree"]
GATEWAY_NAMES: tuple[GatewayName, ...] = ("razorpay", "cashfree")

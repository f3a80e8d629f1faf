"""Every gateway package, by name: what bootstrap builds App.gateways from, and where a gateway's
published limits are found (shared/gateway_limits.py). Adding a gateway: its package, listed here."""

from __future__ import annotations

from shared.gateways import cashfree, razorpay
from shared.gateways.port import GatewayPackage, PaymentGateway
from shared.settings import Settings

GATEWAYS: dict[str, GatewayPackage] = {p.name: p for p in (razorpay.PACKAGE, cashfree.PACKAGE)}


def build_gateways(settings: Settings) -> dict[str, PaymentGateway]:
    """The gateways the settings configure (credentials, or a secret's ARN); credentials are read on
    first use, not here."""
    return {name: package.build(settings) for name, package in GATEWAYS.items() if package.configured(settings)}

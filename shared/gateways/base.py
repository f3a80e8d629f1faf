"""What the gateway packages share beyond the port: reading an id the gateway may not know, and the
refund calls their HTTP clients make alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from shared.domain import GatewayRejected
from shared.ports import GatewayRefund

T = TypeVar("T")


def unless_unknown(call: Callable[[], T]) -> T | None:
    """The answer of a read, or None when the gateway knows no such payment or order (400/404: Razorpay
    answers 400 BAD_REQUEST_ERROR for unknown ids); other refusals and retryable errors propagate."""
    try:
        return call()
    except GatewayRejected as exc:
        if exc.status in (400, 404):
            return None
        raise


class RefundApi(Protocol):
    """The refund calls every gateway's HTTP client makes alike."""

    def refund(self, ref: str, amount_paise: int, currency: str, refund_ref: str) -> GatewayRefund: ...

    def find_refund(self, ref: str, refund_ref: str) -> GatewayRefund | None: ...

    def refunds(self, ref: str) -> list[GatewayRefund]: ...


class RefundsThroughApi:
    """The port's refund, find_refund and refunds, for a gateway whose client makes them as the port asks."""

    api: RefundApi

    def refund(self, ref: str, amount_paise: int, currency: str, refund_ref: str) -> GatewayRefund:
        return self.api.refund(ref, amount_paise, currency, refund_ref)

    def find_refund(self, ref: str, refund_ref: str) -> GatewayRefund | None:
        return self.api.find_refund(ref, refund_ref)

    def refunds(self, ref: str) -> list[GatewayRefund]:
        return self.api.refunds(ref)

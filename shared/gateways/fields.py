"""Reading what a gateway's webhook body states: ids, statuses and amounts we can store, else None."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.gateways.port import WebhookEvent
from shared.ports import RefundState

_MAX_ID = 200  # gateway_webhook_events.event_id's limit too
_MAX_PAISE = 2**63 - 1  # bigint


def member(value: Any) -> dict[str, Any]:
    """An object of the body, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


def _storable(text: str) -> bool:
    """PostgreSQL text can hold it: no NUL and no lone surrogate (JSON's \\u0000 and \\ud800 escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def text(value: Any) -> str | None:
    """An id or status as text we can store and index, else None (then it names nothing of ours)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    as_text = str(value)
    # Gateways' ids are tens of characters; a btree entry is refused past about 2.7 KB.
    return as_text if 0 < len(as_text) <= _MAX_ID and _storable(as_text) else None


def paise(value: Any, *, rupees: bool) -> int | None:
    """An amount the gateway states (integer paise, or rupees as a JSON number) as positive integer paise,
    else None (then no refund is recorded from it)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value)) * (100 if rupees else 1)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0 or amount != amount.to_integral_value() or amount > _MAX_PAISE:
        return None
    return int(amount)


@dataclass(frozen=True)
class RefundFields:
    """Where a gateway's refund entity states each thing we record of it."""

    ref: str  # the job's reference the refund is of
    refund_id: str  # the gateway's id
    status: str
    merchant_ref: str  # the maker's reference: ours, or the dashboard's
    amount: str
    currency: str
    rupees: bool  # the amount is in rupees (else paise)


def refund_event(
    kind: str, refund: dict[str, Any], where: RefundFields, states: Mapping[str, RefundState]
) -> WebhookEvent:
    """A refund webhook: the refund entity read through where its gateway states each thing."""
    status = text(refund.get(where.status))
    return WebhookEvent(
        kind,
        gateway_ref=text(refund.get(where.ref)),
        refund_id=text(refund.get(where.refund_id)),
        refund_state=states.get(status or "", RefundState.PENDING).value,
        refund_status=status,
        refund_ref=text(refund.get(where.merchant_ref)),
        refund_amount_paise=paise(refund.get(where.amount), rupees=where.rupees),
        refund_currency=text(refund.get(where.currency)),
    )

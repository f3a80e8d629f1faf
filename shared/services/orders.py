"""Reading orders (functions/status): the shopper's own order for their payment page, and a shopper's
orders for the shop's backend. One statement each."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from shared.domain import MAX_ORDER_ID
from shared.errors import order_not_found
from shared.ports import HasDb

# An order with its items (each with the product's name, in the order the order lists them) and its
# latest job. An item that names no product keeps its JSON as written (the payment fails it invalid_order).
_ORDERS = """
SELECT o.id, o.user_id, o.order_status, o.total_paise, o.currency, o.payment_method, o.created_at, o.paid_at,
       coalesce((SELECT jsonb_agg(CASE WHEN jsonb_typeof(e.item) = 'object'
                                       THEN e.item || jsonb_build_object('name', p.name) ELSE e.item END
                                  ORDER BY e.ord)
                   FROM jsonb_array_elements(o.items) WITH ORDINALITY AS e(item, ord)
                   LEFT JOIN products p
                          ON p.id = CASE WHEN e.item->>'product_id' ~ '^[0-9]{1,18}$'
                                         THEN (e.item->>'product_id')::bigint END), '[]'::jsonb) AS items,
       j.id AS job_id, j.status AS job_status
  FROM orders o
  LEFT JOIN LATERAL (SELECT j.id, j.status FROM payment_jobs j
                      WHERE j.user_id = o.user_id AND j.order_id = o.id
                      ORDER BY j.queue_seq DESC LIMIT 1) j ON true
"""
SHOPPER_ORDER_QUERY = _ORDERS + " WHERE o.id = %s AND o.user_id = %s"
SHOPPER_ORDERS_QUERY = _ORDERS + " WHERE o.user_id = %s ORDER BY o.id DESC LIMIT %s"


class OrderDeps(HasDb, Protocol):
    """What a shopper's order uses: the books, and the ways it can be paid."""

    def methods(self) -> tuple[str, ...]:
        """The payment methods this deployment accepts: wallet, and each enabled gateway."""
        ...


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def order_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "order_id": row["id"],
        "user_id": row["user_id"],
        "status": row["order_status"],
        "total_paise": row["total_paise"],
        "currency": row["currency"].strip(),
        "items": row["items"],
        "payment_method": row["payment_method"],
        "created_at": iso(row["created_at"]),
        "paid_at": iso(row["paid_at"]),
        # The latest payment job of the order, so a page can follow it instead of paying again.
        "job": None if row["job_id"] is None else {"job_id": str(row["job_id"]), "status": row["job_status"]},
    }


def get_order(deps: OrderDeps, user_id: str, order_id: str) -> dict[str, Any]:
    """GET /v1/orders/{order_id}: the caller's order, what it costs and the ways it can be paid."""
    if not (order_id.isascii() and order_id.isdigit()) or not 0 < int(order_id) <= MAX_ORDER_ID:
        raise order_not_found()
    row = deps.db.fetch_one(SHOPPER_ORDER_QUERY, (int(order_id), user_id))
    if row is None:  # someone else's order looks exactly like a missing one
        raise order_not_found()
    return order_view(row) | {"payment_methods": list(deps.methods())}


def list_orders(deps: HasDb, user_id: str, limit: int) -> dict[str, Any]:
    """A shopper's orders, newest first (the shop's backend: GET /v1/merchant/orders)."""
    rows = deps.db.fetch_all(SHOPPER_ORDERS_QUERY, (user_id, limit))
    return {"user_id": user_id, "orders": [order_view(r) for r in rows]}

"""The seed's design as written, for comparison: a synchronous POST that runs the payment as the
seed's separate statements in one transaction, on a connection held for the whole request, then
calls the notification endpoint before it answers. No queue. Pool: the seed's 1,000 connections
(split over the server processes), 500 kept idle.

Run as `python -m bench.baseline` (several processes share the port with SO_REUSEPORT).
"""

from __future__ import annotations

import json
import os
from typing import Any

import aiohttp
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from local.auth import LocalIssuer, TokenError


class BusinessFailure(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _pay(conn: Any, user_id: str, order_id: int) -> dict[str, Any]:
    """Steps 1-9 of the seed, one statement each (2 per item), in one transaction."""
    async with conn.transaction():
        # 1. Fetch order
        cur = await conn.execute(
            "SELECT id, items, total_paise, currency, order_status FROM orders WHERE id = %s AND user_id = %s "
            "FOR UPDATE",
            (order_id, user_id),
        )
        order = await cur.fetchone()
        if order is None:
            raise BusinessFailure("order_not_found")
        _, items, total, currency, status = order
        if status != "pending":
            raise BusinessFailure("order_not_payable")
        # 2. Fetch wallet
        cur = await conn.execute("SELECT id, balance_paise FROM wallets WHERE user_id = %s FOR UPDATE", (user_id,))
        wallet = await cur.fetchone()
        if wallet is None or wallet[1] < total:
            raise BusinessFailure("insufficient_balance")
        wallet_id, balance = wallet
        # 3. Create wallet transaction
        await conn.execute(
            "INSERT INTO wallet_transactions (wallet_id, order_id, kind, amount_paise, balance_after_paise, note) "
            "VALUES (%s, %s, 'debit', %s, %s, 'order payment')",
            (wallet_id, order_id, total, balance - total),
        )
        # 4. Create payment transaction
        await conn.execute(
            "INSERT INTO payment_transactions (order_id, user_id, method, amount_paise, currency) "
            "VALUES (%s, %s, 'wallet', %s, %s)",
            (order_id, user_id, total, currency),
        )
        # 5. Update wallet balance
        await conn.execute("UPDATE wallets SET balance_paise = balance_paise - %s WHERE id = %s", (total, wallet_id))
        # 6. Parse order items (JSON), in product order so that two orders cannot deadlock
        lines = sorted(items if isinstance(items, list) else json.loads(items), key=lambda i: i["product_id"])
        # 7. Per item: create order item, update stock
        for line in lines:
            await conn.execute(
                "INSERT INTO order_items (order_id, product_id, quantity, unit_price_paise) VALUES (%s, %s, %s, %s)",
                (order_id, line["product_id"], line["quantity"], line["unit_price_paise"]),
            )
            cur = await conn.execute(
                "UPDATE products SET stock = stock - %s WHERE id = %s AND stock >= %s",
                (line["quantity"], line["product_id"], line["quantity"]),
            )
            if cur.rowcount != 1:
                raise BusinessFailure("out_of_stock")
        # 8. Save updated order
        await conn.execute(
            "UPDATE orders SET order_status = 'paid', paid_at = now(), payment_method = 'wallet' WHERE id = %s",
            (order_id,),
        )
        # 9. Delete cart items
        await conn.execute(
            "DELETE FROM cart_items WHERE user_id = %s AND product_id = ANY(%s)",
            (user_id, [line["product_id"] for line in lines]),
        )
    return {"status": "succeeded", "order_id": order_id}


class Baseline:
    def __init__(self, dsn: str, pool_size: int, idle: int, issuer: LocalIssuer, notify_url: str) -> None:
        self.pool = AsyncConnectionPool(
            dsn,
            min_size=idle,
            max_size=pool_size,
            open=False,
            timeout=600,
            kwargs={"application_name": "pq-baseline", "autocommit": True},
        )
        self.issuer = issuer
        self.notify_url = notify_url
        self.http: aiohttp.ClientSession | None = None

    async def start(self, _: web.Application) -> None:
        await self.pool.open(wait=True, timeout=120)
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def stop(self, _: web.Application) -> None:
        await self.pool.close()
        if self.http is not None:
            await self.http.close()

    async def pay(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        try:
            user_id = str(self.issuer.verify(token)["sub"])
        except TokenError:
            return web.json_response({"status": "error", "reason": "unauthorized"}, status=401)
        order_id = int((await request.json())["order_id"])
        try:
            async with self.pool.connection() as conn:
                result = await _pay(conn, user_id, order_id)
        except BusinessFailure as failure:
            return web.json_response({"status": "failed", "reason": failure.reason})
        # 10. Send notification (external call, synchronous, before answering)
        assert self.http is not None
        async with self.http.post(
            self.notify_url, json={"type": "PaymentSucceeded", "user_id": user_id, "order_id": order_id}
        ) as resp:
            resp.raise_for_status()
        return web.json_response(result)


def main() -> None:
    from local.config import LocalSettings

    local = LocalSettings()
    issuer = LocalIssuer(local.data_dir / "jwt" / "signing-key.pem", local.jwt_issuer, local.jwt_audience)
    baseline = Baseline(
        os.environ["DATABASE_URL"],
        int(os.environ["BASELINE_POOL"]),
        int(os.environ["BASELINE_IDLE"]),
        issuer,
        os.environ["BASELINE_NOTIFY_URL"],
    )
    app = web.Application()
    app.router.add_post("/api/payment", baseline.pay)
    app.on_startup.append(baseline.start)
    app.on_cleanup.append(baseline.stop)
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(os.environ["BASELINE_PORT"]),
        print=None,
        access_log=None,
        backlog=4096,
        reuse_port=True,
    )


if __name__ == "__main__":
    main()

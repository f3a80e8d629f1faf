"""Demo and benchmark data: users with funded wallets, products with stock, carts, pending orders."""

from __future__ import annotations

from dataclasses import dataclass

from shared.db import Database


@dataclass(frozen=True)
class SeedPlan:
    users: int = 3
    products: int = 5
    user_prefix: str = "demo-user-"
    balance_paise: int = 500_000  # Rs 5,000
    stock: int = 1_000
    # Product 1 of the plan is the hot one: every `hot_every`-th user also buys it, and it has
    # `hot_stock` units, so some of those payments must fail cleanly as out of stock.
    hot_every: int = 0
    hot_stock: int = 0
    # Every `poor_every`-th user has Rs 1 and fails with insufficient_balance (0: nobody).
    poor_every: int = 0
    # The hot product's stock split over this many shard rows (shared/sql/stock_shards.sql; 0: its
    # own row, today's design). Applies to product 1 of the plan when hot_every is set, else to all.
    hot_shards: int = 0


def seed(db: Database, plan: SeedPlan) -> dict[str, int]:
    """Create the plan's rows in one transaction; a no-op if its first user already exists."""
    with db.transaction() as cur:
        cur.execute("SELECT 1 FROM users WHERE id = %s", (f"{plan.user_prefix}1",))
        if cur.fetchone() is not None:
            return {"users": 0, "orders": 0}
        cur.execute(
            """INSERT INTO users (id, email)
               SELECT %(p)s || g, %(p)s || g || '@example.com' FROM generate_series(1, %(n)s) g""",
            {"p": plan.user_prefix, "n": plan.users},
        )
        cur.execute(
            """WITH w AS (
                   INSERT INTO wallets (user_id, balance_paise)
                   SELECT %(p)s || g,
                          CASE WHEN %(poor)s > 0 AND g %% %(poor)s = 0 THEN 100 ELSE %(bal)s END
                     FROM generate_series(1, %(n)s) g
                   RETURNING id, balance_paise)
               INSERT INTO wallet_transactions (wallet_id, kind, amount_paise, balance_after_paise, note)
               SELECT id, 'credit', balance_paise, balance_paise, 'opening top-up' FROM w""",
            {"p": plan.user_prefix, "n": plan.users, "poor": plan.poor_every, "bal": plan.balance_paise},
        )
        cur.execute(
            """INSERT INTO products (name, price_paise, stock)
               SELECT 'Product ' || g, 10000 + (g %% 20) * 2500,
                      CASE WHEN g = 1 AND %(hot_every)s > 0 THEN %(hot)s ELSE %(stock)s END
                 FROM generate_series(1, %(k)s) g
               RETURNING id""",
            {"k": plan.products, "stock": plan.stock, "hot": plan.hot_stock, "hot_every": plan.hot_every},
        )
        product_ids = [r["id"] for r in cur.fetchall()]
        if plan.hot_shards > 1:
            for pid in product_ids[:1] if plan.hot_every > 0 else product_ids:
                cur.execute("SELECT pq_shard_stock(%s, %s)", (pid, plan.hot_shards))
        cur.execute(
            """WITH p AS (SELECT id, price_paise, ord - 1 AS idx
                            FROM products, unnest(%(ids)s::bigint[]) WITH ORDINALITY AS u(pid, ord)
                           WHERE id = pid),
                    lines AS (
                   SELECT g, p.id AS product_id, p.price_paise
                     FROM generate_series(1, %(n)s) g JOIN p ON p.idx = g %% %(k)s
                   UNION ALL
                   SELECT g, p.id, p.price_paise
                     FROM generate_series(1, %(n)s) g JOIN p ON p.idx = 0
                    WHERE %(hot_every)s > 0 AND g %% %(hot_every)s = 0 AND g %% %(k)s <> 0),
                    o AS (
                   INSERT INTO orders (user_id, items, total_paise)
                   SELECT %(p)s || g,
                          jsonb_agg(jsonb_build_object('product_id', product_id, 'quantity', 1,
                                                       'unit_price_paise', price_paise) ORDER BY product_id),
                          sum(price_paise)
                     FROM lines GROUP BY g
                   RETURNING id)
               INSERT INTO cart_items (user_id, product_id, quantity)
               SELECT %(p)s || g, product_id, 1 FROM lines""",
            {
                "ids": product_ids,
                "n": plan.users,
                "k": plan.products,
                "p": plan.user_prefix,
                "hot_every": plan.hot_every,
            },
        )
    return {"users": plan.users, "orders": plan.users}


def ensure_pending_order(db: Database, user_id: str) -> int:
    """The user's oldest pending order, or a new one (one unit of the first product) if none is left."""
    row = db.fetch_one(
        "SELECT id FROM orders WHERE user_id = %s AND order_status = 'pending' ORDER BY id LIMIT 1", (user_id,)
    )
    return int(row["id"]) if row is not None else _new_order(db, user_id)


def demo_orders(db: Database, user_id: str, count: int) -> list[int]:
    """`count` pending orders of the user that no payment job has touched yet, oldest first, new ones made
    where the user has fewer: each example `make run` prints pays an order of its own, whichever ran
    before it or before a restart."""
    rows = db.fetch_all(
        """SELECT o.id FROM orders o
            WHERE o.user_id = %s AND o.order_status = 'pending'
              AND NOT EXISTS (SELECT 1 FROM payment_jobs j WHERE j.user_id = o.user_id AND j.order_id = o.id)
            ORDER BY o.id LIMIT %s""",
        (user_id, count),
    )
    ids = [int(r["id"]) for r in rows]
    while len(ids) < count:
        ids.append(_new_order(db, user_id))
    return ids


def _new_order(db: Database, user_id: str) -> int:
    """A new pending order of one unit of the first product in stock."""
    row = db.fetch_one(
        """WITH p AS (SELECT id, price_paise FROM products WHERE stock > 0 ORDER BY id LIMIT 1),
                o AS (INSERT INTO orders (user_id, items, total_paise)
                      SELECT %s, jsonb_build_array(jsonb_build_object(
                                 'product_id', id, 'quantity', 1, 'unit_price_paise', price_paise)), price_paise
                        FROM p RETURNING id)
           SELECT id FROM o""",
        (user_id,),
    )
    if row is None:
        raise RuntimeError("no product in stock to build a demo order from")
    return int(row["id"])

"""The hot product's stock in shards (shared/sql/stock_shards.sql): payments of it commit in
parallel, and every invariant holds as with its stock in one row."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from local.invariants import check, snapshot_stock
from local.seed import SeedPlan, seed
from shared.bootstrap import App
from shared.db import Database
from shared.domain import TransientError
from shared.services.wallet import process_wallet_job
from tests.integration.helpers import pay


def _shards(db: Database, product_id: int) -> list[int]:
    rows = db.fetch_all("SELECT stock FROM product_stock_shards WHERE product_id = %s ORDER BY shard", (product_id,))
    return [int(r["stock"]) for r in rows]


def _enqueue_all(app: App) -> list[str]:
    orders = app.db.fetch_all("SELECT id, user_id FROM orders ORDER BY id")
    return [str(pay(app, o["user_id"], f"key-{o['id']}", o["id"]).body["job_id"]) for o in orders]


def test_sharding_moves_every_unit_into_even_shards_and_back(db: Database) -> None:
    # Given a product with 10 units in its own row
    seed(db, SeedPlan(users=1, products=1, stock=10, user_prefix="s"))
    product = int(db.fetch_one("SELECT id FROM products")["id"])  # type: ignore[index]

    # When its stock is split over 4 shards, then merged back
    split = db.fetch_one("SELECT pq_shard_stock(%s, 4) AS n", (product,))
    shards, row = _shards(db, product), db.fetch_one("SELECT stock FROM products WHERE id = %s", (product,))
    on_hand = db.fetch_one("SELECT pq_stock_on_hand(id, stock) AS n FROM products WHERE id = %s", (product,))
    db.fetch_one("SELECT pq_shard_stock(%s, 0)", (product,))

    # Then no unit was created or lost either way
    assert split == {"n": 10} and shards == [3, 3, 2, 2] and row == {"stock": 0} and on_hand == {"n": 10}
    assert _shards(db, product) == [] and snapshot_stock(db) == {product: 10}


def test_sharded_hot_product_with_fewer_units_than_buyers_never_oversells(app: App) -> None:
    # Given 60 buyers of one product with 20 units split over 4 shards
    seed(app.db, SeedPlan(users=60, products=1, stock=20, user_prefix="h", hot_shards=4))
    stock_before = snapshot_stock(app.db)
    jobs = _enqueue_all(app)

    # When 8 workers pay them all at once
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda job: process_wallet_job(app, job), jobs))

    # Then exactly the 20 units were sold, the other 40 buyers refused cleanly, every invariant 0
    reasons = sorted(str(o.reason) for o in outcomes if o.reason)
    assert sum(o.reason is None for o in outcomes) == 20 and reasons == ["out_of_stock"] * 40
    product = next(iter(stock_before))
    assert _shards(app.db, product) == [0, 0, 0, 0]
    app.db.execute("SELECT pq_mark_events_published(array_agg(id)) FROM outbox_events")
    invariants = check(app.db, initial_stock=stock_before)
    assert invariants.pop("lost_jobs") == 0  # every job ended (none was sent to the PGMQ queue here)
    assert invariants == dict.fromkeys(invariants, 0)


def _order(db: Database, user_id: str, product: int, quantity: int) -> int:
    """A pending order of `quantity` units of one product; the user's other orders cancelled."""
    price = int(db.fetch_one("SELECT price_paise FROM products WHERE id = %s", (product,))["price_paise"])  # type: ignore[index]
    row = db.fetch_one(
        """INSERT INTO orders (user_id, items, total_paise)
           VALUES (%s, jsonb_build_array(jsonb_build_object('product_id', %s::bigint, 'quantity', %s::int,
                                                             'unit_price_paise', %s::bigint)), %s)
           RETURNING id""",
        (user_id, product, quantity, price, price * quantity),
    )
    assert row is not None
    db.execute("UPDATE orders SET order_status = 'cancelled' WHERE user_id = %s AND id <> %s", (user_id, row["id"]))
    return int(row["id"])


@pytest.mark.parametrize("quantity", [1, 2])
def test_a_buyer_is_served_from_another_shard_when_theirs_is_sold_out(app: App, quantity: int) -> None:
    # Given a product with 8 units over 4 shards, two of them already sold out
    seed(app.db, SeedPlan(users=1, products=1, stock=8, user_prefix="q"))
    product = int(app.db.fetch_one("SELECT id FROM products")["id"])  # type: ignore[index]
    app.db.fetch_one("SELECT pq_shard_stock(%s, 4)", (product,))
    app.db.execute("UPDATE product_stock_shards SET stock = 0 WHERE shard IN (0, 2)")
    stock_before = snapshot_stock(app.db)
    job = str(pay(app, "q1", "key-q", _order(app.db, "q1", product, quantity)).body["job_id"])

    # When it is paid
    outcome = process_wallet_job(app, job)

    # Then the units come from a shard that has them, whichever shard the buyer's id picks first
    assert outcome.reason is None and sum(_shards(app.db, product)) == 4 - quantity
    invariants = check(app.db, initial_stock=stock_before)
    assert invariants["oversold_units"] == 0 and invariants["double_charges"] == 0


def test_an_order_for_more_units_than_are_left_is_refused_and_takes_nothing(app: App) -> None:
    # Given 2 units left over 4 shards and an order for 3
    seed(app.db, SeedPlan(users=1, products=1, stock=4, user_prefix="r"))
    product = int(app.db.fetch_one("SELECT id FROM products")["id"])  # type: ignore[index]
    app.db.fetch_one("SELECT pq_shard_stock(%s, 4)", (product,))
    app.db.execute("UPDATE product_stock_shards SET stock = 0 WHERE shard IN (0, 2)")
    job = str(pay(app, "r1", "key-r", _order(app.db, "r1", product, 3)).body["job_id"])

    # When it is paid
    outcome = process_wallet_job(app, job)

    # Then it fails as out of stock and every shard keeps its units
    assert outcome.reason == "out_of_stock" and _shards(app.db, product) == [0, 1, 0, 1]


def test_an_order_larger_than_any_shard_takes_its_units_from_several(app: App) -> None:
    # Given a product with 6 units over 3 shards (2 each) and an order for 5 of them
    seed(app.db, SeedPlan(users=1, products=1, stock=6, user_prefix="m", balance_paise=10_000_000))
    product = int(app.db.fetch_one("SELECT id FROM products")["id"])  # type: ignore[index]
    app.db.fetch_one("SELECT pq_shard_stock(%s, 3)", (product,))
    stock_before = snapshot_stock(app.db)
    job = str(pay(app, "m1", "key-m", _order(app.db, "m1", product, 5)).body["job_id"])

    # When it is paid
    outcome = process_wallet_job(app, job)

    # Then it succeeds with its 5 units taken from the shards in order, 1 left
    assert outcome.reason is None and _shards(app.db, product) == [0, 0, 1]
    invariants = check(app.db, initial_stock=stock_before)
    assert invariants["oversold_units"] == 0 and invariants["ledger_mismatch_paise"] == 0


def test_twenty_four_workers_racing_for_eight_shards_at_a_slow_commit_never_deadlock(app: App) -> None:
    # Given a 3 ms commit (commit_delay), so that payments pile up on the shards and take the waiting
    # paths, not only SKIP LOCKED's first pick; and, three times over, 600 buyers for 450 units of
    # a product over 8 shards (a deadlock needs an unlucky interleaving: three races find it sooner)
    app.db.execute(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET commit_delay = 3000', current_database()); END $$"
    )
    app.db.execute(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET commit_siblings = 0', current_database()); END $$"
    )
    for race in range(3):
        seed(app.db, SeedPlan(users=600, products=1, stock=450, user_prefix=f"d{race}-", hot_shards=8))
    stock_before = snapshot_stock(app.db)
    orders = app.db.fetch_all("SELECT id, user_id FROM orders ORDER BY id")
    jobs = [str(pay(app, o["user_id"], f"key-{o['id']}", o["id"]).body["job_id"]) for o in orders]

    # When 24 workers (new connections: they get the slow commit) pay each product's buyers at once
    outcomes = []
    for race in range(3):
        with ThreadPoolExecutor(max_workers=24) as pool:
            outcomes += list(pool.map(lambda job: process_wallet_job(app, job), jobs[race * 600 : (race + 1) * 600]))

    # Then every payment ended (a deadlock would have raised), 3 x 450 sold and 3 x 150 refused
    assert sum(o.reason is None for o in outcomes) == 3 * 450
    assert sorted({str(o.reason) for o in outcomes if o.reason}) == ["out_of_stock"]
    assert sum(snapshot_stock(app.db).values()) == 0
    app.db.execute("SELECT pq_mark_events_published(array_agg(id)) FROM outbox_events")
    invariants = check(app.db, initial_stock=stock_before)
    assert invariants.pop("lost_jobs") == 0
    assert invariants == dict.fromkeys(invariants, 0)


def test_units_the_lock_placed_in_a_shard_that_is_gone_are_never_sold_untaken(db: Database) -> None:
    # Given a product whose shards were merged back into its row while a payment held its choice of
    # shard (the operator's pq_shard_stock(product, 0) during a sale)
    seed(db, SeedPlan(users=1, products=1, stock=10, user_prefix="m"))
    product = int(db.fetch_one("SELECT id FROM products")["id"])  # type: ignore[index]
    items = f'[{{"product_id": {product}, "quantity": 2, "unit_price_paise": 100}}]'

    # When the payment takes its units from the shard it was given
    with pytest.raises(TransientError) as refused, db.transaction() as cur:
        cur.execute("SELECT set_config('pq.stock_sharded', 'on', true)")
        cur.execute("SELECT set_config(%s, '3', true)", (f"pq.stock_shard_{product}",))
        cur.execute("SELECT pq_take_stock(%s::jsonb)", (items,))

    # Then the payment is rolled back to be retried, and no unit left the product uncounted
    assert "moved during its payment" in str(refused.value)
    assert snapshot_stock(db) == {product: 10}

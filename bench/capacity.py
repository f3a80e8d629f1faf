"""`make capacity`: the per-operation database costs the capacity model uses, measured here.

Runs against an embedded PostgreSQL of its own (bench/flash_sale.py's Server, data in
.data/bench), writes bench/results/capacity.json and regenerates the marked block of
docs/capacity.md (the tables; bench/capacity_model.py turns the measurements into the model).

What is measured, each at a few connection counts (one thread and connection per client):
- enqueue: what functions/enqueue sends on AWS, pq_enqueue_job alone (the SQS send after it is not a
  database call and confirms nothing back: shared/sql/intake.sql, pq_unsent_jobs);
- enqueue_sent_mark: the previous release's AWS enqueue, pq_enqueue_job then pq_mark_jobs_sent (the
  model's "before" row: what one-round-trip enqueue saved);
- payment: pq_process_payment of a wallet order whose products no other client is buying;
- status_poll: the GET /v1/payments/{job_id} statement (shared/services/reads.JOB_QUERY);
- sold_out: pq_process_payment of an order whose product is sold out (read without its row lock);
- hot_row: payments that all buy the same product, at injected commit latencies;
- sold_out_line: a line whose every fourth job holds the hot product, which then sells out, ended as
  the processor ends it (shared/services/line.end_sold_out_jobs: pq_end_sold_out_jobs, SOLD_OUT_BATCH a
  statement): each statement's time, CPU and rows read, the CPU split into a cost per queued job in
  line and per job ended.
For each: transactions/s, latency, and WAL bytes, records and flushes per operation (pg_stat_wal).

The commit latency of a Multi-AZ instance is injected with `commit_delay` (and
`commit_siblings = 0`, so every flush waits). PostgreSQL sleeps there after the commit record is
written and before the WAL flush that makes the commit durable, with the transaction's row locks
still held, which is where Multi-AZ's synchronous storage replication adds its time: each commit's
flush returns only after the standby acknowledged it. A pg_sleep() inside the transaction would
hold the locks as long but also a snapshot and a connection doing nothing, and sleeps before the
commit record rather than in the flush. commit_delay needs fsync on; the JSON says which was used.

Knobs (environment): CAP_SECONDS (2.0, per level), CAP_CONNECTIONS (1,4,16), CAP_DELAYS_MS
(0,2,5,10), CAP_USERS (30000: orders for enqueue, payment and sold-out; jobs in the sold-out line),
CAP_HOT_USERS (8000),
CAP_LIFT_JOBS (2000, per design in the side-by-side run), CAP_LIFT_DELAY_MS (5), CAP_SHARDS (8),
OUT (bench/results/capacity.json), DOC (docs/capacity.md; "-" leaves the document alone),
CAP_RENDER_ONLY=1 (no measuring: the model and the document again from OUT).
The machine is shared: re-run when it is quiet, and compare runs from one session only.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import psycopg2.extensions

from bench.capacity_model import HOT_SHARE, model, rewrite_doc
from bench.flash_sale import Server
from local.config import ROOT
from local.invariants import check, snapshot_stock
from local.lock import one_run_at_a_time
from local.pg import stop_embedded
from local.seed import SeedPlan, seed
from shared.db import Database
from shared.services.line import SOLD_OUT_BATCH
from shared.services.reads import JOB_QUERY

Cursor = psycopg2.extensions.cursor
Step = Callable[[Cursor, Any], None]


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _default_data_dir() -> Path:
    """Memory-backed when the machine has /dev/shm: this shared machine's disk takes ~7 ms per fsync
    (one connection commits ~140 times a second), which would swamp every other cost and is nothing
    like RDS's storage; the commit latency the model needs is injected instead (commit_delay)."""
    shm = Path("/dev/shm")  # noqa: S108 (our own directory, named after the checkout)
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / f"pq-capacity-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]}"
    return ROOT / ".data" / "capacity"


@dataclass(frozen=True)
class Knobs:
    seconds: float = 2.0
    connections: tuple[int, ...] = (1, 4, 16)
    delays_ms: tuple[int, ...] = (0, 2, 5, 10)
    users: int = 30_000
    hot_users: int = 8_000
    lift_jobs: int = 2_000
    lift_delay_ms: int = 5
    shards: int = 8
    out: Path = ROOT / "bench" / "results" / "capacity.json"
    doc: Path | None = ROOT / "docs" / "capacity.md"
    data_dir: Path = ROOT / ".data" / "capacity"

    @classmethod
    def from_env(cls) -> Knobs:
        env = os.environ
        doc = env.get("DOC") or str(ROOT / "docs" / "capacity.md")
        return cls(
            seconds=float(env.get("CAP_SECONDS") or 2.0),
            connections=_ints(env.get("CAP_CONNECTIONS") or "1,4,16"),
            delays_ms=_ints(env.get("CAP_DELAYS_MS") or "0,2,5,10"),
            users=int(env.get("CAP_USERS") or 30_000),
            hot_users=int(env.get("CAP_HOT_USERS") or 8_000),
            lift_jobs=int(env.get("CAP_LIFT_JOBS") or 2_000),
            lift_delay_ms=int(env.get("CAP_LIFT_DELAY_MS") or 5),
            shards=int(env.get("CAP_SHARDS") or 8),
            out=Path(env.get("OUT") or ROOT / "bench" / "results" / "capacity.json"),
            doc=None if doc == "-" else Path(doc),
            data_dir=Path(env.get("CAP_DATA_DIR") or _default_data_dir()),
        )


class Feed:
    """Work items shared by the client threads: each item is taken once (or cycled forever)."""

    def __init__(self, items: Sequence[Any], *, cycle: bool = False) -> None:
        self.items, self.cycle = list(items), cycle
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> Any | None:
        with self._lock:
            if self._next >= len(self.items):
                if not self.cycle or not self.items:
                    return None
                self._next = 0
            item = self.items[self._next]
            self._next += 1
            return item

    @property
    def left(self) -> int:
        return len(self.items) - self._next


@dataclass
class Level:
    connections: int
    ops: int
    seconds: float
    tps: float
    p50_ms: float
    p99_ms: float
    wal_bytes_per_op: float
    wal_records_per_op: float
    wal_flushes_per_op: float | None
    # CPU time of the PostgreSQL backends serving the clients (user + system), per operation: what
    # the operation costs the server, apart from this machine's client threads and other tenants.
    backend_cpu_ms_per_op: float
    commit_delay_ms: int = 0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class WalMeter:
    """WAL written (bytes from the insert position; records and flushes from pg_stat_wal, which each
    backend reports when it exits: the clients' connections are closed before the second reading)."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg2.connect(dsn, application_name="pq-capacity-wal")
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("SELECT * FROM pg_stat_wal LIMIT 0")
            columns = {d[0] for d in cur.description or ()}
        # PostgreSQL 14-17 count flushes in pg_stat_wal.wal_sync; 18 moved them to pg_stat_io.
        if "wal_sync" in columns:
            self._flushes = "(SELECT wal_sync FROM pg_stat_wal)"
        else:
            self._flushes = "(SELECT sum(fsyncs) FROM pg_stat_io WHERE object = 'wal')"

    def read(self) -> tuple[str, int, float | None]:
        with self.conn.cursor() as cur:
            cur.execute(
                f"SELECT pg_current_wal_insert_lsn()::text, (SELECT wal_records FROM pg_stat_wal), {self._flushes}"
            )
            row = cur.fetchone()
        assert row is not None
        return str(row[0]), int(row[1]), None if row[2] is None else float(row[2])

    def bytes_between(self, start: str, end: str) -> int:
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (end, start))
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def since(self, lsn0: str, records0: int, flushes0: float | None, *, failed: bool) -> tuple[int, int, float | None]:
        """WAL bytes, records and flushes since the first reading; closes the meter."""
        try:
            if failed:
                return 0, 0, None
            time.sleep(0.3)  # the clients' backends report their WAL statistics as they exit
            lsn1, records1, flushes1 = self.read()
            flushes = None if flushes0 is None or flushes1 is None else flushes1 - flushes0
            return self.bytes_between(lsn0, lsn1), records1 - records0, flushes
        finally:
            self.conn.close()


def drive(dsn: str, feed: Feed, connections: int, seconds: float, step: Step, *, delay_ms: int = 0) -> Level:
    """`connections` clients, each on its own connection, run `step` on items from `feed` until
    `seconds` have passed or the feed is empty."""
    latencies: list[list[float]] = [[] for _ in range(connections)]
    ready = threading.Barrier(connections + 1)
    deadline = [0.0]
    errors: list[BaseException] = []

    cpu = [0.0] * connections

    def client(index: int) -> None:
        conn = psycopg2.connect(dsn, application_name="pq-capacity")
        conn.autocommit = True
        mine = latencies[index]
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                row = cur.fetchone()
                assert row is not None
                backend = psutil.Process(int(row[0]))
                ready.wait()
                before = backend.cpu_times()
                while time.perf_counter() < deadline[0]:
                    item = feed.take()
                    if item is None:
                        break
                    started = time.perf_counter()
                    step(cur, item)
                    mine.append(time.perf_counter() - started)
                after = backend.cpu_times()
                cpu[index] = (after.user - before.user) + (after.system - before.system)
        except BaseException as exc:  # reported below, after every client stopped
            errors.append(exc)
        finally:
            conn.close()

    meter = WalMeter(dsn)
    lsn0, records0, flushes0 = meter.read()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + 3600  # set for real once every client is connected
    ready.wait()
    started = time.perf_counter()
    deadline[0] = started + seconds
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    wal_bytes, records, flushes = meter.since(lsn0, records0, flushes0, failed=bool(errors))
    if errors:
        raise errors[0]
    every = [x for per in latencies for x in per]
    ops = max(1, len(every))
    return Level(
        connections=connections,
        ops=len(every),
        seconds=round(elapsed, 3),
        tps=round(len(every) / elapsed, 1) if elapsed > 0 else 0.0,
        p50_ms=round(_pct(every, 0.50) * 1000, 3),
        p99_ms=round(_pct(every, 0.99) * 1000, 3),
        wal_bytes_per_op=round(wal_bytes / ops, 1),
        wal_records_per_op=round(records / ops, 2),
        wal_flushes_per_op=None if flushes is None else round(flushes / ops, 3),
        backend_cpu_ms_per_op=round(sum(cpu) * 1000 / ops, 4),
        commit_delay_ms=delay_ms,
    )


# The steps: what one request of each kind sends, statement for statement.


def enqueue_step(cur: Cursor, item: tuple[str, int]) -> None:
    user_id, order_id = item
    cur.execute(
        "SELECT * FROM pq_enqueue_job(%s, %s, %s, %s, %s, %s)",
        (user_id, f"capacity-{order_id}", "capacity", order_id, "wallet", None),
    )
    row = cur.fetchone()
    assert row is not None and row[0] == "created", row


def enqueue_sent_mark_step(cur: Cursor, item: tuple[str, int]) -> None:
    """The previous release's enqueue: the job, then (after the SQS send) a second statement marking it sent."""
    user_id, order_id = item
    cur.execute(
        "SELECT outcome, job_id FROM pq_enqueue_job(%s, %s, %s, %s, %s, %s)",
        (user_id, f"capacity-{order_id}", "capacity", order_id, "wallet", None),
    )
    row = cur.fetchone()
    assert row is not None and row[0] == "created", row
    cur.execute("SELECT pq_mark_jobs_sent(%s::uuid[])", ([row[1]],))


def poll_step(cur: Cursor, item: tuple[Any, str]) -> None:
    cur.execute(JOB_QUERY, item)
    assert cur.fetchone() is not None


def payment_step(cur: Cursor, job_id: Any) -> None:
    cur.execute("SELECT outcome, reason FROM pq_process_payment(%s)", (job_id,))
    row = cur.fetchone()
    assert row is not None and row[0] in ("succeeded", "failed"), row


# The rows of payment_jobs and orders this backend's scans fetched: read before and after a statement in one
# transaction (nothing is flushed meanwhile), the rows that statement read.
ROWS_READ = """SELECT coalesce(sum(seq_tup_read + idx_tup_fetch), 0) FROM pg_stat_xact_user_tables
                WHERE relname IN ('payment_jobs', 'orders')"""


def end_sold_out_step(cur: Cursor, product_id: int) -> tuple[int, int]:
    """One statement of the processor's bulk end (shared/services/line.py), in a transaction of its own
    (autocommit cursor): the jobs it ended and the rows of payment_jobs and orders it read."""
    cur.execute("BEGIN")
    cur.execute(ROWS_READ)
    before = cur.fetchone()
    cur.execute("SELECT count(*) FROM pq_end_sold_out_jobs(ARRAY[%s]::bigint[], %s)", (product_id, SOLD_OUT_BATCH))
    row = cur.fetchone()
    cur.execute(ROWS_READ)
    after = cur.fetchone()
    cur.execute("COMMIT")
    assert row is not None and before is not None and after is not None
    return int(row[0]), int(after[0]) - int(before[0])


@dataclass
class Operation:
    statements: int
    what: str
    levels: list[Level] = field(default_factory=list)

    def best(self) -> Level:
        return max(self.levels, key=lambda lv: lv.tps)


def _set_database(server: Server, database: str, settings: dict[str, str]) -> None:
    """Per-database settings (new connections pick them up): commit_delay and commit_siblings are
    superuser settings, so they are set here rather than by the clients."""
    for name, value in settings.items():
        server._admin(f"ALTER DATABASE {database} SET {name} = '{value}'")


def _fresh(server: Server, name: str, plan: SeedPlan) -> tuple[str, Database]:
    """A fresh database with the plan seeded. The setup connection lifts the role's 5 s statement
    timeout (migration 0005) for itself: seeding and recording tens of thousands of jobs in one
    statement is setup, not a request; the measuring clients keep the timeout, as the functions do."""
    dsn, db = server.fresh(name, None)
    db.execute("SET statement_timeout = 0")
    seed(db, plan)
    db.execute("VACUUM ANALYZE")
    return dsn, db


def _queued_jobs(db: Database) -> list[Any]:
    return [r["id"] for r in db.fetch_all("SELECT id FROM payment_jobs WHERE status = 'queued' ORDER BY queue_seq")]


def _enqueue_all(db: Database) -> None:
    """Records a job for every pending order that has none (as the API would; not timed)."""
    db.execute(
        """SELECT e.job_id FROM orders o
                CROSS JOIN LATERAL pq_enqueue_job(o.user_id, 'capacity-' || o.id, 'capacity', o.id, 'wallet', NULL) e
            WHERE o.order_status = 'pending'
              AND NOT EXISTS (SELECT 1 FROM payment_jobs j WHERE j.order_id = o.id)
            ORDER BY o.id"""
    )


def _fsync(db: Database) -> bool:
    row = db.fetch_one("SELECT current_setting('fsync') = 'on' AS on")
    return bool(row and row["on"])


def measure_operations(server: Server, knobs: Knobs, log: Callable[[str], None]) -> dict[str, Operation]:
    # Many products, so concurrent wallet payments rarely meet on a product row (the non-hot share of a sale).
    dsn, db = _fresh(server, "capacity_ops", SeedPlan(users=knobs.users, products=500, user_prefix="shopper-"))
    ops = {
        "enqueue": Operation(1, "pq_enqueue_job (the AWS enqueue path: the SQS send writes nothing back)"),
        "enqueue_sent_mark": Operation(2, "pq_enqueue_job + pq_mark_jobs_sent (the previous release's enqueue)"),
        "status_poll": Operation(1, "GET /v1/payments/{job_id} (shared/services/reads.JOB_QUERY)"),
        "payment": Operation(1, "pq_process_payment, wallet, products not contended"),
        "sold_out": Operation(1, "pq_process_payment of a sold-out product (no row lock)"),
    }
    every = [(r["user_id"], r["id"]) for r in db.fetch_all("SELECT id, user_id FROM orders ORDER BY id")]
    # Half the orders each, so that a fast first design cannot leave the second none.
    orders, marked_orders = Feed(every[: len(every) // 2]), Feed(every[len(every) // 2 :])
    for n in knobs.connections:
        ops["enqueue"].levels.append(drive(dsn, orders, n, knobs.seconds, enqueue_step))
        log(f"enqueue x{n}: {ops['enqueue'].levels[-1].tps} requests/s")
    for n in knobs.connections:
        ops["enqueue_sent_mark"].levels.append(drive(dsn, marked_orders, n, knobs.seconds, enqueue_sent_mark_step))
        log(f"enqueue + sent mark x{n}: {ops['enqueue_sent_mark'].levels[-1].tps} requests/s")
    _enqueue_all(db)
    polls = Feed([(r["id"], r["user_id"]) for r in db.fetch_all("SELECT id, user_id FROM payment_jobs")], cycle=True)
    for n in knobs.connections:
        ops["status_poll"].levels.append(drive(dsn, polls, n, knobs.seconds, poll_step))
        log(f"status poll x{n}: {ops['status_poll'].levels[-1].tps} polls/s")
    jobs = Feed(_queued_jobs(db))
    for n in knobs.connections:
        ops["payment"].levels.append(drive(dsn, jobs, n, knobs.seconds, payment_step))
        log(f"payment x{n}: {ops['payment'].levels[-1].tps} payments/s ({jobs.left} jobs left)")
    # Everything sells out at once: the remaining jobs take the sold-out path.
    db.execute("UPDATE products SET stock = 0")
    for n in knobs.connections:
        ops["sold_out"].levels.append(drive(dsn, jobs, n, knobs.seconds, payment_step))
        log(f"sold out x{n}: {ops['sold_out'].levels[-1].tps} payments/s ({jobs.left} jobs left)")
    db.close()
    return ops


def measure_hot_row(server: Server, knobs: Knobs, log: Callable[[str], None]) -> tuple[list[Level], str]:
    """Every payment buys the same product (stock for all): the rate its row lock allows."""
    name = "capacity_hot"
    dsn, db = _fresh(
        server, name, SeedPlan(users=knobs.hot_users, products=1, stock=knobs.hot_users, user_prefix="hot-")
    )
    _enqueue_all(db)
    method = "commit_delay" if _fsync(db) else "none (fsync is off: commit_delay does nothing)"
    jobs = Feed(_queued_jobs(db))
    db.close()
    clients = max(knobs.connections)
    levels = []
    for delay in knobs.delays_ms:
        _set_database(server, name, {"commit_delay": str(delay * 1000), "commit_siblings": "0"})
        levels.append(drive(dsn, jobs, clients, knobs.seconds, payment_step, delay_ms=delay))
        log(f"hot row, commit +{delay} ms, x{clients}: {levels[-1].tps} payments/s ({jobs.left} jobs left)")
    return levels, method


def measure_sold_out_line(server: Server, knobs: Knobs, log: Callable[[str], None]) -> dict[str, Any]:
    """A line of `users` jobs, every fourth holding the hot product (the sale's mix), which then sells out,
    ended as the processor ends it: SOLD_OUT_BATCH a statement on one connection until one ends none.
    A statement's time is taken as a cost per queued job in line plus one per job ended; the last, which
    ends none, gives the first (near nothing since a statement reads only the product's queued jobs,
    through payment_jobs_live_products: its rows read say so). The statement timeout is the functions'
    role's (migration 0005): a statement past it ends nothing."""
    dsn, db = _fresh(
        server,
        "capacity_line",
        SeedPlan(
            users=knobs.users, products=500, user_prefix="line-", hot_every=round(1 / HOT_SHARE), hot_stock=knobs.users
        ),
    )
    _enqueue_all(db)  # in stock when they were accepted
    product = db.fetch_one("SELECT min(id) AS id FROM products")
    assert product is not None
    db.execute("UPDATE products SET stock = 0 WHERE id = %s", (product["id"],))
    db.close()
    meter = WalMeter(dsn)
    lsn0, records0, flushes0 = meter.read()
    statements: list[dict[str, float]] = []
    conn = psycopg2.connect(dsn, application_name="pq-capacity")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid(), setting::int FROM pg_settings WHERE name = 'statement_timeout'")
            row = cur.fetchone()
            assert row is not None
            backend, timeout_ms = psutil.Process(int(row[0])), int(row[1])
            while True:
                cur.execute("SELECT count(*) FROM payment_jobs WHERE status = 'queued'")
                queued = cur.fetchone()
                assert queued is not None
                before, started = backend.cpu_times(), time.perf_counter()
                ended, rows_read = end_sold_out_step(cur, product["id"])
                seconds, after = time.perf_counter() - started, backend.cpu_times()
                cpu_ms = ((after.user - before.user) + (after.system - before.system)) * 1000
                statements.append(
                    {
                        "queued": int(queued[0]),
                        "ended": ended,
                        "rows_read": rows_read,
                        "seconds": seconds,
                        "cpu_ms": cpu_ms,
                    }
                )
                if ended == 0:
                    break
    finally:
        conn.close()
    wal_bytes, _, _ = meter.since(lsn0, records0, flushes0, failed=False)
    *ending, reading = statements
    ended = sum(int(st["ended"]) for st in ending)
    scan_ms = reading["cpu_ms"] / max(1, reading["queued"])
    end_ms = (sum(st["cpu_ms"] for st in ending) - scan_ms * sum(st["queued"] for st in ending)) / max(1, ended)
    log(f"sold-out line: {ended} of {statements[0]['queued']} jobs ended by {len(ending)} statement(s)")
    return {
        "line_jobs": int(statements[0]["queued"]),
        "ended": ended,
        "batch": SOLD_OUT_BATCH,
        "statement_timeout_ms": timeout_ms,
        "statements": [{k: round(v, 4) for k, v in st.items()} for st in statements],
        # Server CPU: per queued job in line (what a statement that ends none costs), and per job ended
        # (what is left of the rest); rows of payment_jobs and orders read per job ended.
        "scan_cpu_ms_per_queued_job": round(scan_ms, 5),
        "end_cpu_ms_per_job": round(max(0.0, end_ms), 4),
        "rows_read_per_job_ended": round(sum(int(st["rows_read"]) for st in statements) / max(1, ended), 2),
        "wal_bytes_per_job": round(wal_bytes / max(1, ended), 1),
    }


def lift_demo(server: Server, knobs: Knobs, log: Callable[[str], None]) -> dict[str, Any]:
    """Today's design (the hot product's stock in its own row) beside the same product with its
    stock in shards (pq_shard_stock, shared/sql/stock_shards.sql), in one run, at the same injected
    commit latency and concurrency; every job drained and every invariant checked.
    `refused_with_stock_left` counts buyers refused while units were left (0: a buyer whose shard
    sold out was served from another)."""
    results: dict[str, Any] = {}
    clients = max(knobs.connections)
    for label, shards in (("today", 1), ("sharded", knobs.shards)):
        name = f"capacity_lift_{label}"
        # A quarter of the buyers must be refused cleanly.
        plan = SeedPlan(
            users=knobs.lift_jobs,
            products=1,
            stock=knobs.lift_jobs * 3 // 4,
            user_prefix=f"{label}-",
            hot_shards=shards,
        )
        dsn, db = _fresh(server, name, plan)
        _enqueue_all(db)
        stock = snapshot_stock(db)
        _set_database(server, name, {"commit_delay": str(knobs.lift_delay_ms * 1000), "commit_siblings": "0"})
        jobs = Feed(_queued_jobs(db))
        level = drive(dsn, jobs, clients, 3600, payment_step, delay_ms=knobs.lift_delay_ms)
        # The outbox relay's part (no bus here): every event of a finished job is published.
        db.execute("SELECT pq_mark_events_published(array_agg(id)) FROM outbox_events WHERE published_at IS NULL")
        invariants = check(db, initial_stock=stock)
        row = db.fetch_one(
            """SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                      count(*) FILTER (WHERE reason = 'out_of_stock') AS out_of_stock,
                      count(*) FILTER (WHERE finished_at IS NULL) AS unfinished,
                      extract(epoch FROM max(finished_at) - min(finished_at)) AS span_s
                 FROM payment_jobs"""
        )
        assert row is not None
        sold_out_early = min(int(row["out_of_stock"]), sum(snapshot_stock(db).values()))
        results[label] = {
            "shards": shards,
            "jobs": level.ops,
            "succeeded": int(row["succeeded"]),
            "out_of_stock": int(row["out_of_stock"]),
            "unfinished": int(row["unfinished"]),
            "drain_s": level.seconds,
            "payments_per_s": level.tps,
            "p99_ms": level.p99_ms,
            "refused_with_stock_left": sold_out_early,
            "invariants": invariants,
        }
        db.close()
        log(f"lift {label} ({shards} stock rows, commit +{knobs.lift_delay_ms} ms): {level.tps} payments/s")
    results["commit_delay_ms"] = knobs.lift_delay_ms
    results["connections"] = clients
    today, sharded = results["today"]["payments_per_s"], results["sharded"]["payments_per_s"]
    results["gain"] = round(sharded / today, 2) if today else None
    return results


def measure(knobs: Knobs, log: Callable[[str], None] = print) -> dict[str, Any]:
    server = Server(knobs.data_dir)
    try:
        ops = measure_operations(server, knobs, log)
        hot, method = measure_hot_row(server, knobs, log)
        sold_out_line = measure_sold_out_line(server, knobs, log)
        lift = lift_demo(server, knobs, log)
        version = server.version()
    finally:  # the benchmark's own server: nothing of it keeps running afterwards
        stop_embedded(knobs.data_dir)
        if str(knobs.data_dir).startswith("/dev/shm/"):  # noqa: S108 (memory is not kept for the next run)
            shutil.rmtree(knobs.data_dir, ignore_errors=True)
    return {
        "operations": {
            name: {"statements": op.statements, "what": op.what, "levels": [asdict(lv) for lv in op.levels]}
            for name, op in ops.items()
        },
        "hot_row": {
            "connections": max(knobs.connections),
            "commit_latency_method": method,
            "levels": [asdict(lv) for lv in hot],
        },
        "sold_out_line": sold_out_line,
        "lift": lift,
        "knobs": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(knobs).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "postgres": version,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }


def main() -> None:
    knobs = Knobs.from_env()
    knobs.out.parent.mkdir(parents=True, exist_ok=True)
    if os.environ.get("CAP_RENDER_ONLY") == "1":  # the model and the document again, from the last run's JSON
        report = json.loads(knobs.out.read_text())
        report["model"] = model(report)
        knobs.out.write_text(json.dumps(report, indent=2) + "\n")
        if knobs.doc is not None:
            rewrite_doc(knobs.doc, report)
        return
    started = time.monotonic()
    with one_run_at_a_time(knobs.data_dir, "make capacity"):
        report = measure(knobs, log=lambda line: print(line, flush=True))
    report["model"] = model(report)
    report["run_seconds"] = round(time.monotonic() - started, 1)
    knobs.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {knobs.out} in {report['run_seconds']} s")
    if knobs.doc is not None:
        rewrite_doc(knobs.doc, report)
        print(f"rewrote the measured block of {knobs.doc}")
    bad = {k: v for label in ("today", "sharded") for k, v in report["lift"][label]["invariants"].items() if v}
    if bad:
        raise SystemExit(f"an invariant was violated in the side-by-side run: {bad}")


if __name__ == "__main__":
    main()

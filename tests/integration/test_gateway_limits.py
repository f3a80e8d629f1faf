"""The shared limiter under real worker processes, and notifications that survive a killed worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from functions.notify.handler import handler as notify_handler
from local.gateway_sim import Simulator, peak_rps
from local.invariants import check
from local.lambda_shim import LocalContext, sns_event
from local.seed import SeedPlan, seed
from shared.bootstrap import App
from shared.gateway_limits import bucket
from shared.notifications import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from shared.services.outbox import sweep
from shared.settings import Settings, get_settings
from tests.integration.gateway_helpers import drain, gateway_settings, pay_gateway

ROOT = Path(__file__).resolve().parents[2]
RATE, BURST = 15.0, 5.0
WORKERS = 8
# The processor's two Razorpay endpoints (fetch a payment, capture it) get half of RATE and BURST each:
# with the whole of each limit used (share 1), bucket() gives burst = burst_share * limit and
# rate = (limit - burst) / 60.
_PER_ENDPOINT = 60 * RATE / 2 + BURST / 2
LIMITS = {"razorpay.fetch_payment": _PER_ENDPOINT, "razorpay.capture": _PER_ENDPOINT}
BURST_SHARE = (BURST / 2) / _PER_ENDPOINT
CHECKOUTS = 60
# The checkouts are opened before the processors start, as fast as this machine goes: the create-order
# bucket's burst alone holds all of them (burst = BURST_SHARE * limit), so none waits on a refill and
# none is refused as service_busy however fast the machine is. (Its refill rate is then irrelevant.)
CREATE_ORDER_PER_MIN = (CHECKOUTS + 1) / BURST_SHARE


@pytest.fixture
def settings(database_url: str, sim: Simulator) -> Settings:
    return Settings(
        database_url=database_url,
        queue_backend="pgmq",
        event_bus_backend="pgmq",
        sweep_after_s=0,
        max_receive_count=10,
        gateway_limits_per_min=LIMITS | {"razorpay.create_order": CREATE_ORDER_PER_MIN},
        gateway_limit_share=1.0,
        gateway_burst_share=BURST_SHARE,
        **gateway_settings(sim),
    )


def worker_env(app: App, sim: Simulator) -> dict[str, str]:
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": str(app.settings.database_url),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "PQ_MAX_RECEIVE_COUNT": "10",
        "PQ_BATCH_SIZE": "5",
        "PQ_RETRY_DELAY_S": "1",
        "PQ_GATEWAY_LIMITS_PER_MIN": json.dumps(LIMITS),
        "PQ_GATEWAY_LIMIT_SHARE": "1.0",
        "PQ_GATEWAY_BURST_SHARE": str(BURST_SHARE),
        "PQ_GATEWAY_BACKOFF_BASE_S": "0.5",
    }
    for name, value in gateway_settings(sim).items():
        env[f"PQ_{name.upper()}"] = str(value)
    return env


def test_eight_workers_together_never_exceed_the_shared_gateway_limit(app: App, sim: Simulator) -> None:
    # Given 60 Razorpay payments queued, a limiter of 15 requests/s with a burst of 5, and a gateway
    # that refuses anything beyond what the limiter can let through
    # (the checkouts' bucket holds them all at once: none depends on how fast this machine opens them)
    assert bucket(app.settings, "razorpay", "create_order")[2] >= CHECKOUTS
    seed(app.db, SeedPlan(users=CHECKOUTS))
    for i in range(1, CHECKOUTS + 1):
        pay_gateway(app, sim, f"demo-user-{i}", "razorpay")
    sim.config.hard_limit_rps = RATE + BURST + WORKERS
    started = time.time()

    # When eight processor workers (separate processes, as eight Lambda containers) drain the queue
    env = worker_env(app, sim)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "local.workers", "processor"], env=env, cwd=ROOT, stderr=subprocess.DEVNULL
        )
        for _ in range(WORKERS)
    ]
    try:
        deadline = time.monotonic() + 90
        while app.db.fetch_one("SELECT count(*) AS n FROM payment_jobs WHERE finished_at IS NULL") != {"n": 0}:
            assert time.monotonic() < deadline, "workers did not finish"
            assert all(w.poll() is None for w in workers)
            time.sleep(0.25)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)

    # Then every payment succeeded, captured once, and the rate the gateway saw stayed within the
    # bucket's promise: tokens granted in any second <= rate + burst. Arrivals can bunch by at most
    # one request per worker (a worker descheduled between its token and its send), which is the
    # tolerance; on an idle machine the peak is exactly rate + burst.
    stats = sim.stats()
    calls = sorted(c.t for c in sim.calls if c.t >= started)  # the processors' calls, not the checkouts'
    span = calls[-1] - calls[0]
    peak = peak_rps(calls)
    print(f"\nlimiter: {len(calls)} calls in {span:.2f} s, peak {peak}/s")
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_jobs WHERE status = 'succeeded'") == {"n": CHECKOUTS}
    assert (stats["captures"], stats["double_captures"]) == (CHECKOUTS, 0)
    assert len(calls) >= 120  # a fetch and a capture each (more when a slow answer is settled by fetch)
    assert peak <= RATE + BURST + WORKERS
    assert len(calls) <= RATE * span + BURST + WORKERS
    assert stats["hard_limited"] == 0
    assert check(app.db) == dict.fromkeys(check(app.db), 0)


def test_the_token_bucket_grants_no_more_than_rate_times_time_plus_burst(app: App) -> None:
    # Given eight threads (each its own connection) taking tokens as fast as they can for 1.5 s
    rate, burst, duration = 40.0, 8.0, 1.5
    grants: list[float] = []
    lock = threading.Lock()
    start = time.monotonic()

    def hammer() -> None:
        while time.monotonic() - start < duration:
            row = app.db.fetch_one("SELECT * FROM pq_take_tokens('bench', %s, %s, 1)", (rate, burst))
            if row is not None and row["granted"]:
                with lock:
                    grants.append(time.monotonic())
            else:
                time.sleep(0.005)
        app.db.close()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then the grants never exceed the bucket's promise, and the rate is actually delivered
    elapsed = max(grants) - start
    assert len(grants) <= rate * elapsed + burst
    assert len(grants) >= rate * elapsed * 0.9


class Webhook:
    """A shop's webhook receiver: records what arrives, dedupes nothing (the test counts)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/payments"


_KILL_AFTER_COMMIT = """
import os
import shared.services.outbox
from functions.process_payment.handler import handler
from local.lambda_shim import LocalContext, sqs_record
from local.workers import read_fifo
from shared.bootstrap import bootstrap

# The process dies the moment the batch's payments are committed, before their events are published.
shared.services.outbox.publish_events = lambda app, events: os._exit(9)
app = bootstrap()
messages = read_fifo(app.db, "payments", visibility_timeout_s=1, qty=10)
handler({"Records": [sqs_record(m, "payments") for m in messages]}, LocalContext("killed-worker"))
"""


def deliver_events(app: App) -> int:
    """The notifier's part: hand each event on the bus to the notify function."""
    messages = app.db.fetch_all("SELECT * FROM pgmq.read('payment_events', 30, 10)")
    for m in messages:
        notify_handler(sns_event(m["message"], "payment-events"), LocalContext("notify"))
        app.db.execute("SELECT pgmq.delete('payment_events', %s::bigint)", (m["msg_id"],))
    return len(messages)


def test_a_worker_killed_between_commit_and_publish_still_notifies_once(
    app: App, sim: Simulator, demo: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    webhook = Webhook()
    monkeypatch.setenv("PQ_WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("PQ_WEBHOOK_SECRET", "whsec_kill_test")
    get_settings.cache_clear()
    accepted = pay_gateway(app, sim, "demo-user-1", "cashfree")

    # Given a worker that commits the payment and is killed before it publishes the event
    env = worker_env(app, sim)
    killed = subprocess.run(
        [sys.executable, "-c", _KILL_AFTER_COMMIT], env=env, cwd=ROOT, capture_output=True, timeout=60, check=False
    )
    assert killed.returncode == 9, killed.stderr.decode()[-2000:]
    assert app.db.fetch_one("SELECT status FROM payment_jobs WHERE id = %s", (accepted.body["job_id"],)) == {
        "status": "succeeded"
    }
    assert app.db.fetch_one("SELECT count(*) AS n FROM pgmq.q_payment_events") == {"n": 0}

    # When the message comes back (redelivery: nothing new), the sweeper runs, and notify delivers
    time.sleep(1.1)
    drain(app)
    republished = sweep(app)["events_republished"]
    delivered = deliver_events(app)
    again = sweep(app)["events_republished"] + deliver_events(app)
    get_settings.cache_clear()

    # Then the shop receives the event exactly once, signed, and a tampered copy does not verify
    assert (republished, delivered, again) == (1, 1, 0)
    assert len(webhook.received) == 1
    headers, body = webhook.received[0]
    event = json.loads(body)
    assert (event["type"], event["data"]["job_id"], event["data"]["method"]) == (
        "PaymentSucceeded",
        accepted.body["job_id"],
        "cashfree",
    )
    assert headers[EVENT_ID_HEADER.lower()] == event["id"]
    assert verify("whsec_kill_test", headers[SIGNATURE_HEADER.lower()], body)
    assert not verify("whsec_kill_test", headers[SIGNATURE_HEADER.lower()], body.replace(b"cashfree", b"razorpay"))
    webhook.server.shutdown()

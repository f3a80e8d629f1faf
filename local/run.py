"""`make run`: the whole system on one machine, with embedded PostgreSQL by default.

Starts (or reuses) the database, migrates, installs PGMQ, seeds demo data, then runs the local
API, the processor workers and the notifier as child processes until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

from local.auth import LocalIssuer
from local.config import ROOT, LocalSettings
from local.gateway_demo import banner as gateway_banner
from local.gateway_demo import gateway_env, seed_gateway_payments
from local.pg import prepare, start_embedded, stop_embedded
from local.seed import SeedPlan, ensure_pending_order, seed
from shared.db import Database
from shared.settings import Settings

DEMO_USER = "demo-user-1"


def _wait_for_api(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 (loopback)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"local API did not come up at {url}")


def banner(local: LocalSettings, issuer: LocalIssuer, user_id: str, order_id: int, operator_scope: str) -> str:
    base = f"http://{local.api_host}:{local.api_port}"
    token = issuer.issue(user_id)
    operator = issuer.issue("operator", scopes=(operator_scope,))
    key = f"demo-{order_id}"
    return f"""
Payment Queue is running at {base}
  {local.workers} processor workers, 1 notifier; logs in {local.data_dir / "logs"}

Pay {user_id}'s pending order {order_id} (paste as one command):

curl -sS -X POST {base}/v1/payments \\
  -H 'Authorization: Bearer {token}' \\
  -H 'Idempotency-Key: {key}' \\
  -H 'Content-Type: application/json' \\
  -d '{{"order_id": {order_id}, "method": "wallet"}}'

Then poll the job (use the job_id from the answer):

curl -sS {base}/v1/payments/JOB_ID -H 'Authorization: Bearer {token}'

Operator views (token with the {operator_scope} scope):

curl -sS {base}/v1/queue/status -H 'Authorization: Bearer {operator}'

In a browser (the token rides in the URL fragment, which never reaches a server or its logs):

  pay the order, watch its progress   {base}/static/progress.html#order={order_id}&token={token}
  follow a job (put in its job_id)    {base}/static/progress.html#job=JOB_ID&token={token}
  live operator page                  {base}/static/operator.html#token={operator}

Other tokens: make token USER=<id> [OPERATOR=1].  Ctrl-C stops everything; data stays in {local.data_dir}.
"""


def prepare_database(local: LocalSettings, env: dict[str, str]) -> tuple[bool, int]:
    """Start the embedded server unless DATABASE_URL names one; migrate; seed; a pending demo order."""
    embedded = not env.get("DATABASE_URL")
    if embedded:
        print("starting embedded PostgreSQL ...", flush=True)
        env["DATABASE_URL"] = start_embedded(local.data_dir, local.pg_max_connections)
    dsn = env["DATABASE_URL"]
    db = Database(lambda: dsn, connect_timeout_s=10)
    try:
        applied = prepare(db)
        print(f"database ready ({len(applied)} migrations applied)", flush=True)
        seed(db, SeedPlan(users=local.demo_users))
        return embedded, ensure_pending_order(db, DEMO_USER)
    finally:
        db.close()


class Supervisor:
    """The child processes (API, processors, notifier); stops them all, once, on the way out."""

    def __init__(self, local: LocalSettings, env: dict[str, str], embedded: bool) -> None:
        self.local = local
        self.env = env
        self.embedded = embedded
        self.logs = local.data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.children: list[subprocess.Popen[bytes]] = []
        self.stopped = False

    def spawn(self, name: str, *argv: str) -> None:
        role = name.rsplit("-", 1)[0]
        env = self.env | {"PQ_DB_APPLICATION_NAME": f"pq-{role}"}
        with open(self.logs / f"{name}.log", "ab") as out:
            # Our own interpreter and modules, never user input.
            self.children.append(
                subprocess.Popen(  # noqa: S603
                    [sys.executable, "-m", *argv], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
                )
            )

    def start_all(self) -> None:
        if sim_port := self.env.get("PQ_GATEWAY_SIM_PORT"):  # set by gateway_env(); the benchmark runs without
            self.spawn("gateway-sim", "local.gateway_sim", "--port", sim_port)
        for i in range(self.local.api_workers):
            self.spawn(f"api-{i + 1}", "local.api")
        for i in range(self.local.workers):
            self.spawn(f"processor-{i + 1}", "local.workers", "processor")
        self.spawn("notifier", "local.workers", "notifier")

    def watch(self) -> None:
        """Return when a child dies (which is an error: it should run until stopped)."""
        while all(c.poll() is None for c in self.children):
            time.sleep(0.5)
        dead = [c.args for c in self.children if c.poll() is not None]
        print(f"a child process exited: {dead}; see {self.logs}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        print("\nstopping ...", flush=True)
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        if self.embedded:
            stop_embedded(self.local.data_dir)
        print("stopped; data kept in", self.local.data_dir, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="run Payment Queue locally")
    parser.add_argument("--reset", action="store_true", help="delete the local data first")
    args = parser.parse_args()
    local = LocalSettings()
    if args.reset and local.data_dir.exists():
        stop_embedded(local.data_dir)
        shutil.rmtree(local.data_dir)

    env = dict(os.environ)
    # No X-Ray daemon locally. Metrics stay on (EMF lines in the logs, as in CloudWatch Logs):
    # POWERTOOLS_METRICS_DISABLED makes Powertools 3.37 keep and re-print its metric set.
    env.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    embedded, order_id = prepare_database(local, env)
    sim_url = gateway_env(env)
    issuer = LocalIssuer(local.data_dir / "jwt" / "signing-key.pem", local.jwt_issuer, local.jwt_audience)
    supervisor = Supervisor(local, env, embedded)

    def on_term(*_: object) -> None:
        supervisor.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    try:
        supervisor.start_all()
        _wait_for_api(f"http://{local.api_host}:{local.api_port}/.well-known/jwks.json")
        print(banner(local, issuer, DEMO_USER, order_id, Settings().operator_scope), flush=True)
        db = Database(lambda: env["DATABASE_URL"], connect_timeout_s=10)
        try:
            payments = seed_gateway_payments(db, sim_url)
        finally:
            db.close()
        print(gateway_banner(f"http://{local.api_host}:{local.api_port}", sim_url, issuer, payments), flush=True)
        supervisor.watch()
        raise SystemExit(1)
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop()


if __name__ == "__main__":
    main()

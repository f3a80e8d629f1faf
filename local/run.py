"""`make run`: the whole system on one machine, with embedded PostgreSQL by default.

Starts (or reuses) the database, migrates, installs PGMQ, seeds demo data, then runs the local
API, the processor workers and the notifier as child processes until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.extensions

from local.api import LISTEN_BACKLOG
from local.auth import LocalIssuer
from local.config import ROOT, LocalSettings
from local.gateway_demo import banner as gateway_banner
from local.gateway_demo import gateway_env, open_demo_checkouts
from local.lock import LOCK_NAME, AlreadyRunning, RunLock
from local.pg import prepare, start_embedded, stop_embedded
from local.seed import SeedPlan, demo_orders, seed
from shared.db import Database
from shared.domain import TransientError
from shared.settings import Settings

DEMO_USER = "demo-user-1"


class StartupError(Exception):
    """The run cannot start whole; the message is the one line the user sees."""


class Stopped(BaseException):  # like KeyboardInterrupt: a request, not an error
    """SIGINT, SIGTERM or SIGHUP: stop everything."""


def _wait_for_api(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 (loopback)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"local API did not come up at {url}")


def claim_port(host: str, port: int, setting: str) -> None:
    """Refuse a port something already listens on (SO_REUSEADDR only: a TIME_WAIT is no owner)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartupError(
                f"{host}:{port} is already in use ({exc.strerror}): another make run or another server holds it; "
                f"stop it, or choose another port with {setting}"
            ) from None


def listen_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """The API's listening sockets, one per process (each its own accept queue), bound here.

    The supervisor binds them after claim_port() and hands one to each API process, so a
    second run can never join this one's port through SO_REUSEPORT: it finds the port taken.
    """
    claim_port(host, port, "PQ_API_PORT")
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sockets.append(sock)
    return sockets


@dataclass(frozen=True)
class DemoOrders:
    """The pending orders the start-up message's examples pay, each its own (local/seed.py demo_orders)."""

    curl: int
    page: int


def banner(local: LocalSettings, issuer: LocalIssuer, user_id: str, orders: DemoOrders, operator_scope: str) -> str:
    base = f"http://{local.api_host}:{local.api_port}"
    token = issuer.issue(user_id)
    operator = issuer.issue("operator", scopes=(operator_scope,))
    order_id = orders.curl
    key = f"demo-{order_id}"
    pay_page = f"pay order {orders.page} (wallet, Razorpay, Cashfree)"
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

  {pay_page:<44}{base}/static/progress.html#order={orders.page}&token={token}
  {"follow a job (put in its job_id)":<44}{base}/static/progress.html#job=JOB_ID&token={token}
  {"live operator page":<44}{base}/static/operator.html#token={operator}

More orders: make orders [USER=<id>] [N=<count>]; wallet money: make topup [USER=<id>] AMOUNT=<paise>.
Other tokens: make token USER=<id> [OPERATOR=1]; the shop backend's: make token MERCHANT=1.
Ctrl-C stops everything; data stays in {local.data_dir}.
"""


def _where(dsn: str) -> str:
    """host:port/dbname of a DSN, never its user or password."""
    try:
        parts = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "the DATABASE_URL given (not a valid connection string)"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', '5432')}/{parts.get('dbname', '')}"


def prepare_database(local: LocalSettings, env: dict[str, str]) -> DemoOrders:
    """Start the embedded server unless DATABASE_URL names one; migrate; seed; the demo's pending orders."""
    if not env.get("DATABASE_URL"):
        print("starting embedded PostgreSQL ...", flush=True)
        env["DATABASE_URL"] = start_embedded(local.data_dir, local.pg_max_connections)
    dsn = env["DATABASE_URL"]
    try:
        psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:  # its message quotes the string, which may hold a password
        raise StartupError(
            "DATABASE_URL is not a PostgreSQL connection string: "
            "postgresql://<user>:<password>@<host>:<port>/<database>, or key=value pairs"
        ) from None
    db = Database(lambda: dsn, connect_timeout_s=10)
    try:
        try:
            applied = prepare(db)
        except (TransientError, psycopg2.OperationalError) as exc:
            # libpq's first line names the cause ("Connection refused", "password authentication
            # failed for user ..."); it never carries the password.
            reason = str(exc).strip().splitlines()[0].removeprefix("OperationalError: ")
            raise StartupError(f"cannot reach the database at {_where(dsn)} (DATABASE_URL): {reason}") from None
        print(f"database ready ({len(applied)} migrations applied)", flush=True)
        seed(db, SeedPlan(users=local.demo_users))
        return DemoOrders(*demo_orders(db, DEMO_USER, 2))
    finally:
        db.close()


@dataclass
class ChildLog:
    name: str
    path: Path
    offset: int  # where this run's output starts (the file is appended to across runs)


class Supervisor:
    """The child processes (API, processors, notifier, simulator); stops them all, once, on the way out."""

    TAIL_LINES = 20

    def __init__(self, local: LocalSettings, env: dict[str, str], embedded: bool) -> None:
        self.local = local
        self.env = env
        self.embedded = embedded
        self.logs = local.data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.children: list[subprocess.Popen[bytes]] = []
        self._child_logs: dict[int, ChildLog] = {}
        self.stopped = False

    def spawn(self, name: str, *argv: str, pass_fds: tuple[int, ...] = ()) -> None:
        role = name.rsplit("-", 1)[0]
        env = self.env | {"PQ_DB_APPLICATION_NAME": f"pq-{role}"}
        if threading.current_thread() is threading.main_thread():
            env["PQ_SUPERVISOR_PID"] = str(os.getpid())  # local/child.py: die with the supervisor
        path = self.logs / f"{name}.log"
        with open(path, "ab") as out:
            offset = out.tell()
            # Our own interpreter and modules, never user input.
            child = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "local.child", *argv],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                pass_fds=pass_fds,
            )
        self.children.append(child)
        self._child_logs[child.pid] = ChildLog(name, path, offset)

    def start_all(self) -> None:
        """Claim the ports first (one line naming a busy one), then start every child."""
        host = self.local.api_host
        sim_port = self.env.get("PQ_GATEWAY_SIM_PORT")  # set by gateway_env(); the benchmark runs without
        if sim_port:
            claim_port("127.0.0.1", int(sim_port), "PQ_GATEWAY_SIM_PORT")
        sockets = listen_sockets(host, self.local.api_port, self.local.api_workers)
        try:
            if sim_port:
                self.spawn("gateway-sim", "local.gateway_sim", "--port", sim_port)
            for i, sock in enumerate(sockets):
                self.spawn(f"api-{i + 1}", "local.api", "--fd", str(sock.fileno()), pass_fds=(sock.fileno(),))
        finally:
            for sock in sockets:  # each API process holds its own copy now
                sock.close()
        for i in range(self.local.workers):
            self.spawn(f"processor-{i + 1}", "local.workers", "processor")
        self.spawn("notifier", "local.workers", "notifier")

    def tail(self, child: subprocess.Popen[bytes]) -> str:
        """The last lines this child wrote in this run, for the terminal."""
        log = self._child_logs[child.pid]
        try:
            with open(log.path, "rb") as file:
                file.seek(log.offset)
                lines = file.read().decode(errors="replace").splitlines()[-self.TAIL_LINES :]
        except OSError:
            lines = []
        shown = "\n".join("  | " + line for line in lines) or "  | (nothing)"
        return f"last lines of {log.path}:\n{shown}"

    def _dead(self) -> list[subprocess.Popen[bytes]]:
        return [c for c in self.children if c.poll() is not None]

    def _explain(self, dead: list[subprocess.Popen[bytes]], when: str) -> str:
        parts = [f"{self._child_logs[c.pid].name} exited with code {c.returncode} {when}" for c in dead]
        return "; ".join(parts) + "\n" + "\n".join(self.tail(c) for c in dead)

    def wait_ready(self, urls: list[str], timeout_s: float = 60.0) -> None:
        """Until every URL answers; a child that dies meanwhile fails the start with its log's tail."""
        deadline = time.monotonic() + timeout_s
        waiting = list(urls)
        while waiting:
            if dead := self._dead():
                raise StartupError(self._explain(dead, "while starting"))
            try:
                urllib.request.urlopen(waiting[0], timeout=1).close()  # noqa: S310 (loopback)
                waiting.pop(0)
                continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise StartupError(f"{waiting[0]} did not answer within {timeout_s:.0f} s; see {self.logs}")
            time.sleep(0.2)

    def watch(self) -> None:
        """Return when a child dies (which is an error: it should run until stopped)."""
        while not (dead := self._dead()):
            time.sleep(0.5)
        print(self._explain(dead, "unexpectedly; stopping everything"), file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if not self.children and not self.embedded:
            return  # nothing was started
        # A Ctrl-C while stopping must not leave half the children running.
        main = threading.current_thread() is threading.main_thread()
        saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            print("\nstopping ...", flush=True)
            for child in self.children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in self.children:
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            if self.embedded:
                stop_embedded(self.local.data_dir)
            print("stopped; data kept in", self.local.data_dir, flush=True)
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)


def _stop_on_signals() -> None:
    """SIGINT and SIGTERM stop the run, whatever they were set to when it started: a background
    job (make test &, nohup) starts with SIGINT ignored, and would otherwise never stop on it.
    SIGHUP (the terminal closed) too, unless nohup asked for it to be ignored."""

    def stop(signum: int, _frame: object) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the stopping short
        raise Stopped(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, stop)


def _clear(data_dir: Path) -> None:
    """--reset: everything in the data directory but the lock this run holds."""
    stop_embedded(data_dir)
    for entry in data_dir.iterdir():
        if entry.name != LOCK_NAME:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def run(local: LocalSettings) -> None:
    env = dict(os.environ)
    # No X-Ray daemon locally. Metrics stay on (EMF lines in the logs, as in CloudWatch Logs):
    # POWERTOOLS_METRICS_DISABLED makes Powertools 3.37 keep and re-print its metric set.
    env.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    sim_url = gateway_env(env, f"http://{local.api_host}:{local.api_port}")
    # The gateways keep their orders across restarts, as the real ones do (local/gateway_sim_state.py).
    env.setdefault("PQ_GATEWAY_SIM_STATE", str(local.data_dir / "gateway-sim.json"))
    # Before anything starts: a busy port fails the run in a moment, not after the database.
    claim_port(local.api_host, local.api_port, "PQ_API_PORT")
    claim_port("127.0.0.1", int(env["PQ_GATEWAY_SIM_PORT"]), "PQ_GATEWAY_SIM_PORT")
    supervisor = Supervisor(local, env, embedded=not env.get("DATABASE_URL"))
    try:
        orders = prepare_database(local, env)
        issuer = LocalIssuer(local.data_dir / "jwt" / "signing-key.pem", local.jwt_issuer, local.jwt_audience)
        base = f"http://{local.api_host}:{local.api_port}"
        supervisor.start_all()
        supervisor.wait_ready([f"{base}/.well-known/jwks.json", f"{sim_url}/_sim/stats"])
        print(banner(local, issuer, DEMO_USER, orders, Settings().operator_scope), flush=True)
        db = Database(lambda: env["DATABASE_URL"], connect_timeout_s=10)
        try:
            checkouts = open_demo_checkouts(db, sim_url, base, issuer)
        finally:
            db.close()
        print(gateway_banner(base, sim_url, issuer, checkouts), flush=True)
        supervisor.watch()
        raise SystemExit(1)
    finally:
        supervisor.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="run Payment Queue locally")
    parser.add_argument("--reset", action="store_true", help="delete the local data first")
    args = parser.parse_args()
    local = LocalSettings()
    _stop_on_signals()
    try:
        with RunLock(local.data_dir):
            if args.reset:
                _clear(local.data_dir)
            run(local)
    except Stopped:
        pass
    except AlreadyRunning as exc:
        hint = f"kill -TERM {exc.pid}" if exc.pid else "Ctrl-C in its terminal"
        print(f"make run: {exc}; stop it first ({hint}), or use another PQ_DATA_DIR", file=sys.stderr)
        raise SystemExit(1) from None
    except StartupError as exc:
        print(f"make run: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

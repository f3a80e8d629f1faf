"""End to end: `python -m local.run` over HTTP, with the database checked afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.conftest import ROOT, Runtime, _free_port, runtime_env, stop, wait_until_running

pytestmark = pytest.mark.e2e


def _poll_until_terminal(rt: Runtime, path: str, token: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = rt.request("GET", path, token)
        assert status == 200, body
        if body["status"] in ("succeeded", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(body["poll_after_ms"] / 1000)


def test_printed_curl_pays_the_demo_order(runtime: Runtime) -> None:
    # Given the command the start-up message prints
    text = runtime.output.read_text()
    command = re.search(r"^curl -sS -X POST .*?-d '.*?'$", text, re.S | re.M)
    assert command, text
    order_id = int(re.search(r'"order_id": (\d+)', command.group(0)).group(1))  # type: ignore[union-attr]
    before = runtime.db.fetch_one(
        """SELECT w.balance_paise, o.total_paise, p.stock, p.id AS product_id
             FROM orders o JOIN wallets w USING (user_id)
             JOIN products p ON p.id = (o.items->0->>'product_id')::bigint WHERE o.id = %s""",
        (order_id,),
    )
    assert before is not None

    # When it is run as printed, and the job is polled as advised
    answer = json.loads(subprocess.run(["bash", "-c", command.group(0)], capture_output=True, check=True).stdout)
    assert answer["status"] == "queued"
    token = runtime.issuer.issue("demo-user-1")
    final = _poll_until_terminal(runtime, answer["status_url"], token)

    # Then the payment succeeded: wallet debited, stock decremented, order paid
    assert final["status"] == "succeeded" and final["payment_id"]
    after = runtime.db.fetch_one(
        """SELECT w.balance_paise, o.order_status, p.stock FROM orders o JOIN wallets w USING (user_id)
             JOIN products p ON p.id = %s WHERE o.id = %s""",
        (before["product_id"], order_id),
    )
    assert after == {
        "balance_paise": before["balance_paise"] - before["total_paise"],
        "order_status": "paid",
        "stock": before["stock"] - 1,
    }


def test_someone_elses_job_is_not_found_and_bad_tokens_are_refused(runtime: Runtime) -> None:
    mine = runtime.issuer.issue("demo-user-2")
    order = runtime.db.fetch_one("SELECT id FROM orders WHERE user_id = 'demo-user-2' AND order_status = 'pending'")
    assert order is not None
    status, accepted = runtime.request(
        "POST", "/v1/payments", mine, {"order_id": order["id"], "method": "wallet"}, {"Idempotency-Key": "e2e-1"}
    )
    assert status == 202

    status, body = runtime.request("GET", accepted["status_url"], runtime.issuer.issue("demo-user-3"))
    assert (status, body["error"]["code"]) == (404, "job_not_found")
    status, body = runtime.request("GET", accepted["status_url"], None)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    status, body = runtime.request("GET", accepted["status_url"], mine + "x")
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    status, body = runtime.request("GET", "/v1/queue/status", mine)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = runtime.request("DELETE", "/v1/payments", mine)
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")

    assert _poll_until_terminal(runtime, accepted["status_url"], mine)["status"] == "succeeded"
    operator = runtime.issuer.issue("ops", scopes=("payments/operator",))
    status, queue = runtime.request("GET", "/v1/queue/status", operator)
    assert status == 200 and queue["dlq_depth"] == 0
    # The notifier delivered the event: published and consumed from the local bus.
    deadline = time.monotonic() + 20
    while runtime.db.fetch_one("SELECT count(*) n FROM pgmq.q_payment_events") != {"n": 0}:
        assert time.monotonic() < deadline
        time.sleep(0.2)


# --- starting whole or not at all, and stopping whole ------------------------------------------


def _run_once(env: dict[str, str], timeout_s: float = 60) -> tuple[int, str, str]:
    """One `make run` to its end (a run that hangs fails with subprocess.TimeoutExpired)."""
    done = subprocess.run(
        [sys.executable, "-m", "local.run"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def _listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize("setting", ["PQ_API_PORT", "PQ_GATEWAY_SIM_PORT"])
def test_a_busy_port_fails_the_run_at_once_with_one_line_naming_it(tmp_path: Path, setting: str) -> None:
    # Given another server listening on the port the run wants (no database is even needed)
    with _listening() as other:
        port = other.getsockname()[1]
        env = runtime_env("postgresql://nobody@127.0.0.1:1/none", tmp_path) | {setting: str(port)}
        # When the run starts
        code, out, err = _run_once(env)
    # Then it refuses in a moment, in one line naming the port and the setting, and starts nothing
    assert code == 1, (out, err)
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert f"127.0.0.1:{port} is already in use" in err and setting in err, err
    assert "starting" not in out and not (tmp_path / "logs").exists()


def test_an_unreachable_database_url_is_one_line_without_its_password(tmp_path: Path) -> None:
    with _listening() as closed:
        port = closed.getsockname()[1]
    env = runtime_env(f"postgresql://payments:s3cret-pw@127.0.0.1:{port}/payments", tmp_path)
    code, out, err = _run_once(env)
    assert code == 1, (out, err)
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert f"cannot reach the database at 127.0.0.1:{port}/payments (DATABASE_URL)" in err, err
    assert "s3cret-pw" not in out + err


def test_a_database_url_that_is_no_connection_string_is_one_line_without_it(tmp_path: Path) -> None:
    env = runtime_env("not a url s3cret-pw", tmp_path)
    code, out, err = _run_once(env)
    assert code == 1, (out, err)
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert "DATABASE_URL is not a PostgreSQL connection string" in err, err
    assert "s3cret-pw" not in out + err


def test_a_child_that_fails_to_start_fails_the_run_with_its_log_tail(database_url: str, tmp_path: Path) -> None:
    # Given a setting every function process refuses
    env = runtime_env(database_url, tmp_path) | {"PQ_POLL_MIN_MS": "not-a-number"}
    # When the run starts
    code, out, err = _run_once(env, timeout_s=90)
    # Then it fails naming the child and showing the end of that child's log, with the cause in it
    assert code == 1, (out, err)
    assert "exited with code 1 while starting" in err and "last lines of" in err, err
    assert "poll_min_ms" in err, err
    assert "stopped" in out and "Payment Queue is running" not in out


def _descendants(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    return [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]


def _all_gone(processes: list[psutil.Process], timeout_s: float = 20) -> list[str]:
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    return [" ".join(p.cmdline()) for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_run_started_with_sigint_ignored_stops_whole_on_either_signal(
    database_url: str, tmp_path: Path, sig: signal.Signals
) -> None:
    # Given a run started as a background job starts it: SIGINT ignored (make test &, nohup ... &)
    env = runtime_env(database_url, tmp_path)
    output = tmp_path / "run.out"
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f'trap "" INT; exec "{sys.executable}" -m local.run'],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_running(proc, output)
        processes = _descendants(proc)
        assert len(processes) >= 6  # supervisor, simulator, 2 API, 2 processors, notifier
        # When the signal arrives
        proc.send_signal(sig)
        # Then every process of the run has ended, the run said so, and the ports are free again
        assert _all_gone(processes) == []
        assert proc.wait(timeout=5) == 0 and "stopped" in output.read_text()
        for setting in ("PQ_API_PORT", "PQ_GATEWAY_SIM_PORT"):
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(("127.0.0.1", int(env[setting])))
    finally:
        stop(proc)


def test_while_a_run_is_up_a_second_run_and_a_reset_are_refused(runtime: Runtime, tmp_path: Path) -> None:
    # Given a running system, When a second run starts on the same data directory (other ports)
    second = runtime.env | {"PQ_API_PORT": str(_free_port()), "PQ_GATEWAY_SIM_PORT": str(_free_port())}
    code, out, err = _run_once(second)
    # Then it is refused at once, naming the running supervisor
    assert code == 1, (out, err)
    assert f"already running on {runtime.env['PQ_DATA_DIR']} (process {runtime.process.pid})" in err, err
    # When make reset runs
    reset = subprocess.run(
        [sys.executable, "-m", "local.admin", "reset"],
        env=runtime.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    # Then it is refused too, and the system still answers with the key it had
    assert reset.returncode == 1 and "stop it first" in reset.stderr, reset.stderr
    assert (Path(runtime.env["PQ_DATA_DIR"]) / "jwt" / "signing-key.pem").exists()
    status, _ = runtime.request("GET", "/v1/queue/status", runtime.issuer.issue("ops", scopes=("payments/operator",)))
    assert status == 200


def test_make_token_on_a_system_never_started_makes_no_key(tmp_path: Path) -> None:
    env = os.environ | {"PQ_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "local.token"], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1 and "start the system once with make run" in done.stderr
    assert done.stdout == "" and not (tmp_path / "jwt").exists()


def _marked(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PQ_TEST_MARK") == mark:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.mark.parametrize("how", ["completes", "is sent SIGTERM"])
def test_a_test_run_in_the_background_leaves_no_process_behind(pg_admin_url: str, template_url: str, how: str) -> None:
    # Given an e2e test run as `setsid make test &` would run it: no terminal, SIGINT ignored
    mark = uuid.uuid4().hex
    env = os.environ | {"TEST_DATABASE_ADMIN_URL": pg_admin_url, "PQ_TEST_MARK": mark, "PYTHONPATH": str(ROOT)}
    inner = subprocess.Popen(
        [
            "bash",
            "-c",
            f'trap "" INT; exec "{sys.executable}" -m pytest -q -p no:cacheprovider '
            "tests/e2e/test_local_runtime.py::test_printed_curl_pays_the_demo_order",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        if how == "is sent SIGTERM":
            # When it is stopped while its runtime is up
            deadline = time.monotonic() + 60
            while not any("local.child" in " ".join(p.cmdline()) for p in _marked(mark)):
                assert inner.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
            inner.send_signal(signal.SIGTERM)
        # When it ends
        output = inner.communicate(timeout=120)[0].decode(errors="replace")
        if how == "completes":
            assert inner.returncode == 0, output
        # Then nothing it started is still running
        left = [" ".join(p.cmdline()) for p in _marked(mark) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert left == [], output[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(inner.pid, signal.SIGKILL)
        for proc in _marked(mark):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def test_an_api_process_holds_a_sales_worth_of_connections_it_has_not_accepted_yet(tmp_path: Path) -> None:
    # Given an API process serving on a socket the supervisor bound and handed over (local/run.py), as make
    # run starts each one, stopped so that it accepts nothing, as when it is busy with a burst's requests
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    env = os.environ | {"PQ_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.api", "--fd", str(listener.fileno())],
        pass_fds=(listener.fileno(),),
        env=env,
        cwd=ROOT,
    )
    clients: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while True:  # serving: it answers the JWKS
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if probe.recv(12).startswith(b"HTTP/1.1 200"):
                    break
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        proc.send_signal(signal.SIGSTOP)

        # When 600 shoppers connect at once (more than aiohttp's default backlog of 128)
        for _ in range(600):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect(("127.0.0.1", port))
            clients.append(client)

        # Then the kernel completes every handshake into the socket's queue: none is dropped to be retried
        # a second or more later (a dropped one stays unconnected however long it is given)
        pending = set(clients)
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            time.sleep(0.1)
            pending = {c for c in pending if c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0 or not _connected(c)}
        assert len(pending) == 0, f"{len(pending)} of 600 connections were not taken"
    finally:
        for client in clients:
            client.close()
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=30)
        listener.close()


def _connected(client: socket.socket) -> bool:
    try:
        client.getpeername()
    except OSError:
        return False
    return True

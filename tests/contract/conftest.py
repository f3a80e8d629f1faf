"""Contract tests: the official SDKs against the simulator, and our checks against the SDKs' verifiers.

cashfree-pg pins urllib3 below ours, so it lives in a virtualenv of its own (PQ_CASHFREE_VENV;
/work/venvs/cashfree on the project's machines, .venvs/cashfree in the checkout elsewhere), created
and installed from PyPI here on first use (a fresh CI machine), reinstalled when
tests/contract/requirements-cashfree.txt changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import pytest

from local.gateway_sim import Simulator

RAZORPAY = ("rzp_test_contract", "rzp_contract_key_secret")
RAZORPAY_WEBHOOK_SECRET = "rzp_contract_webhook_secret"
CASHFREE = ("cf_contract_app", "cf_contract_secret")
API_VERSION = "2025-01-01"
HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements-cashfree.txt"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Inbox:
    """A webhook endpoint on loopback that keeps every request exactly as it arrived."""

    url: str
    received: list[Received] = field(default_factory=list)

    def of(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for what the simulator does later (a refund settling, a release); fails only at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the simulator did not get there in time"
        time.sleep(0.02)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    holder: list[Inbox] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            holder[0].received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Inbox(f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield holder[0]
    server.shutdown()
    server.server_close()


@pytest.fixture
def sim(inbox: Inbox) -> Iterator[Simulator]:
    simulator = Simulator(razorpay=RAZORPAY, cashfree=CASHFREE, razorpay_webhook_secret=RAZORPAY_WEBHOOK_SECRET)
    simulator.config.razorpay_webhook_url = inbox.url + "/razorpay"
    simulator.config.cashfree_webhook_url = inbox.url + "/cashfree"
    simulator.config.refund_settle_s = 0.05
    simulator.start()
    yield simulator
    simulator.stop()


def _cashfree_python() -> Path:
    """The Cashfree virtualenv's interpreter, created and installed if missing or out of date."""
    default = Path("/work/venvs/cashfree") if Path("/work").is_dir() else HERE.parent.parent / ".venvs" / "cashfree"
    venv = Path(os.environ.get("PQ_CASHFREE_VENV") or default)
    python = venv / "bin" / "python"
    stamp = venv / ".pq-requirements"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(REQUIREMENTS)],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            pytest.fail(f"could not prepare the cashfree-pg virtualenv: {' '.join(step)}\n{done.stderr[-2000:]}")
    stamp.write_text(wanted)
    return python


@pytest.fixture(scope="session")
def cashfree_python() -> Path:
    return _cashfree_python()


class CashfreeSdk:
    """The driver process (cashfree_driver.py) speaking the official SDK to one simulator."""

    def __init__(self, python: Path, sim: Simulator) -> None:
        self._process = subprocess.Popen(
            [str(python), str(HERE / "cashfree_driver.py"), sim.url, *CASHFREE, API_VERSION],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        stdin: IO[str] | None = self._process.stdin
        stdout: IO[str] | None = self._process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        answer: dict[str, Any] = json.loads(stdout.readline())
        assert "exception" not in answer, answer["exception"]
        return answer

    def call(self, method: str, **args: Any) -> dict[str, Any]:
        return self._ask({"op": "call", "method": method, "args": args})

    def verify_webhook(self, signature: str, body: str, timestamp: str) -> dict[str, Any]:
        return self._ask({"op": "verify_webhook", "signature": signature, "body": body, "timestamp": timestamp})

    def validate(self, model: str, raw: str) -> dict[str, Any]:
        return self._ask({"op": "validate", "model": model, "json": raw})

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        self._process.wait(timeout=10)


@pytest.fixture
def cashfree_sdk(cashfree_python: Path, sim: Simulator) -> Iterator[CashfreeSdk]:
    sdk = CashfreeSdk(cashfree_python, sim)
    yield sdk
    sdk.close()

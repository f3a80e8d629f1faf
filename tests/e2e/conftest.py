"""The local runtime (`python -m local.run`) on a free port against a fresh database, and a
headless Chromium for the page tests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from local.auth import LocalIssuer
from local.config import LocalSettings
from local.gateway_demo import gateway_env
from shared.db import Database
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
# Debian's package installs /usr/bin/chromium; PQ_CHROMIUM names another binary.
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (`timeout make test`, a CI job cancelled) ends the session as Ctrl-C does: the
    fixtures' teardown runs and stops every runtime, instead of the process dying on the spot."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


@dataclass
class Runtime:
    base: str
    db: Database
    issuer: LocalIssuer
    output: Path
    env: dict[str, str]
    logs: Path
    process: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def request(
        self, method: str, path: str, token: str | None, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def start_worker(self) -> None:
        """One more processor, as `make run` starts them (for a runtime started with PQ_WORKERS=0): with
        the simulator's gateway settings `make run` gives its own processors."""
        env = dict(self.env)
        gateway_env(env, self.base)
        with open(self.logs / f"test-processor-{len(self.workers) + 1}.log", "ab") as out:
            self.workers.append(
                subprocess.Popen(
                    # local.child: the worker dies with this test process, however that ends.
                    [sys.executable, "-m", "local.child", "local.workers", "processor"],
                    env=env | {"PQ_SUPERVISOR_PID": str(os.getpid())},
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Stop a runtime as an operator would, with SIGTERM (SIGINT is ignored in a background job,
    `make test &`); if it does not stop in time, kill its whole process group, children included."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def spawn_runtime(env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    """`python -m local.run` in a session of its own: its children are in its process group, so
    stop() can take them all, and a Ctrl-C at the test's terminal reaches only pytest (whose
    teardown then stops the runtime)."""
    with open(output, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "local.run"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def runtime_env(database_url: str, data_dir: Path, **settings: str) -> dict[str, str]:
    env = os.environ | {
        "DATABASE_URL": database_url,
        "PQ_DATA_DIR": str(data_dir),
        "PQ_API_PORT": str(_free_port()),
        "PQ_GATEWAY_SIM_PORT": str(_free_port()),
        "PQ_WORKERS": "2",
        "PQ_API_WORKERS": "2",
        "PYTHONPATH": str(ROOT),
    }
    return env | settings


def wait_until_running(proc: subprocess.Popen[bytes], output: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while "Payment Queue is running" not in output.read_text():
        assert proc.poll() is None, output.read_text()
        assert time.monotonic() < deadline, output.read_text()
        time.sleep(0.2)


@contextmanager
def launch(database_url: str, data_dir: Path, **settings: str) -> Iterator[Runtime]:
    """Start `python -m local.run` with PQ_* overrides; wait for its banner; stop it afterwards."""
    env = runtime_env(database_url, data_dir, **settings)
    output = data_dir / "run.out"
    proc = spawn_runtime(env, output)
    rt: Runtime | None = None
    try:
        wait_until_running(proc, output)
        local = LocalSettings(data_dir=data_dir)
        issuer = LocalIssuer(data_dir / "jwt" / "signing-key.pem", local.jwt_issuer, local.jwt_audience)
        db = Database(lambda: database_url, connect_timeout_s=5)
        rt = Runtime(f"http://127.0.0.1:{env['PQ_API_PORT']}", db, issuer, output, env, data_dir / "logs", proc)
        yield rt
        db.close()
    finally:
        for worker in rt.workers if rt else []:
            worker.send_signal(signal.SIGTERM)
        for worker in rt.workers if rt else []:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
        stop(proc)
    assert "stopped" in output.read_text()


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    with launch(database_url, tmp_path) as rt:
        yield rt


NO_BROWSER = (
    f"browser tests need Chromium and found none (PQ_CHROMIUM, or {', '.join(CHROMIUM_CANDIDATES)} on PATH): "
    "apt-get install chromium (Debian), or set PQ_CHROMIUM to the browser's path"
)


def find_chromium() -> str | None:
    if named := os.environ.get("PQ_CHROMIUM"):
        return named if Path(named).is_file() else None
    for name in CHROMIUM_CANDIDATES:
        if found := shutil.which(name):
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright; the tests fail, naming it, when there is none.

    Module-scoped: Playwright's sync API keeps an event loop running in this thread while it is open,
    and every later test that calls asyncio.run() would fail on it."""
    executable = find_chromium()
    require_tool(executable is not None, NO_BROWSER)
    assert executable is not None
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()

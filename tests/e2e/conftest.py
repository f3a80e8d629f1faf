"""The local runtime (`python -m local.run`) on a free port against a fresh database, and a
headless Chromium for the page tests."""

from __future__ import annotations

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
from shared.db import Database

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


@dataclass
class Runtime:
    base: str
    db: Database
    issuer: LocalIssuer
    output: Path
    env: dict[str, str]
    logs: Path
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
        """One more processor, as `make run` starts them (for a runtime started with PQ_WORKERS=0)."""
        with open(self.logs / f"test-processor-{len(self.workers) + 1}.log", "ab") as out:
            self.workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "local.workers", "processor"],
                    env=self.env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def launch(database_url: str, data_dir: Path, **settings: str) -> Iterator[Runtime]:
    """Start `python -m local.run` with PQ_* overrides; wait for its banner; stop it afterwards."""
    port = _free_port()
    env = os.environ | {
        "DATABASE_URL": database_url,
        "PQ_DATA_DIR": str(data_dir),
        "PQ_API_PORT": str(port),
        "PQ_WORKERS": "2",
        "PQ_API_WORKERS": "2",
        "PYTHONPATH": str(ROOT),
    }
    env |= settings
    output = data_dir / "run.out"
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "local.run"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    rt: Runtime | None = None
    try:
        deadline = time.monotonic() + 90
        while "Payment Queue is running" not in output.read_text():
            assert proc.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
        local = LocalSettings(data_dir=data_dir)
        issuer = LocalIssuer(data_dir / "jwt" / "signing-key.pem", local.jwt_issuer, local.jwt_audience)
        db = Database(lambda: database_url, connect_timeout_s=5)
        rt = Runtime(f"http://127.0.0.1:{port}", db, issuer, output, env, data_dir / "logs")
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
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
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


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright; the tests skip, saying why, when there is none."""
    executable = find_chromium()
    if executable is None:
        pytest.skip(NO_BROWSER)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()

"""Every example README.md and `make run`'s start-up message print works as printed: each pays an order of
its own, so they work in any order, on a fresh system and again after a restart (the simulator keeps the
gateway orders the saved checkouts name)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, Runtime, launch

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"
# The address the README's examples call: `make run`'s default.
README_API = "http://127.0.0.1:8000"


def readme_examples(base: str) -> list[str]:
    """The README's shell blocks that call the local API, pointed at this runtime."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    return [block.replace(README_API, base) for block in blocks if README_API in block]


def banner_examples(output: str) -> list[str]:
    """The commands of the latest start-up message: each paragraph that is a curl command (comment lines
    aside). The poll example names a JOB_ID for the reader to fill in, so it is a template, not a command."""
    latest = output[output.rindex("Payment Queue is running") :]
    commands = []
    for paragraph in re.split(r"\n[ \t]*\n", latest):
        lines = [line for line in paragraph.splitlines() if not line.lstrip().startswith("#")]
        if lines and lines[0].startswith("curl") and "JOB_ID" not in paragraph:
            commands.append("\n".join(lines))
    return commands


@pytest.fixture
def make_env(tmp_path: Path) -> dict[str, str]:
    """`make` as on a machine where `make run` installed the dependencies: the shared virtualenv seen
    through a directory whose install marker is current (so no example reinstalls anything)."""
    venv = tmp_path / "venv"
    venv.mkdir()
    real = ROOT / ".venv"
    for entry in real.iterdir():
        if not entry.name.startswith("."):
            (venv / entry.name).symlink_to(entry.resolve())
    (venv / ".run-deps").touch()
    return {"MAKEFLAGS": f" -- VENV={venv}"}


def run(command: str, env: dict[str, str]) -> dict[str, Any]:
    """One example as a reader pastes it into bash; its answer is the JSON object it prints last."""
    done = subprocess.run(
        ["bash", "-c", command], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in answer, (command, answer)
    return answer


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


@pytest.fixture
def started(database_url: str, data_dir: Path) -> Iterator[Runtime]:
    with launch(database_url, data_dir) as rt:
        yield rt


def start_up_message(rt: Runtime, timeout_s: float = 60) -> str:
    """The whole start-up message: the gateway part follows once the demo checkouts are open."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = rt.output.read_text()
        if "Gateway checkouts opened" in text[text.rindex("Payment Queue is running") :]:
            return text
        assert time.monotonic() < deadline, text
        time.sleep(0.2)


def run_all(rt: Runtime, make_env: dict[str, str], *, reverse: bool) -> list[dict[str, Any]]:
    env = os.environ | rt.env | make_env
    examples = readme_examples(rt.base) + banner_examples(start_up_message(rt))
    assert len(examples) >= 6, examples  # the README's two; the banner's wallet, operator and two gateways
    return [run(command, env) for command in (reversed(examples) if reverse else examples)]


def test_every_readme_and_banner_example_works_in_any_order_and_after_a_restart(
    database_url: str, data_dir: Path, make_env: dict[str, str]
) -> None:
    # Given a fresh system: every example, in the order printed, each on its own order
    with launch(database_url, data_dir) as rt:
        first = run_all(rt, make_env, reverse=False)
        jobs = [a["job_id"] for a in first if "job_id" in a]
        assert len(jobs) == len(set(jobs)) >= 4

    # When it is restarted on the same data, Then every example (the new start-up message's) works
    # again, the other way round, and none lands on an order an earlier one paid
    with launch(database_url, data_dir) as rt:
        second = run_all(rt, make_env, reverse=True)
        again = [a["job_id"] for a in second if "job_id" in a]
        assert len(again) == len(set(again)) >= 4 and not set(again) & set(jobs)
        assert rt.db.fetch_all("SELECT order_id FROM payment_jobs GROUP BY order_id HAVING count(*) > 1", ()) == []

        # And a checkout opened before the restart (the README's) is still payable at the gateway
        (opened,) = [a for a in first if "checkout_id" in a]
        sim = f"http://127.0.0.1:{rt.env['PQ_GATEWAY_SIM_PORT']}"
        paid = run(
            f"curl -sS -X POST {sim}/_sim/razorpay/checkout -H 'Content-Type: application/json' "
            f"""-d '{json.dumps({"order_id": opened["razorpay"]["order_id"], "outcome": "success"})}'""",
            os.environ | rt.env,
        )
        status, job = rt.request(
            "POST",
            "/v1/payments",
            rt.issuer.issue("demo-user-1"),
            {"order_id": opened["order_id"], "method": "razorpay"} | paid,
            {"Idempotency-Key": "after-restart"},
        )
        assert status in (200, 202), job


def make(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", *args], env=env, cwd=ROOT, capture_output=True, text=True, check=False)


def test_make_orders_and_make_topup_give_an_example_its_own_order_and_money(
    started: Runtime, make_env: dict[str, str]
) -> None:
    env = os.environ | started.env | make_env

    # When make orders is asked for three orders of a shopper, and make topup for Rs 1,000
    made = make(env, "orders", "USER=demo-user-2", "N=3")
    topped = make(env, "topup", "USER=demo-user-2", "AMOUNT=100000")

    # Then three new pending orders of theirs are printed, one id a line, and the wallet has the money
    ids = [int(line) for line in made.stdout.split()]
    assert made.returncode == 0 and len(set(ids)) == 3, made.stderr
    rows = started.db.fetch_all("SELECT user_id, order_status FROM orders WHERE id = ANY(%s)", (ids,))
    assert rows == [{"user_id": "demo-user-2", "order_status": "pending"}] * 3
    assert topped.returncode == 0, topped.stderr
    assert started.db.fetch_one(
        """SELECT w.balance_paise, t.note FROM wallets w JOIN wallet_transactions t ON t.wallet_id = w.id
            WHERE w.user_id = 'demo-user-2' ORDER BY t.id DESC LIMIT 1"""
    ) == {"balance_paise": 600_000, "note": "make topup"}


def test_make_psql_takes_a_statement_with_double_quotes(started: Runtime, make_env: dict[str, str]) -> None:
    env = os.environ | started.env | make_env

    done = make(env, "psql", """SQL=SELECT count(*) AS "the quantity" FROM orders""")

    assert done.returncode == 0, done.stderr
    assert "the quantity" in done.stdout

"""End to end: `python -m local.run` over HTTP, with the database checked afterwards."""

from __future__ import annotations

import json
import re
import subprocess
import time
from typing import Any

import pytest

from tests.e2e.conftest import Runtime

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

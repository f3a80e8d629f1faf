"""docs/integration.md as written: its SQL adopts the queue into the example shop schema (not ours),
and its Python -- the shop backend's calls, the shopper's payment, the signed webhook receiver -- runs
against the local API, which delivers the payment's event to that receiver."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shared.routes import MERCHANT_SCOPE
from tests.e2e.conftest import ROOT, launch

pytestmark = pytest.mark.e2e

GUIDE = ROOT / "docs" / "integration.md"
SECRET = "guide-webhook-secret"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)


@contextlib.contextmanager
def receiver(namespace: dict[str, Any], answers: list[int]) -> Iterator[str]:
    """An HTTP server for the queue's webhook that hands each delivery to the guide's PaymentEvents
    (once its block has run; before, a 503 the notifier retries), noting what it answered."""

    class Delegate(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def send_response(self, code: int, message: str | None = None) -> None:
            answers.append(code)
            super().send_response(code, message)

        def do_POST(self) -> None:
            guide = namespace.get("PaymentEvents")
            if guide is None:
                self.send_response(503)
                self.end_headers()
                return
            guide.do_POST(self)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Delegate)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/payment-events"
    finally:
        server.shutdown()
        server.server_close()


def post(url: str, body: bytes, signature: str) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"X-PQ-Signature": signature})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_the_integration_guide_runs_as_written_against_the_local_api(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace: dict[str, Any] = {"__name__": "integration_guide"}
    answers: list[int] = []
    with (
        receiver(namespace, answers) as url,
        launch(database_url, tmp_path, PQ_WEBHOOK_URL=url, PQ_WEBHOOK_SECRET=SECRET) as rt,
    ):
        # Given the example shop's own schema, adopted by the guide's migration and views
        sql = blocks("sql")
        assert len(sql) == 3
        with rt.db.transaction() as cur:
            for statement in sql:
                cur.execute(statement)

        # When the guide's Python runs: the receiver, the backend's calls and the shopper's payment
        for name, value in {
            "PQ_API": rt.base,
            "BACKEND_TOKEN": rt.issuer.issue("shop-backend", scopes=(MERCHANT_SCOPE,)),
            "SHOPPER_TOKEN": rt.issuer.issue("auth0|ana"),
            "DATABASE_URL": database_url,
            "PQ_WEBHOOK_SECRET": SECRET,
        }.items():
            monkeypatch.setenv(name, value)
        python = blocks("python")
        assert len(python) == 8
        for code in python:
            exec(compile(code, str(GUIDE), "exec"), namespace)
        order = namespace["order"]

        # Then the payment's event reached the guide's receiver, verified, and was kept once
        deadline = time.monotonic() + 30
        while not (kept := rt.db.fetch_all("SELECT type, order_id FROM shop.payment_events", ())):
            assert time.monotonic() < deadline, answers
            time.sleep(0.2)
        assert kept == [{"type": "PaymentSucceeded", "order_id": order["order_id"]}]
        assert 401 not in answers and 204 in answers

        # And the shop's own names show the sale: stock by SKU, the payment in rupees, the wallet
        assert rt.db.fetch_all("SELECT sku, on_hand FROM shop.catalog ORDER BY sku", ()) == [
            {"sku": "MUG", "on_hand": 14},
            {"sku": "TEE-M", "on_hand": 38},
        ]
        paid = rt.db.fetch_one("SELECT status, amount_rupees, method FROM shop.customer_payments", ())
        assert paid is not None
        assert (paid["status"], float(paid["amount_rupees"]), paid["method"]) == ("succeeded", 1247.50, "wallet")
        assert rt.db.fetch_one("SELECT balance_paise FROM wallets WHERE user_id = 'auth0|ana'") == {
            "balance_paise": 250_000 - 124_750
        }

        # And the shop's old restocking statement still works, through the view, adding units
        rt.db.execute("UPDATE shop.catalog SET on_hand = on_hand + 5 WHERE sku = 'MUG'")
        assert rt.db.fetch_one("SELECT on_hand FROM shop.catalog WHERE sku = 'MUG'") == {"on_hand": 19}

        # And the receiver refuses a forged delivery and keeps a copy of a real one once
        body = json.dumps(
            {"id": "00000000-0000-4000-8000-0000000000aa", "type": "PaymentFailed", "data": {"order_id": 1}}
        ).encode()
        t = int(time.time())

        def signed(secret: str, at: int) -> str:
            return f"t={at},v1=" + hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()

        good = signed(SECRET, t)
        assert post(url, body, signed("another-secret", t)) == 401
        assert post(url, body, signed(SECRET, t - 3600)) == 401  # an old signature: a replay
        assert [post(url, body, good), post(url, body, good)] == [204, 204]
        assert rt.db.fetch_one("SELECT count(*) AS n FROM shop.payment_events WHERE type = 'PaymentFailed'") == {"n": 1}

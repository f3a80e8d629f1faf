"""`make run`'s gateway part: the simulator's address and credentials, and gateway-paid demo orders.

The credentials below exist only between the local workers and the loopback simulator. Set
PQ_RAZORPAY_BASE_URL / PQ_RAZORPAY_KEY_ID / ... (and PQ_CASHFREE_*) to point the local run at a
real sandbox instead; the simulator still starts, unused.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass

from local.auth import LocalIssuer
from local.seed import ensure_pending_order
from shared.db import Database

SIM_DEFAULTS = {
    "PQ_RAZORPAY_KEY_ID": "rzp_test_local",
    "PQ_RAZORPAY_KEY_SECRET": "local_razorpay_secret",
    "PQ_CASHFREE_CLIENT_ID": "cf_test_local",
    "PQ_CASHFREE_CLIENT_SECRET": "local_cashfree_secret",
}
DEMO = (("demo-user-2", "razorpay"), ("demo-user-3", "cashfree"))


def gateway_env(env: dict[str, str]) -> str:
    """Point both gateways at the simulator (unless configured otherwise); return its base URL.

    The port is PQ_GATEWAY_SIM_PORT's, never another: the supervisor refuses a busy one.
    """
    port = int(env.get("PQ_GATEWAY_SIM_PORT", "8100"))
    env["PQ_GATEWAY_SIM_PORT"] = str(port)
    url = f"http://127.0.0.1:{port}"
    env.setdefault("PQ_RAZORPAY_BASE_URL", url)
    env.setdefault("PQ_CASHFREE_BASE_URL", url + "/pg")
    for name, value in SIM_DEFAULTS.items():
        env.setdefault(name, value)
    return url


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(  # noqa: S310 (loopback simulator)
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        answer: dict[str, object] = json.loads(response.read())
    return answer


@dataclass(frozen=True)
class DemoPayment:
    user_id: str
    method: str
    order_id: int
    ref_field: str
    ref: str


def seed_gateway_payments(db: Database, sim_url: str, timeout_s: float = 30.0) -> list[DemoPayment]:
    """A pending order per demo gateway user, paid at the simulator's 'checkout' for its total."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(sim_url + "/_sim/stats", timeout=1).close()  # noqa: S310
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway simulator did not come up at {sim_url}") from None
            time.sleep(0.2)
    payments = []
    for user_id, method in DEMO:
        order_id = ensure_pending_order(db, user_id)
        row = db.fetch_one("SELECT total_paise, currency FROM orders WHERE id = %s", (order_id,))
        assert row is not None
        if method == "razorpay":
            made = _post(
                sim_url + "/_sim/razorpay/payments", {"amount": row["total_paise"], "currency": row["currency"]}
            )
            payments.append(DemoPayment(user_id, method, order_id, "razorpay_payment_id", str(made["id"])))
        else:
            made = _post(
                sim_url + "/_sim/cashfree/orders",
                {"order_amount": row["total_paise"] / 100, "order_currency": row["currency"]},
            )
            payments.append(DemoPayment(user_id, method, order_id, "cashfree_order_id", str(made["order_id"])))
    return payments


def banner(base: str, sim_url: str, issuer: LocalIssuer, payments: list[DemoPayment]) -> str:
    lines = [f"Gateway-paid demo orders (the simulator on {sim_url} took the money; see {sim_url}/_sim/stats):", ""]
    for p in payments:
        body = json.dumps({"order_id": p.order_id, "method": p.method, p.ref_field: p.ref})
        lines += [
            f"curl -sS -X POST {base}/v1/payments \\",
            f"  -H 'Authorization: Bearer {issuer.issue(p.user_id)}' \\",
            f"  -H 'Idempotency-Key: demo-{p.method}-{p.order_id}' \\",
            "  -H 'Content-Type: application/json' \\",
            f"  -d '{body}'",
            "",
        ]
    return "\n".join(lines)

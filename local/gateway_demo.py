"""`make run`'s gateway part: the simulator's address, credentials and webhook URLs, and demo orders
paid through the checkout flow (POST /v1/checkouts, the simulated gateway checkout).

The credentials below exist only between the local workers and the loopback simulator. Set
PQ_RAZORPAY_BASE_URL / PQ_RAZORPAY_KEY_ID / ... (and PQ_CASHFREE_*) to point the local run at a
real sandbox instead; the simulator still starts, unused.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from local.auth import LocalIssuer
from local.gateway_sim_browser import CASHFREE_SCRIPT, RAZORPAY_SCRIPT
from local.seed import demo_orders
from shared.db import Database

SIM_DEFAULTS = {
    "PQ_RAZORPAY_KEY_ID": "rzp_test_local",
    "PQ_RAZORPAY_KEY_SECRET": "local_razorpay_secret",
    "PQ_RAZORPAY_WEBHOOK_SECRET": "local_razorpay_webhook_secret",
    "PQ_CASHFREE_CLIENT_ID": "cf_test_local",
    "PQ_CASHFREE_CLIENT_SECRET": "local_cashfree_secret",
}
DEMO = (("demo-user-2", "razorpay"), ("demo-user-3", "cashfree"))


def gateway_env(env: dict[str, str], api_url: str | None = None) -> str:
    """Point both gateways at the simulator (unless configured otherwise), and its webhooks at the
    local API's webhook routes when api_url is given; return its base URL.

    The port is PQ_GATEWAY_SIM_PORT's, never another: the supervisor refuses a busy one.
    """
    port = int(env.get("PQ_GATEWAY_SIM_PORT", "8100"))
    env["PQ_GATEWAY_SIM_PORT"] = str(port)
    url = f"http://127.0.0.1:{port}"
    env.setdefault("PQ_RAZORPAY_BASE_URL", url)
    env.setdefault("PQ_CASHFREE_BASE_URL", url + "/pg")
    # The browser's side of each checkout: the simulator's stand-in scripts, unless a real gateway is named.
    if env["PQ_RAZORPAY_BASE_URL"] == url:
        env.setdefault("PQ_RAZORPAY_CHECKOUT_SCRIPT_URL", url + RAZORPAY_SCRIPT)
    if env["PQ_CASHFREE_BASE_URL"] == url + "/pg":
        env.setdefault("PQ_CASHFREE_SDK_URL", url + CASHFREE_SCRIPT)
    if api_url:  # what each gateway's dashboard would hold: our webhook URLs
        env.setdefault("PQ_SIM_RAZORPAY_WEBHOOK_URL", f"{api_url}/v1/webhooks/razorpay")
        env.setdefault("PQ_SIM_CASHFREE_WEBHOOK_URL", f"{api_url}/v1/webhooks/cashfree")
    for name, value in SIM_DEFAULTS.items():
        env.setdefault(name, value)
    return url


def _post(url: str, body: dict[str, object], headers: dict[str, str] | None = None) -> dict[str, object]:
    request = urllib.request.Request(  # noqa: S310 (loopback simulator)
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        answer: dict[str, object] = json.loads(response.read())
    return answer


@dataclass(frozen=True)
class DemoCheckout:
    user_id: str
    method: str
    order_id: int
    gateway_order_id: str  # what the gateway's checkout page is opened with


def _wait_for(sim_url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(sim_url + "/_sim/stats", timeout=1).close()  # noqa: S310
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway simulator did not come up at {sim_url}") from None
            time.sleep(0.2)


def open_demo_checkouts(
    db: Database, sim_url: str, api_url: str, issuer: LocalIssuer, timeout_s: float = 30.0
) -> list[DemoCheckout]:
    """A checkout per demo gateway user's pending order, opened through our API (POST /v1/checkouts):
    the gateway order exists at the simulator; paying it is left to the person running the demo. One the API
    refuses (the order already being paid, or sold out, by whoever uses the running system first) is left
    out with a line saying why: the demo's convenience never stops the run."""
    _wait_for(sim_url, timeout_s)
    checkouts = []
    for user_id, method in DEMO:
        (order_id,) = demo_orders(db, user_id, 1)
        try:
            checkout = _post(
                api_url + "/v1/checkouts",
                {"order_id": order_id, "method": method},
                {"Authorization": f"Bearer {issuer.issue(user_id)}"},
            )
        except urllib.error.HTTPError as refused:
            code = json.loads(refused.read() or b"{}").get("error", {}).get("code")
            print(f"no {method} demo checkout for {user_id}'s order {order_id}: {refused.code} {code}", file=sys.stderr)
            continue
        gateway = checkout[method]
        assert isinstance(gateway, dict)
        checkouts.append(DemoCheckout(user_id, method, order_id, str(gateway["order_id"])))
    return checkouts


def banner(base: str, sim_url: str, issuer: LocalIssuer, checkouts: list[DemoCheckout]) -> str:
    """Each gateway demo as one command that pays its own order at the simulated gateway, then sends
    what the gateway's checkout hands the page to POST /v1/payments, as the shop's page would."""
    lines = [
        f"Gateway checkouts opened at the simulator ({sim_url}/_sim/stats). Each command pays its order in the",
        "simulated gateway checkout, then sends the payment as the shop's page would (paying at the gateway alone",
        "also pays the order: its webhook makes the job, as when a shopper closes the tab). The progress page",
        "pays through the same checkouts in a browser.",
        "",
    ]
    for c in checkouts:
        pay = json.dumps({"order_id": c.gateway_order_id, "outcome": "success"})
        at_gateway = f"curl -sS{'f' if c.method == 'cashfree' else ''} -X POST {sim_url}/_sim/{c.method}/checkout"
        to_api = [
            f"curl -sS -X POST {base}/v1/payments \\",
            f"  -H 'Authorization: Bearer {issuer.issue(c.user_id)}' \\",
            f"  -H 'Idempotency-Key: demo-{c.method}-{c.order_id}' \\",
        ]
        lines.append(f"# {c.user_id}'s order {c.order_id} by {c.method.capitalize()}")
        if c.method == "razorpay":
            # What Checkout's handler receives -- the signed order, payment and signature -- with our order.
            merge = f"{{'order_id': {c.order_id}, 'method': 'razorpay'}} | json.load(sys.stdin)"
            lines += [
                f"{at_gateway} -H 'Content-Type: application/json' -d '{pay}' \\",
                f'| python3 -c "import json, sys; print(json.dumps({merge}))" \\',
                f"| {to_api[0]}",
                *to_api[1:],
                "  -H 'Content-Type: application/json' -d @-",
                "",
            ]
        else:  # Cashfree: we know the checkout's order, so the page sends only the order and the method
            body = json.dumps({"order_id": c.order_id, "method": "cashfree"})
            lines += [
                f"{at_gateway} -H 'Content-Type: application/json' -d '{pay}' && echo && \\",
                *to_api,
                f"  -H 'Content-Type: application/json' -d '{body}'",
                "",
            ]
    return "\n".join(lines)

"""What the simulator serves to a browser: stand-ins for the gateways' checkout scripts, with the
calling shapes of the real ones, and the "gateway's checkout page" they open in a frame, where the
person running the demo chooses how the payment ends (local/gateway_sim_pages/).

    /_sim/js/razorpay-checkout.js   for https://checkout.razorpay.com/v1/checkout.js (new Razorpay(options).open())
    /_sim/js/cashfree.js            for https://sdk.cashfree.com/js/v3/cashfree.js (Cashfree({mode}).checkout(...))
    /_sim/checkout.html             the checkout page (its script and stylesheet beside it)
    /_sim/checkout-summary          what that page shows, refused as the gateway refuses a checkout
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

PAGES = Path(__file__).resolve().with_name("gateway_sim_pages")
_JS = "text/javascript; charset=utf-8"
# Route -> (files joined in order, content type). Each stand-in script is the shared frame code
# (overlay.js) followed by its gateway's part, in one strict-mode function scope.
ASSETS: dict[str, tuple[tuple[str, ...], str]] = {
    "/_sim/js/razorpay-checkout.js": (("overlay.js", "razorpay.js"), _JS),
    "/_sim/js/cashfree.js": (("overlay.js", "cashfree.js"), _JS),
    "/_sim/js/checkout-page.js": (("checkout-page.js",), _JS),
    "/_sim/checkout.html": (("checkout.html",), "text/html; charset=utf-8"),
    "/_sim/checkout.css": (("checkout.css",), "text/css; charset=utf-8"),
}
RAZORPAY_SCRIPT = "/_sim/js/razorpay-checkout.js"
CASHFREE_SCRIPT = "/_sim/js/cashfree.js"


@cache
def asset(route: str) -> tuple[bytes, str] | None:
    """(body, content type) of a browser asset, or None for any other route."""
    found = ASSETS.get(route)
    if found is None:
        return None
    names, content_type = found
    text = "\n".join((PAGES / name).read_text(encoding="utf-8") for name in names)
    if len(names) > 1:
        text = f'(() => {{\n"use strict";\n{text}\n}})();\n'
    return text.encode(), content_type


def asset_headers(route: str) -> dict[str, str]:
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if route.endswith(".html"):
        # The checkout page runs only its own files, and talks only to the simulator.
        headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data:; base-uri 'none'"
    return headers


def checkout_summary(
    razorpay: Any, cashfree: Any, razorpay_key_id: str, query: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """What the checkout page shows before the shopper pays, or why it cannot be paid (a wrong key,
    an unknown, paid or inactive order), as the real checkouts refuse to open."""
    gateway = query.get("gateway")
    if gateway == "razorpay":
        order = razorpay.orders.get(query.get("order_id", ""))
        if query.get("key") != razorpay_key_id:
            return 400, {"error": "The api key provided is invalid"}
        if order is None:
            return 404, {"error": "The id provided does not exist"}
        if order["status"] == "paid":
            return 400, {"error": "Order has already been paid"}
        return 200, {"order_id": order["id"], "amount_paise": order["amount"], "currency": order["currency"]}
    if gateway == "cashfree":
        order = cashfree.order_by_session(query.get("payment_session_id", ""))
        if order is None:
            return 404, {"error": "payment_session_id is not valid"}
        if order["order_status"] != "ACTIVE":
            return 400, {"error": "Order is no longer active or has expired"}
        amount = int(Decimal(str(order["order_amount"])) * 100)
        return 200, {"order_id": order["order_id"], "amount_paise": amount, "currency": order["order_currency"]}
    return 400, {"error": "gateway must be razorpay or cashfree"}

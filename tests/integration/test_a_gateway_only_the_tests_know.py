"""Adding a gateway is its package alone: TestPay (tests/integration/testpay), registered by the test,
takes a checkout, a payment, a refund and a webhook end to end through the services as they are.

What the test does besides registering it: the schema's method CHECKs list the gateways of this release
(held equal to the registry by test_gateway_registry.py), so this test's own database is widened to take
TestPay; and the request models' method Literals name this release's gateways, so the requests are built
unvalidated (model_construct), as the handlers would once TestPay's name is in shared/gateways/__init__.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from local.seed import SeedPlan, seed
from shared.bootstrap import App, bootstrap
from shared.domain import CheckoutRequest, PaymentRequest
from shared.errors import DomainError
from shared.gateways.registry import GATEWAYS
from shared.http import http_status
from shared.services.checkout import open_checkout, take_token
from shared.services.intake import accept_payment
from shared.services.reconcile import reconcile
from shared.services.webhooks import receive_webhook
from shared.settings import Settings
from tests.integration import testpay
from tests.integration.gateway_helpers import drain, jobs, no_violations, order_of, order_status


def widen_method_checks(app: App, name: str) -> None:
    """Every CHECK that lists the gateways takes name too (this test's database only)."""
    for check in app.db.fetch_all(
        """SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS def
             FROM pg_constraint WHERE contype = 'c' AND pg_get_constraintdef(oid) LIKE '%''cashfree''::text%'"""
    ):
        widened = check["def"].replace("'cashfree'::text", f"'cashfree'::text, '{name}'::text")
        app.db.execute(f"ALTER TABLE {check['tbl']} DROP CONSTRAINT {check['conname']}, ADD {widened}")


@pytest.fixture
def tp_app(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setitem(GATEWAYS, testpay.NAME, testpay.PACKAGE)
    built = bootstrap(settings)
    widen_method_checks(built, testpay.NAME)
    seed(built.db, SeedPlan(users=3))
    yield built
    built.db.close()


def gateway(app: App) -> testpay.TestPay:
    found = app.gateways[testpay.NAME]
    assert isinstance(found, testpay.TestPay)
    return found


def checkout(app: App, user_id: str) -> dict[str, Any]:
    order_id = order_of(app.db, user_id)["id"]
    status, view = open_checkout(app, user_id, CheckoutRequest.model_construct(order_id=order_id, method=testpay.NAME))
    assert status == 201
    return view


def pay_request(view: dict[str, Any]) -> PaymentRequest:
    return PaymentRequest.model_construct(order_id=view["order_id"], method=testpay.NAME)


def test_a_gateway_registered_by_the_test_takes_a_checkout_a_payment_a_refund_and_a_webhook(tp_app: App) -> None:
    app, tp = tp_app, gateway(tp_app)
    assert testpay.NAME in app.methods()

    # Given three checkouts at TestPay, each paid there: the first shopper sends the payment, the second's
    # order is cancelled before its job runs, the third closes the tab (only the gateway's webhook says so)
    paid, cancelled, tab_closed = (checkout(app, f"demo-user-{n}") for n in (1, 2, 3))
    assert paid["testpay"] == {"order_id": paid["testpay"]["order_id"]}
    for view in (paid, cancelled, tab_closed):
        tp.pay(view["testpay"]["order_id"])
    accept_payment(app, "demo-user-1", "k-paid", pay_request(paid))
    accept_payment(app, "demo-user-2", "k-cancelled", pay_request(cancelled))
    app.db.execute("UPDATE orders SET order_status = 'cancelled' WHERE id = %s", (cancelled["order_id"],))
    raw, headers = tp.signed({"event": "order.paid", "order_id": tab_closed["testpay"]["order_id"]})

    # When the webhook comes and the queue runs
    assert receive_webhook(app, testpay.NAME, raw, headers) == {"received": True}
    drain(app)

    # Then the paid and the webhook's orders are fulfilled, the cancelled one's money is on its way back
    assert sorted((j["status"], j["reason"]) for j in jobs(app.db)) == [
        ("failed", "order_not_payable"),
        ("succeeded", None),
        ("succeeded", None),
    ]
    assert order_status(app, int(paid["order_id"])) == "paid"
    assert order_status(app, int(tab_closed["order_id"])) == "paid"
    refund = app.db.fetch_one("SELECT method, state, amount_paise FROM gateway_refunds")
    assert refund == {"method": testpay.NAME, "state": "pending", "amount_paise": cancelled["amount_paise"]}

    # And when TestPay settles the refund and the sweeper follows it, the money is back
    tp.settle_refunds()
    app.db.execute("UPDATE gateway_refunds SET next_check_at = now()")
    assert reconcile(app)["refunds_settled"] == 1
    assert app.db.fetch_one("SELECT state FROM gateway_refunds") == {"state": "succeeded"}
    # Every request took a token of TestPay's own buckets, from its published limits
    buckets = app.db.fetch_all("SELECT gateway FROM gateway_rate_limits WHERE gateway LIKE 'testpay.%' ORDER BY 1")
    assert [b["gateway"] for b in buckets] == ["testpay.read", "testpay.write"]
    no_violations(app)


def test_a_forged_webhook_of_a_registered_gateway_is_refused(tp_app: App) -> None:
    # Given a TestPay webhook whose body was changed after signing
    raw, headers = gateway(tp_app).signed({"event": "order.paid", "order_id": "x"})

    # When it is received, then it is 401 and nothing is recorded
    with pytest.raises(DomainError) as refused:
        receive_webhook(tp_app, testpay.NAME, raw + b" ", headers)
    assert (http_status(refused.value), refused.value.code) == (401, "webhook_signature_invalid")
    assert tp_app.db.fetch_one("SELECT count(*) AS n FROM gateway_webhook_events") == {"n": 0}


def test_the_sweeper_settles_a_checkout_only_the_gateway_knows_is_paid_once_it_has_a_token(tp_app: App) -> None:
    # Given a TestPay checkout paid at the gateway with no payment request and no webhook, due for a look,
    # and TestPay's read bucket empty (one request a minute planned, that one spent)
    app, tp = tp_app, gateway(tp_app)
    view = checkout(app, "demo-user-1")
    tp.pay(view["testpay"]["order_id"])
    object.__setattr__(app.settings, "gateway_limits_per_min", {"testpay.read": 1.0})
    take_token(app, testpay.NAME, "read")
    app.db.execute("UPDATE gateway_checkouts SET next_check_at = now()")

    # When the sweeper runs, then its pass stops at the empty bucket: nothing settled, nothing raised
    assert reconcile(app)["checkouts_reconciled"] == 0
    assert jobs(app.db) == []

    # And when the bucket has tokens again, the next pass creates the job that pays the order
    object.__setattr__(app.settings, "gateway_limits_per_min", {})
    app.db.execute("UPDATE gateway_rate_limits SET tokens = 10 WHERE gateway = 'testpay.read'")
    app.db.execute("UPDATE gateway_checkouts SET next_check_at = now()")
    assert reconcile(app)["checkouts_reconciled"] == 1
    drain(app)
    assert [(j["status"], j["method"]) for j in jobs(app.db)] == [("succeeded", testpay.NAME)]
    assert order_status(app, int(view["order_id"])) == "paid"

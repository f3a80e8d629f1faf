"""The simulator's /_sim routes over HTTP: what `make run`, the bench and the chaos suite drive."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import razorpay

from local.gateway_sim import SimConfig, Simulator, _knob, apply_knobs
from shared.gateway_signatures import verify_razorpay_checkout
from shared.gateways.cashfree.client import CashfreeGateway
from shared.gateways.razorpay.client import RazorpayGateway
from shared.ports import RefundState
from tests.contract.conftest import CASHFREE, RAZORPAY, Inbox, eventually


def _post(sim: Simulator, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    return _post_to(sim.url, path, body)


def _post_to(url: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _get(sim: Simulator, path: str) -> Any:
    with urllib.request.urlopen(sim.url + path, timeout=5) as response:
        return json.loads(response.read())


def test_knobs_keep_their_types_and_false_means_false() -> None:
    config = SimConfig()
    assert _knob(config.razorpay_auto_capture, "false") is False
    assert _knob(config.razorpay_auto_capture, "true") is True
    assert _knob(config.refund_settle_s, "0.5") == 0.5
    assert _knob(config.webhook_copies, "2") == 2
    # Lists: JSON from POST /_sim/config, a JSON array or comma-separated from PQ_SIM_<KNOB>
    assert _knob(config.razorpay_refund_outcomes, ["failed", "processed"]) == ["failed", "processed"]
    assert _knob(config.razorpay_refund_outcomes, "failed, processed") == ["failed", "processed"]
    assert _knob(config.cashfree_refund_outcomes, '["ONHOLD"]') == ["ONHOLD"]
    assert _knob(config.cashfree_refund_outcomes, "") == []


def test_a_bad_knob_is_refused_and_sets_nothing(sim: Simulator) -> None:
    for body in (
        {"razorpay_refund_outcomes": ["failed", "Processed"]},
        {"cashfree_refund_outcome": "FAILED"},
        {"razorpay_refund_outcome": "failed", "cashfree_limits": "unlimited"},
        {"razorpay_refund_outcome": "failed", "razorpay_refund_outcomez": ["failed"]},
        {"refund_settle_s": "soon"},
    ):
        status, answer = _post(sim, "/_sim/config", body)
        assert status == 400 and answer["error"], body
    assert (sim.config.razorpay_refund_outcome, sim.config.razorpay_refund_outcomes) == ("processed", [])
    assert apply_knobs(SimConfig(), {"razorpay_auth_release_s": "2.5", "cashfree_refund_outcomes": "ONHOLD"}) is None


def test_checkouts_late_successes_and_refund_settling_are_played_over_http(sim: Simulator, inbox: Inbox) -> None:
    rzp = RazorpayGateway(sim.url, lambda: RAZORPAY, timeout_s=2.0)
    cf = CashfreeGateway(sim.url + "/pg", lambda: CASHFREE, "2025-01-01", timeout_s=2.0)
    # Razorpay: a failed payment, authorised late; its checkout answer is what the page gets
    order = rzp.create_order(10_000, "INR", "pq-admin-1", {})
    status, failed = _post(sim, "/_sim/razorpay/checkout", {"order_id": order.order_id, "outcome": "failed"})
    assert status == 200 and "razorpay_signature" not in failed
    status, late = _post(sim, "/_sim/razorpay/late_authorize", {"payment_id": failed["razorpay_payment_id"]})
    assert status == 200 and late["payment"]["status"] == "authorized"
    status, paid = _post(sim, "/_sim/razorpay/checkout", {"order_id": order.order_id, "outcome": "success"})
    assert verify_razorpay_checkout(
        paid["razorpay_order_id"], paid["razorpay_payment_id"], paid["razorpay_signature"], RAZORPAY[1]
    )
    # Cashfree: an order that expired unpaid, then turned PAID; its refund put on hold, then settled
    cf_order = sim.create_cashfree_order(10_000, payment_status="NOT_ATTEMPTED")
    assert _post(sim, "/_sim/cashfree/order_status", {"order_id": cf_order, "order_status": "EXPIRED"})[0] == 200
    assert _post(sim, "/_sim/cashfree/checkout", {"order_id": cf_order, "outcome": "success"})[0] == 400
    assert _post(sim, "/_sim/cashfree/late_success", {"order_id": cf_order})[0] == 200
    assert cf.fetch_order(cf_order).status == "PAID"
    assert _post(sim, "/_sim/config", {"cashfree_refund_outcome": "ONHOLD"})[1]["cashfree_refund_outcome"] == "ONHOLD"
    cf.refund(cf_order, 10_000, "INR", "pqadminrefund1")
    time.sleep(0.15)
    assert cf.fetch_refund(cf_order, "pqadminrefund1").gateway_status == "ONHOLD"
    body = {"gateway": "cashfree", "order_id": cf_order, "refund_id": "pqadminrefund1", "status": "SUCCESS"}
    assert _post(sim, "/_sim/refund_status", body)[0] == 200
    assert cf.fetch_refund(cf_order, "pqadminrefund1").gateway_status == "SUCCESS"
    # The deliveries are listed, and one can be sent again
    assert sim.wait_webhooks()
    log = _get(sim, "/_sim/webhooks")
    assert {d["gateway"] for d in log} == {"razorpay", "cashfree"} and all(d["delivered"] for d in log)
    assert _post(sim, "/_sim/webhooks/replay", {"event_id": log[0]["event_id"]})[0] == 200
    assert _post(sim, "/_sim/webhooks/replay", {"event_id": "nope"})[0] == 404
    stats = _get(sim, "/_sim/stats")
    assert stats["webhooks_failed"] == 0 and stats["razorpay"]["orders_created"] == 1


def test_a_webhook_endpoint_that_fails_is_retried_then_counted(sim: Simulator) -> None:
    sim.config.razorpay_webhook_url = "http://127.0.0.1:9/unreachable"
    sim.config.webhook_retries = 1
    sim.config.webhook_retry_s = 0.01
    order = RazorpayGateway(sim.url, lambda: RAZORPAY, timeout_s=2.0).create_order(10_000, "INR", "pq-x", {})
    sim.razorpay_checkout(order.order_id, "failed")
    assert sim.wait_webhooks()
    (delivery,) = sim.webhooks.log()
    assert (delivery["attempts"], delivery["delivered"]) == (2, False)
    assert sim.stats()["webhooks_failed"] == 1


def test_the_ledger_holds_each_payments_money_in_paise_after_captures_and_refunds_of_every_kind(
    sim: Simulator,
) -> None:
    rzp = RazorpayGateway(sim.url, lambda: RAZORPAY, timeout_s=2.0)
    cf = CashfreeGateway(sim.url + "/pg", lambda: CASHFREE, "2025-01-01", timeout_s=2.0)
    # Given a captured Razorpay payment, one left authorised, one failed; and a paid Cashfree order
    order = rzp.create_order(10_000, "INR", "pq-ledger-1", {})
    paid = _post(sim, "/_sim/razorpay/checkout", {"order_id": order.order_id})[1]["razorpay_payment_id"]
    rzp.capture(paid, 10_000, "INR")
    other = rzp.create_order(5_000, "INR", "pq-ledger-2", {})
    authorized = _post(sim, "/_sim/razorpay/checkout", {"order_id": other.order_id})[1]["razorpay_payment_id"]
    _post(sim, "/_sim/razorpay/checkout", {"order_id": other.order_id, "outcome": "failed"})
    cf_order = sim.create_cashfree_order(10_000)
    # When the merchant refunds part of each on the dashboard, our first refund fails (is cancelled), and
    # our retry of it under a new reference goes through
    rzp_merchant = _post(sim, "/_sim/razorpay/merchant_refund", {"payment_id": paid, "amount": 2_500})
    cf_merchant = _post(sim, "/_sim/cashfree/merchant_refund", {"order_id": cf_order, "amount": 2_500})
    assert (rzp_merchant[0], cf_merchant[0]) == (200, 200)
    scripted = {"razorpay_refund_outcomes": ["failed"], "cashfree_refund_outcomes": ["CANCELLED"]}
    assert _post(sim, "/_sim/config", scripted)[0] == 200
    failed = rzp.refund(paid, 3_000, "INR", "pqledgerrefund1")
    cf.refund(cf_order, 3_000, "INR", "pqledgerrefund1")
    eventually(lambda: rzp.fetch_refund(paid, failed.refund_id).state is RefundState.FAILED)
    eventually(lambda: cf.fetch_refund(cf_order, "pqledgerrefund1").state is RefundState.FAILED)
    rzp.refund(paid, 3_000, "INR", "pqledgerrefund2")
    cf.refund(cf_order, 3_000, "INR", "pqledgerrefund2")

    # Then, once every refund has settled, the ledger is exact, in paise, one row per payment authorised
    def settled() -> dict[str, Any]:
        ledger = _get(sim, "/_sim/ledger")
        return {row["payment_ref"]: row for row in ledger["payments"]}

    eventually(lambda: all(row["refunding_paise"] == 0 for row in settled().values()))
    rows = settled()
    assert set(rows) == {paid, authorized, cf_order}
    figures = ("authorized_paise", "captured_paise", "refunded_paise", "refunding_paise", "released")
    assert {ref: tuple(row[f] for f in figures) for ref, row in rows.items()} == {
        paid: (10_000, 10_000, 5_500, 0, False),
        authorized: (5_000, 0, 0, 0, False),
        cf_order: (10_000, 10_000, 5_500, 0, False),
    }
    assert (rows[paid]["gateway"], rows[paid]["gateway_order_id"], rows[paid]["currency"]) == (
        "razorpay",
        order.order_id,
        "INR",
    )
    assert (rows[cf_order]["gateway"], rows[cf_order]["gateway_order_id"]) == ("cashfree", cf_order)
    assert sim.ledger() == _get(sim, "/_sim/ledger")


def _simulator_process(state: Path, port: int) -> subprocess.Popen[bytes]:
    """`python -m local.gateway_sim` as `make run` starts it: its own process, its state in a file."""
    env = os.environ | {
        "PQ_GATEWAY_SIM_PORT": str(port),
        "PQ_GATEWAY_SIM_STATE": str(state),
        "PQ_RAZORPAY_KEY_ID": RAZORPAY[0],
        "PQ_RAZORPAY_KEY_SECRET": RAZORPAY[1],
    }
    process = subprocess.Popen([sys.executable, "-m", "local.gateway_sim"], env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None and b"gateway simulator on" in process.stdout.readline()
    return process


@pytest.mark.parametrize("stop_with", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_simulator_stopped_right_after_a_change_still_knows_it_when_started_again(
    tmp_path: Path, stop_with: signal.Signals
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    state = tmp_path / "gateway-sim.json"
    client = razorpay.Client(auth=RAZORPAY, base_url=f"http://127.0.0.1:{port}")

    # Given a simulator that has just opened an order and had it paid (sooner than its periodic save)
    first = _simulator_process(state, port)
    try:
        order = client.order.create({"amount": 14_950, "currency": "INR", "receipt": "pq-order-7"})
        status, paid = _post_to(
            f"http://127.0.0.1:{port}", "/_sim/razorpay/checkout", {"order_id": order["id"], "outcome": "success"}
        )
        assert status == 200, paid
    finally:
        # When it is stopped at once, as `make run` stops it (SIGTERM) or as Ctrl-C does
        first.send_signal(stop_with)
        assert first.wait(timeout=15) == 0

    # Then, started again on the same file, it still knows the order and its payment
    second = _simulator_process(state, port)
    try:
        assert client.order.fetch(order["id"])["status"] == "attempted"  # authorised, not yet captured
        assert client.payment.fetch(paid["razorpay_payment_id"])["order_id"] == order["id"]
    finally:
        second.terminate()
        second.wait(timeout=15)

"""`make run`'s demo checkouts (local/gateway_demo.py) against the real local API and the simulator."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from local.api import LocalApi, build_app
from local.auth import LocalIssuer
from local.gateway_demo import DEMO, open_demo_checkouts
from local.gateway_sim import Simulator
from shared.bootstrap import App
from shared.settings import Settings
from tests.integration.gateway_helpers import pgmq_gateway_settings, set_stock_of_order


@pytest.fixture
def settings(database_url: str, sim: Simulator) -> Settings:
    return pgmq_gateway_settings(database_url, sim)


@contextmanager
def serving(api: LocalApi) -> Iterator[str]:
    """The local API on a loopback port, in a thread of its own: its base URL."""
    loop = asyncio.new_event_loop()
    server = TestServer(build_app(api), loop=loop)
    loop.run_until_complete(server.start_server())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(server.close())
        loop.close()


def test_a_demo_checkout_the_api_refuses_is_left_out_and_the_others_open(
    app: App, sim: Simulator, demo: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the running system already used before its demo checkouts open: the Razorpay demo shopper's
    # order holds a product that sold out (the race that stopped `make run`, and an e2e test with it)
    (razorpay_user, _), (cashfree_user, _) = DEMO
    order = app.db.fetch_one(
        "SELECT min(id) AS id FROM orders WHERE user_id = %s AND order_status = 'pending'", (razorpay_user,)
    )
    assert order is not None
    set_stock_of_order(app, order["id"], 0)
    issuer = LocalIssuer(tmp_path / "key.pem", "https://issuer.test", "payments")

    # When the demo checkouts open through the real API
    with serving(LocalApi(issuer)) as base:
        opened = open_demo_checkouts(app.db, sim.url, base, issuer)

    # Then the refused one is left out, saying why, and the other opens: nothing stops the run
    assert [(c.user_id, c.method) for c in opened] == [(cashfree_user, "cashfree")]
    assert (
        f"no razorpay demo checkout for {razorpay_user}'s order {order['id']}: 409 sold_out" in capsys.readouterr().err
    )

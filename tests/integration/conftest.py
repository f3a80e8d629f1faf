from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.gateway_sim import Simulator
from local.seed import SeedPlan, seed
from shared.bootstrap import App, bootstrap
from shared.db import Database
from shared.settings import Settings
from tests.integration.gateway_helpers import CASHFREE, RAZORPAY, RAZORPAY_WEBHOOK_SECRET, WebhookInbox
from tests.integration.helpers import HOT


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, queue_backend="pgmq", event_bus_backend="pgmq", sweep_after_s=0)


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    """The App the handlers use, wired to this test's database (PGMQ queue and event bus)."""
    built = bootstrap(settings)
    yield built
    built.db.close()


@pytest.fixture
def db(app: App) -> Database:
    return app.db


@pytest.fixture
def demo(db: Database) -> dict[str, int]:
    """Three users with Rs 5,000 each, five products with 1,000 units, one pending order each."""
    return seed(db, SeedPlan(users=3))


@pytest.fixture
def sale(db: Database) -> int:
    """The hot sale's rows (helpers.HOT); the hot product's id."""
    seed(db, HOT)
    row = db.fetch_one("SELECT min(id) AS id FROM products")
    assert row is not None
    return int(row["id"])


AWS_REGION = "ap-south-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto behind every boto3 client, with throw-away credentials and the region."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": AWS_REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


@pytest.fixture
def queues(aws: None) -> tuple[Any, str, str]:
    sqs = boto3.client("sqs", region_name=AWS_REGION)
    dlq = sqs.create_queue(QueueName="payments-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    main = sqs.create_queue(QueueName="payments.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    return sqs, main, dlq


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """The Razorpay and Cashfree simulator on loopback, for the gateway tests."""
    simulator = Simulator(razorpay=RAZORPAY, cashfree=CASHFREE, razorpay_webhook_secret=RAZORPAY_WEBHOOK_SECRET).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def inbox(sim: Simulator) -> Iterator[WebhookInbox]:
    """Where the simulator's signed webhooks land, each handed to our real handler by the test."""
    box = WebhookInbox(sim)
    yield box
    box.close()

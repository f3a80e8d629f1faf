from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.seed import SeedPlan, seed
from shared.bootstrap import App, bootstrap
from shared.db import Database
from shared.settings import Settings


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

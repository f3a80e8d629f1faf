"""Waiting that costs nothing per shopper: one shared, cacheable "now serving" figure that every waiting
client reads, served through the local API's shared cache (CloudFront's stand-in)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from functions.status.handler import handler as status_handler
from local import api as local_api
from local.api import LocalApi, build_app
from local.auth import LocalIssuer
from local.seed import SeedPlan, seed
from shared.bootstrap import App, bootstrap
from shared.routes import NOW_SERVING_CACHE_S
from shared.services.reads import JOB_QUERY, job_view
from shared.services.wallet import process_wallet_job
from shared.settings import Settings
from tests.integration.helpers import pay
from tests.integration.test_api_handlers import call

SHOPPERS = 40


class StillClock:
    """The shared cache's clock, moved only by the test: no assertion here depends on the machine's speed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _polls(issuer: LocalIssuer, clock: StillClock, requests: list[tuple[str, str | None]]) -> list[dict[str, Any]]:
    """Each (path, user) GET through the local API, one after another; the answers with their headers."""

    async def run() -> list[dict[str, Any]]:
        async with TestClient(TestServer(build_app(LocalApi(issuer, clock=clock)))) as client:
            answers = []
            for path, user in requests:
                headers = {"Authorization": f"Bearer {issuer.issue(user)}"} if user else {}
                async with client.get(path, headers=headers) as resp:
                    answers.append({"status": resp.status, "body": await resp.json(), "headers": dict(resp.headers)})
            return answers

    return asyncio.run(run())


def test_a_waiting_clients_polls_make_no_per_shopper_database_read(app: App, tmp_path: Path) -> None:
    # Given forty shoppers waiting in line
    seed(app.db, SeedPlan(users=SHOPPERS, user_prefix="shopper-"))
    for n in range(1, SHOPPERS + 1):
        pay(app, f"shopper-{n}", f"k{n}")
    issuer = LocalIssuer(tmp_path / "key.pem", "https://issuer.test", "payments")
    clock = StillClock()
    before = app.db.round_trips

    # When each of them polls the shared figure three times within its second
    answers = _polls(issuer, clock, [("/v1/queue/now-serving", None)] * (3 * SHOPPERS))

    # Then the database was read once, for all of them, and every answer says it may be cached
    assert app.db.round_trips - before == 1
    assert {a["status"] for a in answers} == {200}
    assert {a["headers"]["Cache-Control"] for a in answers} == {f"public, max-age={NOW_SERVING_CACHE_S}"}
    assert len({json.dumps(a["body"], sort_keys=True) for a in answers}) == 1

    # And once the figure's second is over, the next poll reads it once more
    clock.now += NOW_SERVING_CACHE_S
    _polls(issuer, clock, [("/v1/queue/now-serving", None)] * SHOPPERS)
    assert app.db.round_trips - before == 2


def test_a_query_string_neither_keys_the_shared_figure_nor_reaches_its_function(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client that asks for the figure under ever new query strings (to miss the cache on purpose)
    issuer = LocalIssuer(tmp_path / "key.pem", "https://issuer.test", "payments")
    before = app.db.round_trips
    seen: list[str] = []  # the query string of each event the function was invoked with
    invoke = local_api.invoke

    def watched(function: Any, event: dict[str, Any]) -> Any:
        seen.append(event["rawQueryString"])
        return invoke(function, event)

    monkeypatch.setattr(local_api, "invoke", watched)

    # When it asks a hundred times within the figure's second
    answers = _polls(issuer, StillClock(), [(f"/v1/queue/now-serving?x={n}", None) for n in range(100)])

    # Then, as CloudFront's cache policy keys on the path alone and forwards no query string, the function ran
    # once, without it, and the database was read once for all of them
    assert seen == [""]
    assert app.db.round_trips - before == 1
    assert {a["status"] for a in answers} == {200}


def test_the_figure_needs_no_token_and_a_job_still_does(app: App, demo: dict[str, int], tmp_path: Path) -> None:
    job_id = pay(app, "demo-user-1", "k1").body["job_id"]
    issuer = LocalIssuer(tmp_path / "key.pem", "https://issuer.test", "payments")

    figure, job = _polls(issuer, StillClock(), [("/v1/queue/now-serving", None), (f"/v1/payments/{job_id}", None)])

    assert figure["status"] == 200 and job["status"] == 401


def test_the_202_answer_carries_the_number_the_shared_figure_gives_the_position_of(
    app: App, demo: dict[str, int]
) -> None:
    # Given two jobs in line, the first paid
    first = pay(app, "demo-user-1", "k1").body
    accepted = pay(app, "demo-user-2", "k2").body
    process_wallet_job(app, first["job_id"])

    # When the second shopper reads the shared figure and, once, their own job
    status, figure, headers = call(status_handler, "GET", "/v1/queue/now-serving", user=None)
    _, job, _ = call(status_handler, "GET", f"/v1/payments/{accepted['job_id']}", user="demo-user-2")

    # Then both give the same place in line, one behind the 202's, and the figure is cacheable
    assert status == 200 and headers["Cache-Control"] == f"public, max-age={NOW_SERVING_CACHE_S}"
    assert accepted["now_serving_url"] == "/v1/queue/now-serving"
    assert max(1, accepted["queue_number"] - figure["serving"]) == job["position"] == accepted["position"] - 1
    assert figure["per_s"] is not None and figure["per_s"] > 0


def test_the_line_moving_never_moves_a_place_back(app: App, demo: dict[str, int]) -> None:
    accepted = pay(app, "demo-user-3", "k3").body
    seen = []
    for user in ("demo-user-1", "demo-user-2"):
        seen.append(call(status_handler, "GET", "/v1/queue/now-serving", user=None)[1]["serving"])
        process_wallet_job(app, pay(app, user, f"k-{user}").body["job_id"])
    seen.append(call(status_handler, "GET", "/v1/queue/now-serving", user=None)[1]["serving"])

    positions = [max(1, accepted["queue_number"] - s) for s in seen]
    assert seen == sorted(seen) and positions == sorted(positions, reverse=True)


def test_a_job_in_line_names_the_figure_where_the_setting_says_it_is_served(settings: Settings) -> None:
    # Given the API told where the figure is cached (on AWS, CloudFront's URL of its route: PQ_NOW_SERVING_URL)
    cdn = "https://d111111abcdef8.cloudfront.net/v1/queue/now-serving"
    app = bootstrap(settings.model_copy(update={"now_serving_url": cdn}))
    try:
        seed(app.db, SeedPlan(users=1))

        # When a shopper's payment is accepted, and they read their job
        accepted = pay(app, "demo-user-1", "k1").body
        row = app.db.fetch_one(JOB_QUERY, (accepted["job_id"], "demo-user-1"))
        assert row is not None
        job = job_view(app, row)
    finally:
        app.db.close()

    # Then both answers send the shopper's waiting to that URL, not through the API
    assert accepted["now_serving_url"] == job["now_serving_url"] == cdn

"""The flash-sale scenario against a deployed stack, with Locust.

    pip install locust==2.47.0
    PQ_HOST=https://<api-id>.execute-api.<region>.amazonaws.com \\
    PQ_TOKENS=tokens.csv \\
    locust -f bench/locustfile.py --headless -u 5000 -r 5000 --run-time 5m

PQ_TOKENS is a CSV of `user_id,order_id,bearer_token` rows, one per shopper with a pending order
(issued by your identity provider for the stack's JWT authorizer). Each simulated shopper pays its
order once with an idempotency key, then polls its job as `poll_after_ms` advises until the job
is terminal, and stops.
"""

from __future__ import annotations

import csv
import itertools
import os
import threading
from typing import Any

import gevent  # type: ignore[import-untyped]
from locust import HttpUser, between, events, task
from locust.exception import StopUser


def _load_shoppers() -> list[tuple[str, int, str]]:
    path = os.environ.get("PQ_TOKENS", "tokens.csv")
    with open(path, newline="") as handle:
        return [(row[0], int(row[1]), row[2]) for row in csv.reader(handle) if row and not row[0].startswith("#")]


_shoppers: list[tuple[str, int, str]] = []
_next = itertools.count()
_lock = threading.Lock()


@events.init.add_listener  # type: ignore[untyped-decorator]
def _on_init(environment: Any, **_: Any) -> None:
    _shoppers.extend(_load_shoppers())
    if environment.host is None:
        environment.host = os.environ.get("PQ_HOST")


class Shopper(HttpUser):
    wait_time = between(0, 0)

    def on_start(self) -> None:
        with _lock:
            index = next(_next)
        if index >= len(_shoppers):
            raise StopUser()
        self.user_id, self.order_id, token = _shoppers[index]
        self.headers = {"Authorization": f"Bearer {token}"}

    @task
    def pay_and_wait(self) -> None:
        headers = self.headers | {"Idempotency-Key": f"locust-{self.order_id}"}
        with self.client.post(
            "/v1/payments",
            json={"order_id": self.order_id, "method": "wallet"},
            headers=headers,
            name="POST /v1/payments",
            catch_response=True,
        ) as resp:
            if resp.status_code != 202:
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")
                raise StopUser()
            job = resp.json()
        wait_ms = job.get("poll_after_ms", 500)
        while True:
            self._sleep(wait_ms / 1000)
            with self.client.get(
                job["status_url"], headers=self.headers, name="GET /v1/payments/{job_id}", catch_response=True
            ) as resp:
                state = resp.json()
            if state["status"] in ("succeeded", "failed"):
                raise StopUser()
            wait_ms = state.get("poll_after_ms", 500)

    def _sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)

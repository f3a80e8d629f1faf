"""The flash sale against a deployed stack, with Locust, at the sizes docs/capacity.md models.

    pip install locust==2.47.0
    PQ_HOST=https://<api-id>.execute-api.ap-south-1.amazonaws.com PQ_TOKENS=tokens.csv \\
    locust -f bench/locustfile.py --headless -u 5000 -r 84 --run-time 10m     # 5,000 in a minute

One run per size, shoppers arriving within a minute as the model assumes (-r = users / 60):

    size      -u        -r      load generators (one Locust worker holds ~5,000 gevent users)
    5,000     5000      84      1 (--processes 2 on a 2-vCPU box is plenty)
    50,000    50000     834     10 workers: locust --master ... / locust --worker ... on 5 x c7g.xlarge
    500,000   500000    8334    100 workers; ask AWS first (API Gateway's 10,000 rps account quota,
                                Lambda's 1,000 concurrency) and warn the gateways (wallet only here)

PQ_TOKENS is a CSV of `user_id,order_id,bearer_token` rows, one per shopper with a pending order
(issued by your identity provider for the stack's JWT authorizer), seeded like `make bench`'s sale
(a quarter buy the hot product, which has stock for a tenth: local/seed.py's SeedPlan). Each
simulated shopper pays once with an idempotency key, polls its job as `poll_after_ms` advises until
it is terminal, and stops. A 429 is retried as the model assumes: a POST a second later (or after
Retry-After), a poll at its next interval.

At the start the run prints the model's prediction for its size from PQ_CAPACITY_JSON
(bench/results/capacity.json, written by `make capacity`); at the end what it saw (drain time,
429s, the last shopper's wait). Beside them, what to watch in CloudWatch (the alarms and the
dashboard of infra/components/monitoring.py, stack PaymentQueue-prod):

    the model's column               where it shows on AWS
    drained after / last wait        AWS/SQS ApproximateAgeOfOldestMessage (alarm OldestMessageAge),
                                     ApproximateNumberOfMessagesVisible (alarm QueueDepth, > 1,000)
    peak backlog                     QueueDepth's metric, the dashboard's "Queue depth"
    throttled (429)                  AWS/ApiGateway 4xx and Count (ApiId, Stage); this run's 429 count
    enqueue / status reserved        AWS/Lambda ConcurrentExecutions, Throttles (alarms
                                     EnqueueThrottles, StatusThrottles: 0 expected below the limit)
    RDS Proxy connections            AWS/RDS DatabaseConnections, ClientConnections (alarm
                                     ProxyConnections at 90 % of the budget), DatabaseConnectionsBorrowLatency
                                     (alarm ProxyBorrowLatency: the budget is exhausted, clients get 503)
    PostgreSQL CPU                   AWS/RDS CPUUtilization of the instance; Performance Insights'
                                     db.load by wait event ("Lock:tuple" / "transactionid" = the hot row)
    hot product row lock             Performance Insights: the lock waits above, and the processor's
                                     duration p99 (dashboard "Processor duration")
    processor Lambdas                ConcurrentExecutions of ProcessPayment = max concurrency; alarms
                                     ProcessorErrorRate, ProcessorRecordsFailed, ProcessPaymentThrottles
    EventBridge / SNS                AWS/Events MatchedEvents, ThrottledRules; AWS/SNS NumberOfMessagesPublished
    assumed commit latency           AWS/RDS WriteLatency, Performance Insights' IO:WALSync wait per
                                     commit (Multi-AZ): replace ASSUMED_MULTI_AZ_COMMIT_MS
    assumed proxy / SQS / overheads  X-Ray traces of enqueue and process_payment (the segments per call)

Put the observed numbers beside the prediction in docs/capacity.md's "Checking it" section; where
they differ, correct the ASSUMED_* constants of bench/capacity_model.py rather than the tables.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import gevent  # type: ignore[import-untyped]
from locust import HttpUser, between, events, task
from locust.exception import StopUser

RETRY_AFTER_S = 1.0  # a throttled POST, as the capacity model assumes


def _load_shoppers() -> list[tuple[str, int, str]]:
    path = os.environ.get("PQ_TOKENS", "tokens.csv")
    with open(path, newline="") as handle:
        return [(row[0], int(row[1]), row[2]) for row in csv.reader(handle) if row and not row[0].startswith("#")]


_shoppers: list[tuple[str, int, str]] = []
_next = itertools.count()
_lock = threading.Lock()
# What this run saw, for the comparison printed at the end.
_seen: dict[str, float] = {"first_post": 0.0, "last_done": 0.0, "throttled": 0, "terminal": 0, "max_wait": 0.0}


def prediction(size: int, path: Path) -> str:
    """The model's line for the size nearest `size` (bench/results/capacity.json), or why there is none."""
    if not path.exists():
        return f"no prediction: {path} does not exist (run `make capacity`)"
    report = json.loads(path.read_text())
    sizes = report["model"]["sizes"]
    best = min(sizes, key=lambda s: abs(s["shoppers"] - size))
    sim = best["simulation"]
    return (
        f"model for {best['shoppers']:,} shoppers in 60 s: drained after {sim['drain_s']:.0f} s, last shopper "
        f"waits {sim['max_wait_s']:.0f} s, peak backlog {sim['peak_backlog']:,}, peak {sim['peak_offered_rps']:,.0f} "
        f"requests/s offered, {sim['throttled_requests']:,} throttled, DB CPU peak {sim['peak_db_util']:.0%}; "
        f"first limit: {best['first_limit']} ({best['first_limit_utilization']:.0%})"
    )


@events.init.add_listener  # type: ignore[untyped-decorator]
def _on_init(environment: Any, **_: Any) -> None:
    _shoppers.extend(_load_shoppers())
    if environment.host is None:
        environment.host = os.environ.get("PQ_HOST")


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _on_start(**_: Any) -> None:
    path = Path(os.environ.get("PQ_CAPACITY_JSON", "bench/results/capacity.json"))
    print(prediction(len(_shoppers), path), flush=True)


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def _on_stop(**_: Any) -> None:
    drain = _seen["last_done"] - _seen["first_post"] if _seen["first_post"] else 0.0
    print(
        f"observed: {_seen['terminal']:,.0f} jobs terminal, drained after {drain:.0f} s, last shopper waited "
        f"{_seen['max_wait']:.0f} s from its first POST, {_seen['throttled']:,.0f} responses 429",
        flush=True,
    )


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
        started = time.time()
        _seen["first_post"] = _seen["first_post"] or started
        job = self._enqueue()
        wait_ms = job.get("poll_after_ms", 500)
        while True:
            self._sleep(wait_ms / 1000)
            with self.client.get(
                job["status_url"], headers=self.headers, name="GET /v1/payments/{job_id}", catch_response=True
            ) as resp:
                if resp.status_code == 429:
                    _seen["throttled"] += 1
                    resp.success()  # expected past the throttle; counted above
                    continue  # the next interval, as advised before
                state = resp.json()
            if state["status"] in ("succeeded", "failed"):
                done = time.time()
                _seen["terminal"] += 1
                _seen["last_done"] = max(_seen["last_done"], done)
                _seen["max_wait"] = max(_seen["max_wait"], done - started)
                raise StopUser()
            wait_ms = state.get("poll_after_ms", wait_ms)

    def _enqueue(self) -> dict[str, Any]:
        headers = self.headers | {"Idempotency-Key": f"locust-{self.order_id}"}
        while True:
            with self.client.post(
                "/v1/payments",
                json={"order_id": self.order_id, "method": "wallet"},
                headers=headers,
                name="POST /v1/payments",
                catch_response=True,
            ) as resp:
                if resp.status_code in (429, 503):  # throttled, or the proxy's borrow timed out
                    _seen["throttled"] += resp.status_code == 429
                    resp.success()
                    self._sleep(float(resp.headers.get("Retry-After") or RETRY_AFTER_S))
                    continue
                if resp.status_code != 202:  # also the answer to a replayed key (Idempotent-Replayed)
                    resp.failure(f"{resp.status_code}: {resp.text[:200]}")
                    raise StopUser()
                body: dict[str, Any] = resp.json()
                return body

    def _sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)

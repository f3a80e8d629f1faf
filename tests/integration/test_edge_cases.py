"""Edges a hostile outside tester found: each answered with a clear 4xx (or the right body), nothing changed."""

from __future__ import annotations

import json
import socket
import threading
import time

import psycopg2

from functions.enqueue.handler import handler as enqueue_handler
from shared.bootstrap import App, bootstrap
from shared.services.wallet import process_wallet_job
from shared.settings import Settings
from tests.integration.helpers import pay, pending_order, row_counts
from tests.integration.test_api_handlers import call, post_payment


def test_an_integer_of_more_digits_than_python_converts_is_invalid_json(app: App, demo: dict[str, int]) -> None:
    before = row_counts(app.db)
    for body in ('{"order_id": ' + "9" * 5000 + ', "method": "wallet"}', '{"x": [' + "1" * 4301 + "]}"):
        status, answer, _ = post_payment(body)

        assert (status, answer["error"]["code"]) == (400, "invalid_json")
    assert row_counts(app.db) == before


def test_a_signed_subject_with_nul_is_refused_not_a_server_error(app: App, demo: dict[str, int]) -> None:
    order = pending_order(app.db, "demo-user-1")
    before = row_counts(app.db)

    status, answer, _ = call(
        enqueue_handler,
        "POST",
        "/v1/payments",
        user="demo-user-1\x00admin",
        body=json.dumps({"order_id": order, "method": "wallet"}),
        headers={"idempotency-key": "k"},
    )

    assert (status, answer["error"]["code"]) == (401, "invalid_subject")
    assert row_counts(app.db) == before


def test_replaying_a_succeeded_job_answers_its_payment_id(app: App, demo: dict[str, int]) -> None:
    # Given a job that succeeded
    order = pending_order(app.db, "demo-user-1")
    body = json.dumps({"order_id": order, "method": "wallet"})
    status, first, _ = post_payment(body, key="replay-me")
    assert status == 202
    outcome = process_wallet_job(app, first["job_id"])
    assert outcome.payment_id is not None

    # When the client retries the same request
    status, again, headers = post_payment(body, key="replay-me")

    # Then the replay says what GET says: succeeded, with the payment id
    assert status == 202 and headers.get("Idempotent-Replayed") == "true"
    assert again["status"] == "succeeded" and again["payment_id"] == outcome.payment_id


def test_requests_that_lose_a_race_consume_no_queue_number(app: App, demo: dict[str, int]) -> None:
    # Given many concurrent requests for one order with one idempotency key, and others for the
    # same order with fresh keys (all but one lose: replay, or payment in progress)
    order = pending_order(app.db, "demo-user-1")
    start = threading.Barrier(12)

    def request(i: int) -> None:
        conn = psycopg2.connect(app.settings.database_url)
        conn.autocommit = True
        start.wait()
        with conn.cursor() as cur:
            cur.execute(
                "SELECT * FROM pq_enqueue_job(%s, %s, %s, %s, %s, %s)",
                ("demo-user-1", "same" if i % 2 else f"key-{i}", "h", order, "wallet", None),
            )
        conn.close()

    threads = [threading.Thread(target=request, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then exactly one job exists and the next job takes the very next number
    jobs = app.db.fetch_all("SELECT queue_seq FROM payment_jobs")
    assert len(jobs) == 1
    other = pending_order(app.db, "demo-user-2")
    accepted = pay(app, "demo-user-2", "next", other)
    seq = app.db.fetch_one("SELECT queue_seq FROM payment_jobs WHERE id = %s", (accepted.body["job_id"],))
    assert seq is not None and seq["queue_seq"] == jobs[0]["queue_seq"] + 1
    assert accepted.body["position"] <= 2


def test_a_request_racing_the_orders_commit_is_refused_at_once(app: App, demo: dict[str, int]) -> None:
    # Given a payment of the order that holds its lock, about to commit
    order = pending_order(app.db, "demo-user-1")
    job = pay(app, "demo-user-1", "first", order).body["job_id"]
    payer = psycopg2.connect(app.settings.database_url)
    payer.autocommit = False
    with payer.cursor() as cur:
        cur.execute("SELECT outcome FROM pq_process_payment(%s)", (job,))
        assert cur.fetchone() == ("succeeded",)
    answers: list[tuple[int, dict[str, object]]] = []

    # When another request for the order arrives before the commit, and the commit follows
    def second_request() -> None:
        status, answer, _ = post_payment(json.dumps({"order_id": order, "method": "wallet"}), key="second")
        answers.append((status, answer))

    racer = threading.Thread(target=second_request)
    racer.start()
    time.sleep(0.3)  # the request is waiting on the order's row lock
    payer.commit()
    payer.close()
    racer.join(10)

    # Then it is refused now (the order is paid), not accepted to fail later
    assert len(answers) == 1
    status, answer = answers[0]
    assert status == 409 and answer["error"]["code"] == "order_not_payable"  # type: ignore[index]
    assert app.db.fetch_one("SELECT count(*) AS n FROM payment_jobs") == {"n": 1}


def test_no_database_connection_answers_503_service_busy_with_retry_after(app: App) -> None:
    # Given the functions cannot get a database connection (as when RDS Proxy's borrow times out)
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    closed = port.getsockname()[1]
    port.close()
    bootstrap(Settings(database_url=f"postgresql://nobody@127.0.0.1:{closed}/none", db_connect_timeout_s=1))
    try:
        # When a shopper pays
        status, answer, headers = post_payment(json.dumps({"order_id": 1, "method": "wallet"}))
    finally:
        bootstrap(app.settings)

    # Then the answer says to retry the same request shortly, not that the server broke
    assert (status, answer["error"]["code"]) == (503, "service_busy")
    assert int(headers["Retry-After"]) >= 1

"""Waiting for a gateway token spends one receive: the job reserves its bucket's next slot, its message
comes back then, and that delivery uses the slot without taking another token."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest

from local.gateway_sim import Simulator
from local.invariants import check
from local.seed import SeedPlan, seed
from shared.bootstrap import App
from shared.ports import QueueMessage
from shared.settings import Settings
from tests.integration.gateway_helpers import drain, gateway_settings, jobs, pay_gateway
from tests.integration.helpers import deliver, receive

# Each of the processor's two Razorpay endpoints (fetch the payment, capture it): 1 token a second, a
# bucket of 3 (bucket(): burst = burst_share * limit, rate = (limit - burst) / 60 with the whole limit
# used). A reservation is honoured up to burst / rate = 3 s after its slot.
RATE, BURST = 1.0, 3.0
LIMIT_PER_MIN = 60 * RATE + BURST
FETCH, CAPTURE = "razorpay.fetch_payment", "razorpay.capture"


@pytest.fixture
def settings(database_url: str, sim: Simulator) -> Settings:
    return Settings(
        database_url=database_url,
        queue_backend="pgmq",
        event_bus_backend="pgmq",
        sweep_after_s=0,
        max_receive_count=5,
        gateway_limits_per_min={FETCH: LIMIT_PER_MIN, CAPTURE: LIMIT_PER_MIN},
        gateway_limit_share=1.0,
        gateway_burst_share=BURST / LIMIT_PER_MIN,
        # Every wait is handed back, none slept: the receives are what is counted here.
        limiter_max_wait_ms=0,
        **gateway_settings(sim),
    )


def empty_bucket(app: App, name: str) -> None:
    """The bucket has just given out its last token."""
    app.db.execute(
        """INSERT INTO gateway_rate_limits (gateway, tokens, updated_at) VALUES (%s, 0, clock_timestamp())
           ON CONFLICT (gateway) DO UPDATE SET tokens = 0, updated_at = clock_timestamp()""",
        (name,),
    )


def bucket_row(app: App, name: str) -> dict[str, Any]:
    row = app.db.fetch_one("SELECT tokens, updated_at FROM gateway_rate_limits WHERE gateway = %s", (name,))
    assert row is not None
    return row


def db_now(app: App) -> datetime:
    row = app.db.fetch_one("SELECT clock_timestamp() AS t")
    assert row is not None
    return row["t"]  # type: ignore[no-any-return]


def receive_when_visible(app: App, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while not (messages := receive(app)):
        assert time.monotonic() < deadline, "the message never came back"
        time.sleep(0.05)
    return messages


def fetch_and_capture_times(sim: Simulator) -> tuple[list[float], list[float]]:
    fetches = [c.t for c in sim.calls if c.method == "GET" and c.path.startswith("/v1/payments/")]
    captures = [c.t for c in sim.calls if c.method == "POST" and c.path.endswith("/capture")]
    return sorted(fetches), sorted(captures)


def most_in_a_window_beyond_promise(times: list[float]) -> float:
    """How far the busiest window [t_i, t_j] goes past 2 * burst + rate * (t_j - t_i): the bucket's
    promise (burst + rate * t) for grants at their slots, plus the one burst a reservation used up to
    burst / rate late can add. <= 0 when the promise is kept."""
    return max(
        (j - i + 1) - (2 * BURST + RATE * (times[j] - times[i]))
        for i in range(len(times))
        for j in range(i, len(times))
    )


# The time between a token's grant and the request reaching the simulator, at the bucket's rate.
IN_FLIGHT = 0.05


def test_a_job_that_finds_no_token_comes_back_once_at_its_slot_and_takes_no_second_token(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a Razorpay job, and its fetch bucket just emptied
    job_id = pay_gateway(app, sim, "demo-user-1", "razorpay").body["job_id"]
    empty_bucket(app, FETCH)
    calls_before = len(sim.calls)

    # When it is delivered
    before = db_now(app)
    assert deliver(app, receive(app)) != set()
    after = db_now(app)

    # Then nothing was called; the job holds the bucket's next slot, and its message is handed back
    # until exactly that slot (SQS counts whole seconds: at most one second later), once
    assert len(sim.calls) == calls_before
    attempt = app.db.fetch_one(
        "SELECT reservations, limited, deliveries FROM gateway_attempts WHERE job_id = %s", (job_id,)
    )
    assert attempt is not None and set(attempt["reservations"]) == {FETCH}
    assert (attempt["limited"], attempt["deliveries"]) == (1, 1)
    slot = datetime.fromisoformat(attempt["reservations"][FETCH])
    message = app.db.fetch_one("SELECT vt, read_ct FROM pgmq.q_payments")
    assert message is not None and message["read_ct"] == 1
    assert slot <= message["vt"]
    assert (message["vt"] - slot).total_seconds() < 1 + (after - before).total_seconds()
    reserved = bucket_row(app, FETCH)
    assert reserved["tokens"] < 0  # the slot was taken from the bucket's future

    # When the message comes back at its slot
    messages = receive_when_visible(app)
    assert [m["message"]["job_id"] for m in messages] == [job_id]
    assert deliver(app, messages) == set()

    # Then the job is paid on that second delivery, by the reserved token: the fetch bucket was not
    # touched again, and the job holds nothing any more
    assert jobs(app.db)[0]["status"] == "succeeded"
    assert bucket_row(app, FETCH) == reserved
    attempt = app.db.fetch_one(
        "SELECT reservations, limited, deliveries FROM gateway_attempts WHERE job_id = %s", (job_id,)
    )
    assert attempt == {"reservations": {}, "limited": 1, "deliveries": 2}
    fetches, captures = fetch_and_capture_times(sim)
    assert (len(fetches), len(captures), sim.stats()["double_captures"]) == (1, 1, 0)
    assert check(app.db) == dict.fromkeys(check(app.db), 0)


def test_twenty_jobs_paced_by_a_one_token_a_second_bucket_all_finish_and_none_goes_to_the_dlq(
    app: App, sim: Simulator
) -> None:
    # Given 20 Razorpay payments, buckets of 1 token a second for fetch and capture, 5 receives allowed
    # and no wait slept: waiting for tokens the old way would hand each job back again and again
    seed(app.db, SeedPlan(users=20))
    for i in range(1, 21):
        pay_gateway(app, sim, f"demo-user-{i}", "razorpay")
    started = time.time()

    # When the queue is drained (each delivery as the event source mapping makes it)
    drain(app, timeout_s=180)

    # Then every job succeeded, captured once, and nothing is in the DLQ; every delivery but a job's
    # last was a wait for a token, and the buckets did make most of them wait
    assert {j["status"] for j in jobs(app.db)} == {"succeeded"}
    assert app.db.fetch_one("SELECT count(*) AS n FROM pgmq.q_payments_dlq") == {"n": 0}
    stats = sim.stats()
    assert (stats["captures"], stats["double_captures"]) == (20, 0)
    attempts = app.db.fetch_all("SELECT limited, deliveries, reservations FROM gateway_attempts")
    assert all(a["deliveries"] == a["limited"] + 1 for a in attempts)
    assert sum(a["limited"] > 0 for a in attempts) >= 20 - 2 * BURST
    assert all(a["reservations"] == {} for a in attempts)
    print(f"\nhand-backs per job: {sorted(a['limited'] for a in attempts)}")

    # And neither endpoint saw more than its bucket promises in any window
    fetches, captures = fetch_and_capture_times(sim)
    fetches = [t for t in fetches if t >= started]
    assert len(fetches) == 20 and len(captures) == 20
    assert most_in_a_window_beyond_promise(fetches) <= IN_FLIGHT
    assert most_in_a_window_beyond_promise(captures) <= IN_FLIGHT
    assert check(app.db) == dict.fromkeys(check(app.db), 0)


def test_a_message_whose_every_receive_waited_is_sent_again_not_dead_lettered(
    app: App, sim: Simulator, demo: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a Razorpay job, 2 receives allowed, and a fetch bucket so far in debt that no slot can be
    # reserved (past limiter_max_reserve_s)
    object.__setattr__(app.settings, "max_receive_count", 2)
    object.__setattr__(app.settings, "limiter_max_reserve_s", 1)
    job_id = pay_gateway(app, sim, "demo-user-1", "razorpay").body["job_id"]
    app.db.execute(
        """INSERT INTO gateway_rate_limits (gateway, tokens, updated_at) VALUES (%s, -100, clock_timestamp())
           ON CONFLICT (gateway) DO UPDATE SET tokens = -100, updated_at = clock_timestamp()""",
        (FETCH,),
    )
    sent: list[QueueMessage] = []
    send = app.queue.send

    def recording_send(messages: Sequence[QueueMessage]) -> list[str]:
        sent.extend(messages)
        return send(messages)

    monkeypatch.setattr(app.queue, "send", recording_send)

    # When its message is received twice (made visible again at once between the two), both times a wait
    first = receive(app)
    assert deliver(app, first) != set()
    app.db.execute("UPDATE pgmq.q_payments SET vt = clock_timestamp()")
    last = receive(app)
    assert [m["read_ct"] for m in last] == [2]
    assert deliver(app, last) == set()

    # Then that last receive consumed the message instead of failing it: nothing is in the DLQ, and
    # the job went out again as a new message, whose deduplication id is new (SQS FIFO would drop one
    # with the first message's id for 5 minutes); the job gave up its place in its user's line
    assert app.db.fetch_one("SELECT count(*) AS n FROM pgmq.q_payments_dlq") == {"n": 0}
    assert [(m.job_id, m.dedup_id) for m in sent] == [(job_id, f"{job_id}.1")]
    queued = app.db.fetch_all("SELECT message, read_ct FROM pgmq.q_payments")
    assert [(q["message"]["job_id"], q["read_ct"]) for q in queued] == [(job_id, 0)]
    job = app.db.fetch_one("SELECT status, parks, sent_at FROM payment_jobs WHERE id = %s", (job_id,))
    assert job is not None and (job["status"], job["parks"]) == ("processing", 1) and job["sent_at"] is not None

    # When the bucket has tokens again, the new message is paid
    app.db.execute("UPDATE gateway_rate_limits SET tokens = %s, updated_at = clock_timestamp()", (BURST,))
    assert deliver(app, receive(app)) == set()
    assert jobs(app.db)[0]["status"] == "succeeded"
    assert (sim.stats()["captures"], sim.stats()["double_captures"]) == (1, 0)


def test_a_delivery_that_failed_otherwise_is_not_sent_again_on_its_last_receive(
    app: App, sim: Simulator, demo: dict[str, int]
) -> None:
    # Given a Razorpay job whose first receive hit a 503, 2 receives allowed, no slot to reserve
    object.__setattr__(app.settings, "max_receive_count", 2)
    object.__setattr__(app.settings, "limiter_max_reserve_s", 1)
    pay_gateway(app, sim, "demo-user-1", "razorpay")
    sim.config.rate_5xx = 1.0
    assert deliver(app, receive(app)) != set()
    sim.config.rate_5xx = 0.0
    app.db.execute(
        """INSERT INTO gateway_rate_limits (gateway, tokens, updated_at) VALUES (%s, -100, clock_timestamp())
           ON CONFLICT (gateway) DO UPDATE SET tokens = -100, updated_at = clock_timestamp()""",
        (FETCH,),
    )

    # When its last receive waits for a token
    app.db.execute("UPDATE pgmq.q_payments SET vt = clock_timestamp()")
    assert deliver(app, receive(app)) != set()

    # Then it goes to the DLQ as any message whose receives are used up: only waiting spares it
    assert app.db.fetch_one("SELECT count(*) AS n FROM pgmq.q_payments_dlq") == {"n": 1}
    assert app.db.fetch_one("SELECT parks FROM payment_jobs") == {"parks": 0}


def test_reserved_slots_keep_the_buckets_promise_and_nothing_is_taken_past_the_horizon(app: App) -> None:
    # Given a bucket of 4 tokens a second, 20 tokens in debt (5 s of reservations already made)
    rate, burst, horizon_ms = 4.0, 2.0, 10_000
    app.db.execute(
        "INSERT INTO gateway_rate_limits (gateway, tokens, updated_at) VALUES ('bench', -20, clock_timestamp())"
    )
    start = bucket_row(app, "bench")

    # When 60 callers ask for a token each, reserving up to 10 s ahead
    slots = []
    for _ in range(60):
        row = app.db.fetch_one("SELECT * FROM pq_take_tokens('bench', %s, %s, 1, %s)", (rate, burst, horizon_ms))
        assert row is not None and not row["granted"]
        at = bucket_row(app, "bench")["updated_at"]  # the clock the bucket read for this call
        if row["reserved"]:
            assert row["wait_ms"] <= horizon_ms
            slots.append(at.timestamp() + row["wait_ms"] / 1000)
        else:
            assert row["wait_ms"] > horizon_ms

    # Then the reserved slots are 1 / rate apart, in the order asked (the bucket's promise, burst + rate
    # * t in any t seconds, for grants at their slots); some callers were past the horizon; and the
    # bucket took a token for each reservation and none for the rest
    assert 0 < len(slots) < 60
    assert all(b - a >= 1 / rate - 0.002 for a, b in itertools.pairwise(slots))
    end = bucket_row(app, "bench")
    refilled = rate * (end["updated_at"] - start["updated_at"]).total_seconds()
    assert end["tokens"] == pytest.approx(-20 - len(slots) + refilled, abs=1e-6)

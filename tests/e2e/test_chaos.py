"""The fault scenarios of `make chaos` at small scale: each ends with no loss in any column."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest

from bench.chaos import LOSS_COLUMNS, ChaosConfig, ChaosServer, Row, run_scenario

pytestmark = pytest.mark.e2e

JOBS = 30
CONFIG = ChaosConfig(jobs=JOBS, workers=2, api_workers=1, visibility_timeout_s=3, recover_timeout_s=90)


@pytest.fixture(scope="module")
def server(pg_admin_url: str) -> ChaosServer:
    return ChaosServer(pg_admin_url)


def run(server: ChaosServer, name: str, tmp_path: Path) -> Row:
    row = run_scenario(server, name, JOBS, CONFIG, tmp_path)
    assert row.recover_s is not None, row
    assert {k: getattr(row, k) for k in LOSS_COLUMNS} == dict.fromkeys(LOSS_COLUMNS, 0), row
    assert row.details["negative_balances"] == 0, row
    assert row.jobs > 0 and row.succeeded + row.failed + row.dlq >= row.jobs, row
    return row


def taken_or_sold_out(row: Row) -> int:
    """Jobs accepted, plus orders refused at once because a product in them had sold out (nothing else
    may be refused)."""
    assert row.details["refused_requests"] == row.details["refused_sold_out"], row
    return row.jobs + int(row.details["refused_sold_out"])


def test_processor_killed_mid_batch_loses_nothing_and_charges_once(server: ChaosServer, tmp_path: Path) -> None:
    row = run(server, "kill_mid_batch", tmp_path)
    assert row.details["kills"] >= 1 and row.details["order_violations"] == 0
    assert (taken_or_sold_out(row), row.dlq) == (JOBS, 0)


def test_processor_killed_after_commit_before_delete_charges_once(server: ChaosServer, tmp_path: Path) -> None:
    row = run(server, "kill_before_delete", tmp_path)
    assert row.details["kills"] >= 1 and row.details["order_violations"] == 0
    assert (taken_or_sold_out(row), row.dlq) == (JOBS, 0)


def _restartable(admin: str) -> bool:
    conn = psycopg2.connect(admin)
    with conn.cursor() as cur:
        cur.execute("SHOW data_directory")
        row = cur.fetchone()
    conn.close()
    return row is not None and Path(row[0]).is_dir()


def test_postgres_fast_restart_during_load_loses_nothing(server: ChaosServer, tmp_path: Path) -> None:
    if not _restartable(server.admin):
        pytest.skip("the test server is not on this machine, so it cannot be restarted")
    row = run(server, "pg_restart", tmp_path)
    assert (taken_or_sold_out(row), row.dlq) == (JOBS, 0)


def test_terminated_backends_during_load_lose_nothing(server: ChaosServer, tmp_path: Path) -> None:
    row = run(server, "pg_terminate_backend", tmp_path)
    assert row.details["backends_terminated"] > 0
    assert (taken_or_sold_out(row), row.dlq) == (JOBS, 0)


def test_gateway_storms_capture_each_payment_once(server: ChaosServer, tmp_path: Path) -> None:
    row = run(server, "gateway_storms", tmp_path)
    assert row.details["double_captures"] == 0
    assert row.details["responses_429"] > 0
    assert row.details["dead_lettered_only_waiting"] == 0
    assert (taken_or_sold_out(row), row.dlq) == (JOBS, 0)


def test_refunds_that_fail_are_made_at_the_gateway_or_lose_their_job_all_end_in_closed_books(
    server: ChaosServer, tmp_path: Path
) -> None:
    row = run(server, "refund_failures", tmp_path)
    details = row.details
    assert details["refunds_failed_then_retried"] > 0 and details["refunded_in_dashboard_before_the_job"] > 0
    assert details["dead_lettered_mid_refund_then_redriven"] == 4 and row.dlq == 0
    assert (details["replays_answered_2xx"], details["gateway_calls_per_replay"], details["rows_per_replay"]) == (
        details["replays"],
        0,
        0,
    )
    assert details["double_captures"] == 0


def test_shoppers_who_close_the_tab_are_paid_once_by_duplicated_and_replayed_webhooks(
    server: ChaosServer, tmp_path: Path
) -> None:
    row = run(server, "gateway_webhooks", tmp_path)
    assert row.details["closed_tabs"] > 0 and row.details["orders_without_a_job"] == 0
    assert row.details["double_captures"] == 0 and row.details["order_violations"] == 0
    assert row.details["dead_lettered_only_waiting"] == 0
    assert row.succeeded + row.failed == JOBS and row.dlq == 0  # every order, submitted or not


def test_a_razorpay_outage_mid_sale_sends_new_checkouts_to_cashfree_and_pays_every_order_once(
    server: ChaosServer, tmp_path: Path
) -> None:
    row = run(server, "gateway_outage", tmp_path)
    d = row.details
    # Before the outage every checkout was at Razorpay; while it was down, none was created there (the
    # first few failed there and moved on in the same request), and after it they are at Razorpay again
    assert d["checkouts_by_phase"]["before"] == {"razorpay": JOBS // 3}
    assert d["checkouts_answered_while_down"].get("razorpay", 0) == 0
    assert d["checkouts_answered_while_down"]["cashfree"] > 0
    # Razorpay's circuit was seen open after checkouts answered while it was down (closed only for the run of
    # failures that opened it)
    assert d["razorpay_circuit_while_down"].get("open", 0) + d["razorpay_circuit_while_down"].get("half_open", 0) > 0
    assert d["checkouts_by_phase"]["after"].get("razorpay", 0) > 0
    # Those paid at Razorpay before it went down waited it out: every job ended, none in the DLQ
    assert d["responses_5xx"] > 0 and d["double_captures"] == 0
    assert (taken_or_sold_out(row), row.dlq) == (JOBS, 0)


def test_every_message_delivered_two_or_three_times_charges_once(server: ChaosServer, tmp_path: Path) -> None:
    row = run(server, "duplicate_delivery", tmp_path)
    assert row.details["duplicates"] >= row.jobs
    assert row.details["order_violations"] == 0 and row.dlq == 0


def test_poison_messages_go_to_the_dlq_at_first_delivery_and_their_users_later_jobs_follow(
    server: ChaosServer, tmp_path: Path
) -> None:
    row = run(server, "poison", tmp_path)
    d = row.details
    assert row.dlq == d["poison_messages"] == d["poison_dead_lettered"]
    assert d["deliveries_per_poison"] == 1
    # The same user's later job waited behind its poison head, then went through as usual.
    assert d["victims_waited_for_dlq"] == d["victim_jobs"] == d["victims_succeeded_or_failed"] > 0
    assert row.succeeded + row.failed == row.jobs


def test_dlq_redrive_processes_each_redriven_job_once(server: ChaosServer, tmp_path: Path) -> None:
    row = run(server, "dlq_redrive", tmp_path)
    d = row.details
    assert d["redrive_moved"] == [d["dead_lettered"], 0] and d["dead_lettered"] > 0
    assert d["redriven_processed_once"] == d["dead_lettered"]
    assert row.dlq == 0 and row.succeeded + row.failed == row.jobs
    # Per-user order holds except where a redriven job was overtaken by its user's later one.
    assert d["order_violations"] == d["overtaken_after_redrive"]


def test_notifications_held_back_by_a_webhook_outage_arrive_once_it_is_back(
    server: ChaosServer, tmp_path: Path
) -> None:
    row = run(server, "notify_down", tmp_path)
    assert row.details["deliveries_refused_while_down"] > 0
    assert row.succeeded + row.failed == row.jobs

"""The capacity model (bench/capacity_model.py) on a synthetic measurement: the poll schedule it
assumes is the one reads.py advises, and each limit shows up where its numbers say it must."""

from __future__ import annotations

from typing import Any

import pytest

from bench.capacity_model import (
    HOT_SHARE,
    HOT_STOCK_SHARE,
    SIZES,
    Measured,
    Variant,
    enqueue_ms,
    ladder,
    model,
    polls_while_waiting,
    render,
    sale_cost,
    simulate,
)
from shared.settings import Settings


def _level(tps: float, cpu_ms: float, connections: int = 4, delay: int = 0) -> dict[str, Any]:
    return {
        "connections": connections,
        "ops": 1000,
        "seconds": 1.0,
        "tps": tps,
        "p50_ms": 1.0,
        "p99_ms": 5.0,
        "wal_bytes_per_op": 1000.0,
        "wal_records_per_op": 10.0,
        "wal_flushes_per_op": 1.0,
        "backend_cpu_ms_per_op": cpu_ms,
        "commit_delay_ms": delay,
    }


def _report(
    hot_at_5ms: float = 120.0, shard_gain: float = 4.0, sent_mark_cpu_ms: float = 0.9, scan_ms: float = 0.01
) -> dict[str, Any]:
    ops = {
        "enqueue": (2000.0, 0.7),
        "enqueue_sent_mark": (1500.0, sent_mark_cpu_ms),
        "status_poll": (10000.0, 0.1),
        "payment": (1000.0, 1.4),
        "sold_out": (2000.0, 0.7),
    }
    side = {
        "invariants": {"oversold_units": 0},
        "shards": 8,
        "jobs": 100,
        "succeeded": 75,
        "out_of_stock": 25,
        "unfinished": 0,
        "payments_per_s": 1.0,
        "drain_s": 1.0,
        "p99_ms": 5.0,
        "refused_with_stock_left": 0,
    }
    return {
        "operations": {
            name: {"statements": 2 if name == "enqueue_sent_mark" else 1, "what": name, "levels": [_level(tps, cpu)]}
            for name, (tps, cpu) in ops.items()
        },
        "sold_out_line": {
            "line_jobs": 4000,
            "ended": 1000,
            "batch": 5000,
            "statement_timeout_ms": 5000,
            "statements": [
                {"queued": 4000, "ended": 1000, "seconds": 0.5, "cpu_ms": 440.0},
                {"queued": 3000, "ended": 0, "seconds": 0.03, "cpu_ms": 30.0},
            ],
            "scan_cpu_ms_per_queued_job": scan_ms,
            "end_cpu_ms_per_job": 0.4,
            "wal_bytes_per_job": 1200.0,
        },
        "hot_row": {
            "connections": 16,
            "commit_latency_method": "commit_delay",
            "levels": [_level(600.0, 1.0, 16, 0), _level(hot_at_5ms, 1.0, 16, 5)],
        },
        "lift": {
            "gain": shard_gain,
            "today": side | {"shards": 1},
            "sharded": side,
            "commit_delay_ms": 5,
            "connections": 16,
        },
        "knobs": {"shards": 8},
        "machine": {"cpus": 2, "load_average_1m": 1.0, "postgres": "18", "measured_at": "now"},
    }


def test_a_shopper_polls_as_reads_py_advises_while_its_eta_runs_down() -> None:
    settings = Settings()

    # 0.75 x ETA clamped to 0.5 .. 10 s: every 0.5 s below 0.67 s of ETA, every 10 s above 13.3 s
    assert polls_while_waiting(0.5, settings) == pytest.approx(1 + 1.0)
    assert polls_while_waiting(113.3, settings) - polls_while_waiting(13.3, settings) == pytest.approx(10.0, abs=0.05)
    assert polls_while_waiting(30.0, Settings(poll_max_ms=30_000)) < polls_while_waiting(30.0, settings)


def _variants() -> dict[str, Variant]:
    return {v.name: v for v in ladder(8)}


def test_the_hot_row_is_the_first_limit_once_a_quarter_of_the_arrivals_exceed_what_it_allows() -> None:
    # Given a hot row that allows 120 payments/s at the assumed 5 ms commit
    m = Measured.from_report(_report(hot_at_5ms=120.0))
    today = _variants()["today"]

    # When 5,000 and 50,000 shoppers arrive within a minute (a quarter want the hot product)
    small, large = (simulate(n, m, today) for n in (5_000, 50_000))

    # Then 21/s is far below it and the queue keeps pace; 208/s is past it and a backlog builds
    assert small.max_wait_s == 0 and small.peak_backlog == 0
    assert large.max_wait_s > 0 and large.peak_backlog > 1000 and large.throttled_requests > 0


def test_sharding_the_hot_stock_by_the_measured_gain_lets_50000_shoppers_through_without_a_backlog() -> None:
    m = Measured.from_report(_report(hot_at_5ms=120.0, shard_gain=4.0))
    today, sharded = _variants()["today"], _variants()["+ stock shards"]

    assert simulate(50_000, m, today).peak_backlog > 0
    assert simulate(50_000, m, sharded).peak_backlog == 0


def test_a_bigger_database_drains_500000_shoppers_sooner() -> None:
    m = Measured.from_report(_report())
    sharded = _variants()["+ stock shards"]
    bigger = Variant("bigger", "test", hot_shards=8, db_vcpus=8, max_concurrency=100)

    assert simulate(500_000, m, bigger).drain_s < simulate(500_000, m, sharded).drain_s


def test_the_model_names_a_first_limit_per_size_and_renders_a_block() -> None:
    report = _report()
    report["model"] = model(report)

    sizes = report["model"]["sizes"]
    assert [s["shoppers"] for s in sizes] == list(SIZES)
    assert sizes[1]["first_limit"] == "hot product row lock"
    text = render(report)
    assert text.startswith("<!-- capacity:begin") and text.rstrip().endswith("<!-- capacity:end -->")
    assert "| 50,000 |" in text


def test_the_shared_figure_and_sold_out_at_once_take_the_waiting_off_the_api_and_the_database() -> None:
    # Given the same sale before the line's lifts and today (the figure on CloudFront, sold out at once)
    m = Measured.from_report(_report(hot_at_5ms=120.0))
    before, today = _variants()["before the line's lifts"], _variants()["today"]

    # When 50,000 shoppers arrive within a minute
    old, new = simulate(50_000, m, before), simulate(50_000, m, today)

    # Then the waiting reads reach the API and the database a fraction as often, CloudFront serves the
    # rest, fewer requests are throttled, and the sale drains no later
    assert new.peak_poll_rps < old.peak_poll_rps / 2
    assert new.peak_figure_rps > new.peak_poll_rps and old.peak_figure_rps == 0
    assert new.throttled_requests < old.throttled_requests / 10
    assert new.drain_s <= old.drain_s


def test_the_previous_releases_enqueue_costs_the_database_its_two_measured_statements() -> None:
    # Given enqueue measured at 0.7 ms of server CPU, and with the sent mark after it at 1.4 ms
    m = Measured.from_report(_report(sent_mark_cpu_ms=1.4))
    before, today = _variants()["before the line's lifts"], _variants()["today"]

    # When 5,000 shoppers arrive (no backlog, so no polls: the enqueues and payments alone)
    old, new = simulate(5_000, m, before), simulate(5_000, m, today)

    # Then the previous release's enqueue costs its two statements' CPU and round trips
    assert old.peak_db_util - new.peak_db_util == pytest.approx(5_000 / 60 * (1.4 - 0.7) / 2000, abs=0.002)
    assert enqueue_ms(m, before) > enqueue_ms(m, today)


def test_buyers_of_the_sold_out_product_leave_at_once_or_are_refused_at_enqueue() -> None:
    # Given a quarter of the shoppers buying the hot product, with stock for a tenth of them
    m = Measured.from_report(_report(hot_at_5ms=120.0))
    before, today = _variants()["before the line's lifts"], _variants()["today"]

    # When 50,000 shoppers arrive
    old, new = simulate(50_000, m, before), simulate(50_000, m, today)

    # Then today every buyer left without stock ends in bulk or is refused at enqueue, and before none did
    assert new.ended_sold_out > 0 and new.refused_sold_out > 0
    assert new.ended_sold_out + new.refused_sold_out == pytest.approx((HOT_SHARE - HOT_STOCK_SHARE) * 50_000, rel=0.02)
    assert old.ended_sold_out == old.refused_sold_out == 0


def test_the_sales_traffic_bills_the_figure_at_cloudfront_and_only_own_job_reads_at_the_api() -> None:
    m = Measured.from_report(_report(hot_at_5ms=120.0))
    before, today = _variants()["before the line's lifts"], _variants()["today"]
    old_sim, new_sim = simulate(50_000, m, before), simulate(50_000, m, today)

    old, new = sale_cost(50_000, m, before, old_sim), sale_cost(50_000, m, today, new_sim)

    assert old["cloudfront"] == 0 and new["cloudfront"] > 0
    assert new["api_gateway"] < old["api_gateway"]
    assert new["total"] == pytest.approx(sum(v for k, v in new.items() if k != "total"), abs=0.02)


def test_the_block_sets_the_largest_sale_under_the_previous_release_beside_today() -> None:
    report = _report()
    report["model"] = model(report)

    text = render(report)

    table = text.split("#### 500,000 shoppers: the previous release beside today's, then each lift")[1].split("####")[0]
    rows = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1:3] == ["| before the line's lifts", "| today"]


def test_a_bulk_end_past_the_statement_timeout_ends_no_one_and_its_retries_slow_the_line() -> None:
    # Given a bulk end that reads the line at 0.01 ms of CPU a job, and one that reads it at 1 ms (a
    # statement over a line of 5,000 jobs or more then runs past the 5 s statement timeout)
    cheap, dear = Measured.from_report(_report(scan_ms=0.01)), Measured.from_report(_report(scan_ms=1.0))
    today = _variants()["today"]

    # When 50,000 shoppers arrive
    fits, cut_off = simulate(50_000, cheap, today), simulate(50_000, dear, today)

    # Then the first ends the stranded buyers in bulk; the second ends none until the line has shrunk (the
    # rest are told in their turn), and the batches' failing retries hold the processors
    assert (
        cheap.bulk_end_ms(fits.line_at_sell_out, fits.stranded_at_sell_out)
        < 5000
        < dear.bulk_end_ms(cut_off.line_at_sell_out, cut_off.stranded_at_sell_out)
    )
    assert fits.ended_sold_out > 0.9 * fits.stranded_at_sell_out
    assert cut_off.ended_sold_out < 0.25 * cut_off.stranded_at_sell_out
    assert cut_off.drain_s > fits.drain_s

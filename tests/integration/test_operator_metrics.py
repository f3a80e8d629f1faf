"""The wait percentiles the operator page shows, from GET /v1/metrics."""

from __future__ import annotations

from functions.status.handler import handler as status_handler
from shared.bootstrap import App
from shared.services.wallet import process_wallet_job
from tests.integration.helpers import pay
from tests.integration.test_api_handlers import OPERATOR, call


def test_metrics_report_wait_p50_and_p95_per_window(app: App, demo: dict[str, int]) -> None:
    # Given three finished jobs that waited 1 s, 2 s and 10 s from acceptance to their end
    for i, wait_s in zip((1, 2, 3), (1, 2, 10), strict=True):
        job = pay(app, f"demo-user-{i}", f"k{i}").body["job_id"]
        process_wallet_job(app, job)
        app.db.execute(
            "UPDATE payment_jobs SET created_at = finished_at - make_interval(secs => %s) WHERE id = %s",
            (wait_s, job),
        )

    # When the operator reads the metrics
    status, body, _ = call(status_handler, "GET", "/v1/metrics", user="ops", scopes=[OPERATOR])

    # Then each window has the median and the 95th percentile of those waits
    assert status == 200
    for window in ("1m", "5m", "60m"):
        w = body["windows"][window]
        assert (w["processed"], w["p50_wait_s"], w["p95_wait_s"], w["avg_wait_s"]) == (3, 2.0, 9.2, 4.333)

"""The shopper's progress page and the operator page in real headless Chromium, against the
local runtime. Started with no processors (PQ_WORKERS=0) so a test decides when the workers run."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from local.workers import dead_letter
from tests.e2e.conftest import ARTIFACTS, Runtime, launch

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1100, "height": 900}
BURST = 30


@pytest.fixture
def paused(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    with launch(database_url, tmp_path, PQ_WORKERS="0", PQ_DEMO_USERS=str(BURST)) as rt:
        yield rt


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """New pages at a given size; each must finish without a script error or a console error."""
    contexts: list[Any] = []
    problems: list[str] = []

    def open_(viewport: dict[str, int], expected_status: int | None = None) -> Page:
        # Chromium logs every 4xx answer as a console error; a test that provokes one names it.
        expected = f"status of {expected_status} " if expected_status else None

        def on_console(msg: Any) -> None:
            if msg.type == "error" and not (expected and expected in msg.text):
                problems.append(msg.text)

        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        page: Page = context.new_page()
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", on_console)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert problems == []


def pending_order(rt: Runtime, user: str) -> int:
    row = rt.db.fetch_one("SELECT id FROM orders WHERE user_id = %s AND order_status = 'pending' ORDER BY id", (user,))
    assert row is not None
    return int(row["id"])


def enqueue(rt: Runtime, user: str) -> str:
    status, body = rt.request(
        "POST",
        "/v1/payments",
        rt.issuer.issue(user),
        {"order_id": pending_order(rt, user), "method": "wallet"},
        {"Idempotency-Key": f"pages-{user}"},
    )
    assert status == 202, body
    return str(body["job_id"])


def fits_the_screen(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def banner_url(rt: Runtime, page: str) -> str:
    found = re.search(rf"(http://\S+/static/{page}\S*)", rt.output.read_text())
    assert found, rt.output.read_text()
    return found.group(1)


def test_progress_page_follows_a_job_from_queued_to_paid(paused: Runtime, open_page: Any) -> None:
    # Given three shoppers ahead in the line, and the progress link the start-up message prints
    for i in (2, 3, 4):
        enqueue(paused, f"demo-user-{i}")
    link = banner_url(paused, r"progress\.html#order=")
    order = int(re.search(r"#order=(\d+)&token=", link).group(1))  # type: ignore[union-attr]
    assert paused.db.fetch_one("SELECT user_id, order_status FROM orders WHERE id = %s", (order,)) == {
        "user_id": "demo-user-1",
        "order_status": "pending",
    }
    page = open_page(PHONE)
    reads: dict[str, list[float]] = {"pay": [], "figure": [], "job": []}

    def on_request(request: Any) -> None:
        kind = "figure" if request.url.endswith("/v1/queue/now-serving") else None
        if request.url.endswith("/v1/payments"):
            kind = "pay"
        elif "/v1/payments/" in request.url and request.method == "GET":
            kind = "job"
        if kind:  # the browser's own start times: Playwright delivers events to Python in bursts
            reads[kind].append(request.timing["startTime"])

    page.on("requestfinished", on_request)

    # When the shopper opens it (token in the fragment) and pays
    page.goto(link)
    assert "token" not in page.url  # taken out of the address bar and this history entry
    page.get_by_role("button", name=f"Pay order #{order}").click()

    # Then the page shows the job waiting fourth in line, and, with no worker running (nothing
    # measured, the line not moving), says the wait is not known rather than promising one
    expect(page.locator("#state")).to_have_text("Waiting in line")
    expect(page.locator("#position")).to_have_text("4")
    expect(page.locator("#eta")).to_have_text("Not known yet")
    expect(page.locator("#detail")).to_contain_text("we can't estimate the wait")
    expect(page.get_by_role("status").filter(has_text="in line")).to_contain_text(
        "You are number 4 in line, the wait is not known yet."
    )
    assert fits_the_screen(page)
    page.locator("main").screenshot(path=ARTIFACTS / "progress-queued.png")

    # When the workers run
    paused.start_worker()

    # Then it ends paid, with the order reference, the bar full, and the order paid in the database
    expect(page.locator("#state")).to_have_text("Paid", timeout=30_000)
    expect(page.locator("#detail")).to_contain_text(f"Order #{order} is paid. Payment reference:")
    expect(page.locator("#bar")).to_have_attribute("value", "100")
    expect(page.locator("#announce")).to_contain_text("Paid.")
    page.locator("main").screenshot(path=ARTIFACTS / "progress-paid.png")
    assert paused.db.fetch_one("SELECT order_status FROM orders WHERE id = %s", (order,)) == {"order_status": "paid"}
    # And the 202 was its first reading of the line: the next read came the advised poll_after_ms (500 ms
    # at the least) after it, and so did every read of the same kind after the one before
    assert len(reads["pay"]) == 1 and reads["job"]
    assert min(reads["figure"] + reads["job"]) - reads["pay"][0] >= 450
    for kind in ("figure", "job"):
        gaps = [b - a for a, b in itertools.pairwise(sorted(reads[kind]))]
        assert not gaps or min(gaps) >= 450, (kind, gaps)


def test_a_waiting_shopper_follows_the_shared_figure_and_can_leave_the_line(paused: Runtime, open_page: Any) -> None:
    # Given two shoppers ahead, and a third's job page open while the line does not move
    for user in ("demo-user-2", "demo-user-3"):
        enqueue(paused, user)
    job = enqueue(paused, "demo-user-1")
    page = open_page(PHONE)
    reads: dict[str, list[float]] = {"figure": [], "job": []}

    def on_request(request: Any) -> None:
        if request.url.endswith("/v1/queue/now-serving"):
            reads["figure"].append(request.timing["startTime"])
        elif request.url.endswith(f"/v1/payments/{job}") and request.method == "GET":
            reads["job"].append(request.timing["startTime"])

    page.on("requestfinished", on_request)
    page.goto(f"{paused.base}/static/progress.html#job={job}&token={paused.issuer.issue('demo-user-1')}")
    expect(page.locator("#position")).to_have_text("3")

    # When it has waited a few of the figure's seconds
    deadline = time.monotonic() + 20
    while len(reads["figure"]) < 3 and time.monotonic() < deadline:
        page.wait_for_timeout(250)

    # Then it read the shared figure, and its own job only once a JOB_CHECK_MS (60 s) at most
    assert len(reads["figure"]) >= 3
    assert reads["job"] and all(b - a >= 59_000 for a, b in itertools.pairwise(sorted(reads["job"])))
    expect(page.locator("#position")).to_have_text("3")

    # And when the shopper leaves the line, the job ends cancelled and the page says so
    page.get_by_role("button", name="Leave the line").click()
    expect(page.locator("#state")).to_have_text("Payment failed")
    expect(page.locator("#detail")).to_have_text("You left the line. Nothing was charged.")
    expect(page.get_by_role("button", name="Leave the line")).to_be_hidden()
    row = paused.db.fetch_one("SELECT status, reason FROM payment_jobs WHERE id = %s", (job,))
    assert row == {"status": "failed", "reason": "cancelled"}


def test_failed_job_shows_its_reason_in_plain_words(paused: Runtime, open_page: Any) -> None:
    # Given a shopper whose wallet holds less than the order total, and one whose item sold out
    paused.db.execute("UPDATE wallets SET balance_paise = 100 WHERE user_id = 'demo-user-1'")
    sold_out = pending_order(paused, "demo-user-2")
    poor_job, sold_out_job = enqueue(paused, "demo-user-1"), enqueue(paused, "demo-user-2")
    # Sold out once in line (an order holding a product already sold out is refused at once).
    paused.db.execute(
        "UPDATE products SET stock = 0 WHERE id IN (SELECT (i->>'product_id')::bigint FROM orders, "
        "jsonb_array_elements(items) i WHERE orders.id = %s)",
        (sold_out,),
    )
    paused.start_worker()
    expected = {
        ("demo-user-1", poor_job): "Your wallet balance is lower than the order total. Nothing was charged",
        ("demo-user-2", sold_out_job): "An item in your order sold out before we could reserve it.",
    }

    for (user, job), message in expected.items():
        # When the shopper follows the job's link
        page = open_page(PHONE)
        page.goto(f"{paused.base}/static/progress.html#job={job}&token={paused.issuer.issue(user)}")

        # Then the page says it failed and why, in words, not the reason code
        expect(page.locator("#state")).to_have_text("Payment failed", timeout=30_000)
        expect(page.locator("#detail")).to_contain_text(message)
        expect(page.locator("#announce")).to_contain_text("Payment failed. " + message)
        assert "_" not in page.locator("#detail").inner_text()
        expect(page.locator("#queue-facts")).to_be_hidden()
    page.locator("main").screenshot(path=ARTIFACTS / "progress-failed.png")


def test_a_paid_order_shows_paid_and_never_offers_pay_again(paused: Runtime, open_page: Any) -> None:
    # Given the shop's link to an order, paid from the page
    link = banner_url(paused, r"progress\.html#order=")
    order = int(re.search(r"#order=(\d+)&token=", link).group(1))  # type: ignore[union-attr]
    page = open_page(PHONE)
    page.goto(link)
    page.get_by_role("button", name=f"Pay order #{order}").click()
    paused.start_worker()
    expect(page.locator("#state")).to_have_text("Paid", timeout=30_000)

    # When the shopper follows the shop's link to that order again, in another tab
    again = page.context.new_page()
    again.goto(link)
    # Then it shows the order paid, with no Pay button
    expect(again.locator("#state")).to_have_text("Paid")
    expect(again.locator("#detail")).to_contain_text(f"Order #{order} is paid.")
    expect(again.get_by_role("button", name=re.compile("^Pay order"))).to_be_hidden()

    # And an order paid somewhere this browser never saw shows paid once the service says so
    other = pending_order(paused, "demo-user-2")
    enqueue(paused, "demo-user-2")
    deadline = time.monotonic() + 30
    while paused.db.fetch_one("SELECT order_status FROM orders WHERE id = %s", (other,)) != {"order_status": "paid"}:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    fresh = open_page(PHONE)
    fresh.goto(f"{paused.base}/static/progress.html#order={other}&token={paused.issuer.issue('demo-user-2')}")
    expect(fresh.locator("#state")).to_have_text("Paid")
    expect(fresh.locator("#detail")).to_contain_text(f"Order #{other} is paid.")
    expect(fresh.get_by_role("button", name=re.compile("^Pay order"))).to_be_hidden()
    assert paused.db.fetch_one("SELECT count(*) n FROM payment_jobs WHERE order_id = %s", (other,)) == {"n": 1}


def test_a_failed_payment_offers_the_next_step_and_a_retry_that_pays(paused: Runtime, open_page: Any) -> None:
    # Given a shopper whose wallet holds less than the order total, following the failed payment
    paused.db.execute("UPDATE wallets SET balance_paise = 100 WHERE user_id = 'demo-user-1'")
    job = enqueue(paused, "demo-user-1")
    paused.start_worker()
    page = open_page(PHONE)
    page.goto(f"{paused.base}/static/progress.html#job={job}&token={paused.issuer.issue('demo-user-1')}")
    expect(page.locator("#state")).to_have_text("Payment failed", timeout=30_000)

    # Then the page says what to do next, and offers to try again
    expect(page.locator("#next-step")).to_have_text("Add money to your wallet, then try again.")
    retry = page.get_by_role("button", name="Try the payment again")
    expect(retry).to_be_visible()
    assert fits_the_screen(page)

    # When the shopper tops up the wallet and tries again
    paused.db.execute("UPDATE wallets SET balance_paise = 100000000 WHERE user_id = 'demo-user-1'")
    retry.click()

    # Then a new payment of the same order is made, and it ends paid
    expect(page.locator("#state")).to_have_text("Paid", timeout=30_000)
    expect(retry).to_be_hidden()
    rows = paused.db.fetch_all("SELECT status FROM payment_jobs WHERE user_id = 'demo-user-1' ORDER BY created_at", ())
    assert [r["status"] for r in rows] == ["failed", "succeeded"]


def rupees(paise: int) -> str:
    """As the pages show an amount (en-IN, which groups like this below 1,00,000)."""
    return f"₹{paise / 100:,.2f}"


def open_order(rt: Runtime, page: Page, user: str) -> tuple[int, int]:
    """The progress page on one of the user's pending orders: (order id, total in paise)."""
    order = pending_order(rt, user)
    total = rt.db.fetch_one("SELECT total_paise FROM orders WHERE id = %s", (order,))
    assert total is not None
    page.goto(f"{rt.base}/static/progress.html#order={order}&token={rt.issuer.issue(user)}")
    expect(page.locator("#order-total")).to_have_text(rupees(total["total_paise"]))
    return order, int(total["total_paise"])


def gateway_payment(rt: Runtime, order: int) -> dict[str, Any]:
    row = rt.db.fetch_one(
        "SELECT method, gateway_ref, amount_paise FROM payment_transactions WHERE order_id = %s", (order,)
    )
    assert row is not None
    return row


def test_a_shopper_pays_an_order_by_razorpay_from_the_progress_page(paused: Runtime, open_page: Any) -> None:
    # Given a shopper's order on the progress page, which shows its total and every way to pay it
    page = open_page(PHONE)
    order, total = open_order(paused, page, "demo-user-5")
    for way in ("Your wallet balance", "Razorpay", "Cashfree"):
        expect(page.get_by_label(way)).to_be_visible()
    assert fits_the_screen(page)
    page.locator("main").screenshot(path=ARTIFACTS / "progress-choose.png")

    # When the shopper chooses Razorpay and pays in Razorpay's checkout (the simulator's stand-in for
    # checkout.js): the first attempt is declined, the second goes through
    page.get_by_label("Razorpay").check()
    page.get_by_role("button", name=f"Pay order #{order}").click()
    checkout = page.frame_locator("iframe[title^='Razorpay checkout']")
    expect(checkout.locator("#amount")).to_have_text(rupees(total))
    page.screenshot(path=ARTIFACTS / "progress-razorpay-checkout.png")
    checkout.get_by_role("button", name="Fail the payment").click()
    expect(page.locator("#announce")).to_contain_text("The payment did not go through")
    checkout.get_by_role("button", name="Pay successfully").click()

    # Then the page follows the payment's job, and once the queue runs it, the order is paid by Razorpay
    expect(page.locator("#state")).to_have_text(re.compile("Waiting in line|Processing your payment"))
    expect(page.locator("iframe")).to_have_count(0)
    paused.start_worker()
    expect(page.locator("#state")).to_have_text("Paid", timeout=30_000)
    expect(page.locator("#order-line")).to_contain_text(rupees(total))
    paid = gateway_payment(paused, order)
    assert (paid["method"], paid["amount_paise"]) == ("razorpay", total)
    assert str(paid["gateway_ref"]).startswith("pay_")


def test_a_shopper_pays_an_order_by_cashfree_from_the_progress_page(paused: Runtime, open_page: Any) -> None:
    # Given a shopper's order on the progress page
    page = open_page(PHONE)
    order, total = open_order(paused, page, "demo-user-6")
    pay = page.get_by_role("button", name=f"Pay order #{order}")

    # When the shopper chooses Cashfree, a payment is declined and they close Cashfree's checkout
    page.get_by_label("Cashfree").check()
    pay.click()
    checkout = page.frame_locator("iframe[title^='Cashfree checkout']")
    expect(checkout.locator("#amount")).to_have_text(rupees(total))
    checkout.get_by_role("button", name="Fail the payment").click()
    expect(checkout.locator("#status")).to_contain_text("The payment failed")
    checkout.get_by_role("button", name="Close").click()

    # Then the page says nothing was paid and offers to pay again
    expect(page.get_by_role("alert")).to_contain_text("closed before a payment was made")
    expect(pay).to_be_enabled()
    assert paused.db.fetch_one("SELECT count(*) n FROM payment_jobs WHERE order_id = %s", (order,)) == {"n": 0}

    # When they pay again and it goes through
    pay.click()
    checkout.get_by_role("button", name="Pay successfully").click()

    # Then the order is paid by Cashfree
    expect(page.locator("#state")).to_have_text(re.compile("Waiting in line|Processing your payment"))
    paused.start_worker()
    expect(page.locator("#state")).to_have_text("Paid", timeout=30_000)
    paid = gateway_payment(paused, order)
    assert (paid["method"], paid["amount_paise"]) == ("cashfree", total)


def test_a_shopper_who_paid_by_razorpay_can_leave_the_line_and_the_order_is_not_paid(
    paused: Runtime, open_page: Any
) -> None:
    # Given a shopper who paid an order in Razorpay's checkout and waits in line (the line not moving)
    page = open_page(PHONE)
    order, _ = open_order(paused, page, "demo-user-7")
    page.get_by_label("Razorpay").check()
    page.get_by_role("button", name=f"Pay order #{order}").click()
    page.frame_locator("iframe[title^='Razorpay checkout']").get_by_role("button", name="Pay successfully").click()
    expect(page.locator("#state")).to_have_text("Waiting in line")

    # When they leave the line
    page.get_by_role("button", name="Leave the line").click()

    # Then the page says the payment goes back in their turn, and offers no second leave
    expect(page.locator("#detail")).to_contain_text("You asked to leave the line.")
    expect(page.get_by_role("button", name="Leave the line")).to_be_hidden()

    # And when the line moves, the job fails cancelled and the order is not paid with the payment
    paused.start_worker()
    expect(page.locator("#state")).to_have_text("Payment failed", timeout=30_000)
    expect(page.locator("#detail")).to_contain_text("You left the line.")
    row = paused.db.fetch_one("SELECT status, reason FROM payment_jobs WHERE order_id = %s", (order,))
    assert row == {"status": "failed", "reason": "cancelled"}
    assert paused.db.fetch_one("SELECT order_status FROM orders WHERE id = %s", (order,)) == {"order_status": "pending"}


def test_the_progress_page_lets_in_the_gateways_scripts_and_nothing_else(paused: Runtime, open_page: Any) -> None:
    # Given the progress page as the local API serves it
    page = open_page(PHONE)
    response = page.goto(f"{paused.base}/static/progress.html")
    assert response is not None

    # Then its policy lets scripts and frames come from our origin and the gateways' (here the simulator) only
    policy = response.headers["content-security-policy"]
    sim = f"http://127.0.0.1:{paused.env['PQ_GATEWAY_SIM_PORT']}"
    assert f"script-src 'self' {sim};" in policy
    assert f"frame-src {sim};" in policy
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy


def test_operator_page_shows_the_depth_fall_to_zero_during_a_burst(paused: Runtime, open_page: Any) -> None:
    # Given the operator page, refreshing every 250 ms, on an idle queue
    page = open_page(DESKTOP)
    page.goto(banner_url(paused, r"operator\.html#token=") + "&every=250")
    expect(page.locator("#depth")).to_have_text("0")
    expect(page.locator("#db-connections")).to_contain_text(" / ")

    # When a small burst of shoppers pays before any worker runs
    for i in range(1, BURST + 1):
        enqueue(paused, f"demo-user-{i}")

    # Then the page shows the whole burst waiting
    expect(page.locator("#depth")).to_have_text(str(BURST))
    expect(page.locator("#eta-drain")).to_have_text("stalled")
    page.screenshot(path=ARTIFACTS / "operator-burst.png", full_page=True)

    # When the workers run, Then the depth falls to zero and the burst shows as throughput and successes
    paused.start_worker()
    expect(page.locator("#depth")).to_have_text("0", timeout=30_000)
    expect(page.locator("#throughput")).to_have_text(str(BURST))
    expect(page.locator("#success-rate")).to_have_text("100%")
    expect(page.locator("#chart-depth")).to_have_attribute("aria-label", f"Queue depth: now 0, peak {BURST}")
    expect(page.locator("#windows-body tr").first).to_contain_text(str(BURST))
    page.wait_for_timeout(600)  # a few more samples, so the chart shows the fall
    page.screenshot(path=ARTIFACTS / "operator-drained.png", full_page=True)

    # And each chart has a value axis from 0 to its top and a time axis from its start to now
    depth = page.locator("figure", has=page.locator("#chart-depth"))
    expect(depth.locator(".y-max")).to_have_text(str(BURST))
    expect(depth.locator(".y-min")).to_have_text("0")
    clock = re.compile(r"^\d{1,2}:\d{2}:\d{2}")
    expect(depth.locator(".x-start")).to_have_text(clock)
    expect(depth.locator(".x-end")).to_have_text(clock)
    assert depth.locator("svg line.axis").count() == 2

    # And the page fits a phone screen too, every table (the windows table too) with every column in view
    page.set_viewport_size(PHONE)
    assert fits_the_screen(page)
    assert page.evaluate(
        "[...document.querySelectorAll('.table-wrap')].filter((w) => w.offsetParent !== null)"
        ".every((w) => w.scrollWidth <= w.clientWidth)"
    )
    expect(page.locator("#windows-body tr").first.locator("td")).to_have_count(7)
    page.screenshot(path=ARTIFACTS / "operator-phone.png", full_page=True)


def test_operator_redrives_the_dlq_from_the_page(paused: Runtime, open_page: Any) -> None:
    # Given two jobs that ran out of deliveries and sit in the DLQ
    jobs = [enqueue(paused, f"demo-user-{i}") for i in (1, 2)]
    messages = paused.db.fetch_all("SELECT * FROM pgmq.read('payments', 30, 10)")
    dead_letter(paused.db, messages, queue="payments", dlq="payments_dlq")
    page = open_page(DESKTOP)
    page.goto(
        f"{paused.base}/static/operator.html#every=250&token="
        + paused.issuer.issue("ops", scopes=("payments/operator",))
    )
    expect(page.locator("#dlq-depth")).to_have_text("2")

    # When the operator clicks Redrive
    page.get_by_role("button", name="Redrive to the payment queue").click()

    # Then the page reports the move, the DLQ is empty, and the workers pay both jobs
    expect(page.locator("#redrive-result")).to_have_text("Moved 2 jobs back to the payment queue.")
    expect(page.locator("#dlq-depth")).to_have_text("0")
    expect(page.get_by_role("button", name="Redrive to the payment queue")).to_be_disabled()
    paused.start_worker()
    expect(page.locator("#depth")).to_have_text("0", timeout=30_000)
    expect(page.locator("#throughput")).to_have_text("2")
    rows = paused.db.fetch_all("SELECT status FROM payment_jobs WHERE id = ANY(%s::uuid[])", (jobs,))
    assert [r["status"] for r in rows] == ["succeeded", "succeeded"]


def test_operator_page_lists_a_dead_lettered_job_with_its_last_error(paused: Runtime, open_page: Any) -> None:
    # Given a message naming a job that does not exist, which a worker sends to the DLQ at once
    ghost = "00000000-0000-4000-8000-0000000000d1"
    paused.db.execute(
        "SELECT pq_local_send('payments', %s::jsonb[], %s::jsonb[])",
        ([json.dumps({"job_id": ghost, "user_id": "demo-user-1", "order_id": 1})], ['{"x-pgmq-group": "demo-user-1"}']),
    )
    paused.start_worker()

    # When the operator opens the page
    page = open_page(DESKTOP)
    page.goto(
        f"{paused.base}/static/operator.html#every=250&token="
        + paused.issuer.issue("ops", scopes=("payments/operator",))
    )

    # Then the DLQ section names the job, its delivery and why it can never succeed
    expect(page.locator("#dlq-depth")).to_have_text("1", timeout=30_000)
    row = page.locator("#dlq-jobs tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(0)).to_have_text(ghost)
    expect(row.locator("td").nth(3)).to_contain_text("job_not_found")
    expect(row.locator("td").nth(4)).to_have_text("1")


def test_operator_page_without_the_operator_scope_asks_for_another_token(paused: Runtime, open_page: Any) -> None:
    page = open_page(PHONE, expected_status=403)
    page.goto(f"{paused.base}/static/operator.html#token={paused.issuer.issue('demo-user-1')}")

    expect(page.get_by_role("alert")).to_contain_text("lacks the operator scope")
    expect(page.get_by_label("Operator bearer token")).to_be_visible()

    page.get_by_label("Operator bearer token").fill(paused.issuer.issue("ops", scopes=("payments/operator",)))
    page.get_by_role("button", name="Open the operator view").click()
    expect(page.locator("#depth")).to_have_text("0")


def test_operator_drops_a_poison_job_from_the_page(paused: Runtime, open_page: Any) -> None:
    # Given a job whose message can never succeed (it says Razorpay of a wallet payment), which a worker
    # sends to the DLQ at first sight
    job = enqueue(paused, "demo-user-1")
    paused.db.execute(
        "UPDATE pgmq.q_payments SET message = message || '{\"method\": \"razorpay\"}' WHERE headers->>'job_id' = %s",
        (job,),
    )
    paused.start_worker()
    page = open_page(PHONE)
    page.goto(
        f"{paused.base}/static/operator.html#every=250&token="
        + paused.issuer.issue("ops", scopes=("payments/operator",))
    )
    expect(page.locator("#dlq-depth")).to_have_text("1", timeout=30_000)
    expect(page.locator("#dlq-jobs tr")).to_have_count(1)
    drop = page.get_by_role("button", name=f"Drop job {job}")

    # And on a phone the DLQ's table keeps every column in view
    page.screenshot(path=ARTIFACTS / "operator-dlq-phone.png", full_page=True)
    assert fits_the_screen(page)
    assert page.evaluate("(w => w.scrollWidth <= w.clientWidth)(document.getElementById('dlq-jobs-wrap'))")

    # When the operator clicks Drop but does not confirm, Then nothing is sent
    page.once("dialog", lambda dialog: dialog.dismiss())
    drop.click()
    expect(drop).to_be_enabled()
    expect(page.locator("#drop-result")).to_have_text("")

    # When the operator clicks Drop and confirms
    page.once("dialog", lambda dialog: dialog.accept())
    drop.click()

    # Then the page says so, the DLQ is empty, and the job has ended failed, recorded as the operator's drop
    expect(page.locator("#drop-result")).to_have_text(f"Dropped job {job} (by ops): it has ended failed.")
    expect(page.locator("#dlq-depth")).to_have_text("0")
    expect(page.locator("#dlq-jobs-wrap")).to_be_hidden()
    ended = paused.db.fetch_one("SELECT status, reason FROM payment_jobs WHERE id = %s", (job,))
    assert ended == {"status": "failed", "reason": "dropped_by_operator"}
    recorded = paused.db.fetch_one("SELECT dropped_by FROM dead_letter_drops WHERE job_id = %s", (job,))
    assert recorded == {"dropped_by": "ops"}

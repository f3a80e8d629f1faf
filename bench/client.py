"""Load clients: USERS shoppers at once, each on its own connection, with aiohttp.

(httpx's async client failed with protocol errors at 5,000 concurrent connections here; aiohttp
held them.)
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

import aiohttp


@dataclass
class Shopper:
    user_id: str
    order_id: int
    token: str


@dataclass
class Result:
    user_id: str
    status: int = 0
    job_id: str | None = None
    final: str | None = None  # succeeded | failed | error
    reason: str | None = None
    sent_at: float = 0.0
    answered_at: float = 0.0
    done_at: float = 0.0
    polls: list[float] = field(default_factory=list)  # latency of each poll, the shared figure's or the job's (s)
    job_polls: int = 0  # of those, reads of the shopper's own job (the rest: the shared now-serving figure)
    # The first ETA the shopper was shown (s), and from when the server counted it: None for its 202's (from
    # the job's acceptance), else the epoch of the shared figure it came from (its as_of). For the ETA error.
    predicted_eta_s: float | None = None
    predicted_from: float | None = None
    error: str | None = None


class Progress:
    """One line on stderr: accepted / done while the run goes."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.accepted = self.done = 0
        self._last = 0.0

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.25:
            return
        self._last = now
        width = 30
        filled = int(width * self.done / max(1, self.total))
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] accepted {self.accepted}/{self.total}"
            f"  done {self.done}/{self.total} "
        )
        sys.stderr.flush()

    def finish(self) -> None:
        self.tick(force=True)
        sys.stderr.write("\n")


def _connector() -> aiohttp.TCPConnector:
    # No pool limit: 5,000 shoppers asking at once each get a connection, as 5,000 browsers would.
    return aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False, enable_cleanup_closed=True)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A run of the load clients with Python's cyclic collector paused. The client shares the machine's cores
    with what it measures, and with thousands of shoppers' tasks alive its collections walked them all again
    and again: a fifth of its CPU in a 5,000-shopper run (perf, gc_collect_main and its visitors). The cycles a
    run leaves wait for the collector's next pass after it."""
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


# One timer per shopper instead (asyncio.timeout in _pay_and_poll): a read timeout (sock_read) is re-armed
# on every chunk received, which cost the client a sixth of its CPU in a 5,000-shopper run (py-spy).
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=60)


async def _pay_and_poll(
    session: aiohttp.ClientSession,
    base: str,
    shopper: Shopper,
    *,
    start: asyncio.Event,
    progress: Progress,
    timeout_s: float,
    method_body: Callable[[Shopper], dict[str, Any]],
) -> Result:
    result = Result(user_id=shopper.user_id)
    headers = {"Authorization": f"Bearer {shopper.token}", "Idempotency-Key": f"bench-{shopper.order_id}"}
    await start.wait()
    deadline = time.monotonic() + timeout_s
    result.sent_at = time.time()
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(f"{base}/v1/payments", json=method_body(shopper), headers=headers) as resp:
                result.status = resp.status
                body = await resp.json()
            result.answered_at = time.time()
            if resp.status == 409 and body.get("error", {}).get("code") == "sold_out":
                # Told at once, with no job: an answer, not an error (shared/sql/line.sql).
                result.final, result.reason, result.done_at = "failed", "sold_out", result.answered_at
                return result
            if resp.status != 202:
                result.final, result.error = "error", str(body)
                return result
            progress.accepted += 1
            result.job_id = body["job_id"]
            await _wait_in_line(session, base, body, headers=headers, result=result, deadline=deadline)
            return result
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        result.final, result.error = "error", f"{type(exc).__name__}: {exc}"
        return result
    finally:
        progress.done += result.final is not None
        progress.tick()


# Read the own job anyway after this long without reading it (something other than the line moving may
# have ended it: a sold-out product, a cancellation elsewhere).
JOB_CHECK_S = 60.0
# The advice a waiting client follows between two reads of the figure, as the job view gives it
# (shared/services/reads.py): 0.75 of the wait, at least 0.5 s, at most 10 s.
POLL_AT_ETA, POLL_MIN_S, POLL_MAX_S = 0.75, 0.5, 10.0


def _due(view: dict[str, Any]) -> bool:
    """A view of the job (its 202, or a read of it) says its number is about due: first in line, or its ETA
    within a second (its place within a second's worth of the line's rate)."""
    eta_s = view.get("eta_seconds")
    return bool(view.get("position", 2) <= 1 or (eta_s is not None and eta_s <= 1.0))


async def _wait_in_line(
    session: aiohttp.ClientSession,
    base: str,
    accepted: dict[str, Any],
    *,
    headers: dict[str, str],
    result: Result,
    deadline: float,
) -> None:
    """Wait as the progress page does: read the shared now-serving figure (no token, cacheable) and the
    own job only when its number comes up (within a second's worth of the line's rate) or every
    JOB_CHECK_S; the place in line is the job's number less the figure's serving, never rising. The 202
    is a reading of the line too: a job it says is due within the second reads itself first."""
    # Measured against the largest serving seen: a figure from the shared cache may be older than the 202.
    number, served = accepted["queue_number"], accepted.get("serving", 0)
    wait_s = accepted.get("poll_after_ms", 500) / 1000
    checked_at = time.monotonic()
    result.predicted_eta_s = accepted.get("eta_seconds")
    due = _due(accepted)
    while time.monotonic() < deadline:
        await asyncio.sleep(wait_s)
        if not due:
            polled = time.monotonic()
            # Relative to the API locally, CloudFront's absolute URL on AWS (as the progress page reads it).
            async with session.get(urljoin(base, accepted["now_serving_url"])) as resp:
                figure = await resp.json()
            result.polls.append(time.monotonic() - polled)
            served = max(served, figure["serving"])
            position, per_s = max(1, number - served), figure["per_s"]
            if per_s and result.predicted_eta_s is None:
                result.predicted_eta_s = position / per_s
                result.predicted_from = datetime.fromisoformat(figure["as_of"]).timestamp()
            due = position <= max(1.0, per_s or 0.0) or time.monotonic() - checked_at >= JOB_CHECK_S
            if not due:
                # With no measured rate yet (the sale's first seconds), the last wait grows by half from the
                # 202's advice instead of a fixed second: thousands of shoppers reading the figure every second
                # would be the API's (or CloudFront's) whole load while the line has not moved.
                eta_s = position / per_s if per_s else None
                wait_s = min(POLL_MAX_S, max(POLL_MIN_S, POLL_AT_ETA * eta_s if eta_s is not None else wait_s * 1.5))
                continue
        checked_at = polled = time.monotonic()
        async with session.get(f"{base}{accepted['status_url']}", headers=headers) as resp:
            state = await resp.json()
        result.polls.append(time.monotonic() - polled)
        result.job_polls += 1
        if state["status"] in ("succeeded", "failed"):
            result.final, result.reason = state["status"], state.get("reason")
            result.done_at = time.time()
            return
        # Still waiting: the job's view is a reading of the line too, with its own advice.
        served = max(served, state.get("serving", 0))
        due, wait_s = _due(state), state.get("poll_after_ms", 500) / 1000
    result.final, result.error = "error", "timed out polling"


async def run_queue_clients(
    base: str,
    shoppers: list[Shopper],
    *,
    timeout_s: float = 300,
    method_body: Callable[[Shopper], dict[str, Any]] | None = None,
) -> tuple[float, list[Result]]:
    """All shoppers POST at once, then poll as advised until their job is terminal.

    Returns the wall-clock time of the start signal and the results.
    """
    body = method_body or (lambda s: {"order_id": s.order_id, "method": "wallet"})
    progress = Progress(len(shoppers), "queue   ")
    start = asyncio.Event()
    # One pool for all (a shopper's requests take whichever connection is idle): locally the API's processes
    # each accept their own connections (SO_REUSEPORT), and a connection held per shopper, as a browser holds
    # it, pinned each shopper to one process, queued it behind that process's backlog and drained ~15% slower.
    with _collector_paused():
        async with aiohttp.ClientSession(connector=_connector(), timeout=_TIMEOUT) as session:
            tasks = [
                asyncio.create_task(
                    _pay_and_poll(
                        session, base, s, start=start, progress=progress, timeout_s=timeout_s, method_body=body
                    )
                )
                for s in shoppers
            ]
            await asyncio.sleep(0.2)  # every task is parked on the start signal
            t0 = time.time()
            start.set()
            results = await asyncio.gather(*tasks)
    progress.finish()
    return t0, list(results)


async def _pay_sync(
    session: aiohttp.ClientSession, url: str, shopper: Shopper, start: asyncio.Event, progress: Progress
) -> Result:
    result = Result(user_id=shopper.user_id)
    await start.wait()
    result.sent_at = time.time()
    try:
        async with session.post(
            url, json={"order_id": shopper.order_id}, headers={"Authorization": f"Bearer {shopper.token}"}
        ) as resp:
            result.status = resp.status
            body = await resp.json()
        result.answered_at = result.done_at = time.time()
        result.final = body.get("status", "error") if resp.status < 500 else "error"
        result.reason = body.get("reason")
        if result.final == "error":
            result.error = str(body)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        result.answered_at = result.done_at = time.time()
        result.final, result.error = "error", f"{type(exc).__name__}: {exc}"
    progress.accepted += 1
    progress.done += 1
    progress.tick()
    return result


async def run_sync_clients(url: str, shoppers: list[Shopper]) -> tuple[float, list[Result]]:
    """The baseline's clients: one synchronous POST each, held open until the payment is done."""
    progress = Progress(len(shoppers), "baseline")
    start = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=600)
    with _collector_paused():
        async with aiohttp.ClientSession(connector=_connector(), timeout=timeout) as session:
            tasks = [asyncio.create_task(_pay_sync(session, url, s, start, progress)) for s in shoppers]
            await asyncio.sleep(0.2)
            t0 = time.time()
            start.set()
            results = await asyncio.gather(*tasks)
    progress.finish()
    return t0, list(results)

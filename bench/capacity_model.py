"""The capacity model of docs/capacity.md: measured database costs (bench/capacity.py) plus AWS
quotas and the prod configuration (infra/config.py), per sale size; and the document's block.

Every number is one of: a quota (cited beside it), the prod config, a measurement from
capacity.json, or an ASSUMED_* constant (named as such in the document, to be replaced by what
the locust run against a deployed stack shows; bench/locustfile.py says what to read).
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from infra.config import PROD
from shared.gateway_limits import bucket
from shared.settings import Settings

SIZES = (5_000, 50_000, 500_000)
# vCPUs of prod's instance class (db.m7g.large, infra/config.py); the measured server CPU per
# operation is scaled to it as if one vCPU there did what one core does here.
DB_VCPUS = 2
ARRIVAL_WINDOW_S = 60.0
# The benchmark's sale (bench/flash_sale.Knobs.plan): a quarter of the shoppers also buy the hot
# product, which has stock for a tenth of them.
HOT_SHARE = 0.25
HOT_STOCK_SHARE = 0.10
# The share paying through a gateway in `make bench METHODS=mix` (GATEWAY_SHARE).
GATEWAY_SHARE = 0.10
# Requests one gateway payment makes at most (fetch, capture): shared/services/gateway.py.
GATEWAY_CALLS_PER_PAYMENT = 2

# --- AWS quotas (ap-south-1, defaults) -----------------------------------------------------
# "Amazon API Gateway quotas" (docs.aws.amazon.com/apigateway/latest/developerguide/limits.html):
# 10,000 requests/s per account per Region across HTTP, REST and WebSocket APIs, burst bucket 5,000
# (adjustable, L-8A5B8E43; Asia Pacific (Mumbai) is not among the Regions whose default is 2,500).
# Our own stage throttle is below it: PROD.api.throttle_rate_per_second (infra/config.py).
API_ACCOUNT_RPS = 10_000
API_ACCOUNT_BURST = 5_000
# "Lambda scaling behavior": each function gains at most 1,000 execution environments every 10 s.
LAMBDA_SCALE_PER_10S = 1_000
# "Lambda quotas": 1,000 concurrent executions per account per Region by default (adjustable).
LAMBDA_ACCOUNT_CONCURRENCY = 1_000
# "Amazon SQS message quotas", high throughput FIFO, non-batched calls: up to 9,000 transactions/s
# per API action in Asia Pacific (Mumbai) (70,000 in N. Virginia, Oregon, Ireland); each
# message group (one partition's share) 300 transactions/s per action.
SQS_FIFO_HT_TPS = 9_000
SQS_FIFO_GROUP_TPS = 300
# "Amazon EventBridge quotas": rule invocations (an event matched and sent to a target) 1,100/s
# in every Region not listed (ap-south-1 is not); past it invocations are delayed, not dropped.
EVENTBRIDGE_INVOCATIONS_PER_S = 1_100
# PutEvents requests/s (each up to 10 entries): 10,000 in us-east-1, less elsewhere. ASSUMED 400
# for ap-south-1 until read from Service Quotas (the quota page lists it per Region).
EVENTBRIDGE_PUTEVENTS_PER_S = 400
# SNS Publish (standard topics): 30,000/s in us-east-1, fewer elsewhere. ASSUMED 1,500 for
# ap-south-1 until read from Service Quotas ("Amazon SNS endpoints and quotas").
SNS_PUBLISH_PER_S = 1_500
# RDS Proxy's borrow timeout and connection budget: infra/config.py (prod).
# "Amazon CloudFront quotas": 250,000 requests/s per distribution (adjustable): the now-serving figure
# every waiting shopper reads (infra/components/waiting.py).
CLOUDFRONT_RPS = 250_000
# A waiting shopper reads its own job when its number comes up, and anyway after this long without
# reading it (bench/client.py JOB_CHECK_S, local/static/progress.js JOB_CHECK_MS).
JOB_CHECK_S = 60.0

# --- Prices (USD, ap-south-1, on demand, free tiers ignored as docs/deploy.md does) ---------------
# docs/deploy.md's always-on floor for prod (database, proxy, NAT gateways, endpoints, KMS, alarms):
# a month with no sale at all.
PROD_FLOOR_PER_MONTH = 418
# "Amazon API Gateway pricing" (aws.amazon.com/api-gateway/pricing): HTTP APIs, $1.00 per million
# requests up to 300 million a month. Counted here for every request the stage receives, the 429s
# included (the page bills "the API calls you receive"; a throttled call is received).
API_PER_MILLION = 1.00
# "AWS Lambda pricing" (aws.amazon.com/lambda/pricing): $0.20 per million requests and, Arm, $0.0000133334
# per GB-second in the first tier; docs/deploy.md assumes ap-south-1 charges the same.
LAMBDA_PER_MILLION = 0.20
LAMBDA_ARM_PER_GB_S = 0.0000133334
# The enqueue and status functions' memory (infra/components/functions.py, _Spec's default memory_mb).
API_FUNCTION_GB = 0.5
# The rest of a payment's traffic, per payment, as docs/deploy.md prices it: SQS FIFO $0.50 per million
# requests (one send, and a receive and a delete per batch), EventBridge $1.00 per million events, SNS
# $0.50 per million publishes, the notify function 0.3 s at 256 MB.
PAYMENT_TAIL_USD = (
    0.50e-6 * (1 + 2 / PROD.processor.batch_size) + 1.00e-6 + 0.50e-6 + LAMBDA_PER_MILLION / 1e6
) + 0.3 * 0.25 * LAMBDA_ARM_PER_GB_S
# "Amazon CloudFront pricing" (aws.amazon.com/cloudfront/pricing): data transfer out to the internet from
# edge locations in India $0.109 per GB (first 10 TB a month); origin fetches from an AWS origin free.
# HTTPS requests ASSUMED $0.0120 per 10,000 in India (the page's request table by geography; not in the
# copy read here: check it). The figure's origin requests (~1 a second, Origin Shield) are left out.
CLOUDFRONT_INDIA_PER_GB = 0.109
ASSUMED_CLOUDFRONT_HTTPS_PER_10K = 0.0120
# One now-serving answer as sent: its small JSON body and the response headers.
ASSUMED_FIGURE_BYTES = 600

# --- Assumptions (replace with the locust run's CloudWatch numbers) ------------------------
# Multi-AZ (instance deployment) commits after the standby's storage acknowledged the write:
# one inter-AZ round trip ("single-digit milliseconds" between AZs, AWS Regions and AZs page)
# plus the EBS write. 5 ms is the middle of that; the table shows the measured rate at each.
ASSUMED_MULTI_AZ_COMMIT_MS = 5
# Lambda -> RDS Proxy -> PostgreSQL and back, per statement (same VPC, proxy hop).
ASSUMED_PROXY_RTT_MS = 1.0
# One SendMessageBatch from the enqueue function (in-Region HTTPS, warm connection).
ASSUMED_SQS_SEND_MS = 8.0
# Lambda's own time per invocation beyond our code (API Gateway integration, runtime).
ASSUMED_INVOKE_OVERHEAD_MS = 3.0
# The processor's per-batch work beyond the payments: PutEvents + mark published + ESM delete.
ASSUMED_BATCH_OVERHEAD_MS = 25.0


@dataclass(frozen=True)
class Measured:
    enqueue_tps: float
    poll_tps: float
    payment_tps: float
    sold_out_tps: float
    # Each operation's median latency on one connection (the statements as a Lambda would wait for them)
    # and its statements (round trips).
    p50_ms: dict[str, float]
    statements: dict[str, int]
    hot_tps_at: dict[int, float]
    hot_ms_0: float
    wal: dict[str, dict[str, float | None]]
    cpu_ms: dict[str, float]
    # The hot product's payments/s with its stock in `shards` rows over one row, measured side by
    # side in the same run (bench/capacity.lift_demo), at `shard_delay_ms` of commit latency.
    shard_gain: float
    shards: int
    # The bulk end of a sold-out product's line (bench/capacity.measure_sold_out_line): server CPU per
    # queued job in line (what a statement that ends none costs: near nothing since it reads only the
    # product's jobs, through an index) and per job it ends, jobs a statement ends at most, and the
    # statement timeout past which it ends none.
    line_scan_ms: float = 0.0
    line_end_ms: float = 0.0
    line_batch: int = 1
    statement_timeout_ms: int = 0

    def bulk_end_ms(self, queued: float, to_end: float) -> float:
        """One bulk-end statement's server CPU over a line of `queued` jobs with `to_end` to end: the line's
        measured share, and at most a batch ended. One statement runs on one core, however many the
        instance has."""
        return queued * self.line_scan_ms + min(to_end, self.line_batch) * self.line_end_ms

    def capacity(self, operation: str, vcpus: int = DB_VCPUS) -> float:
        """What a database instance of `vcpus` can serve of an operation a second, from the server
        CPU one cost here (one vCPU there taken to do what one core does here)."""
        return vcpus * 1000.0 / self.cpu_ms[operation]

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> Measured:
        ops = report["operations"]
        if "enqueue_sent_mark" not in ops or "sold_out_line" not in report:
            raise SystemExit("the measurements predate the model's before/after rows: run make capacity again")

        def best(name: str) -> dict[str, Any]:
            return max(ops[name]["levels"], key=lambda lv: lv["tps"])

        def single(name: str) -> dict[str, Any]:
            return min(ops[name]["levels"], key=lambda lv: lv["connections"])

        hot = {int(lv["commit_delay_ms"]): float(lv["tps"]) for lv in report["hot_row"]["levels"]}
        zero = min(report["hot_row"]["levels"], key=lambda lv: lv["commit_delay_ms"])
        line = report["sold_out_line"]
        return cls(
            enqueue_tps=best("enqueue")["tps"],
            poll_tps=best("status_poll")["tps"],
            payment_tps=best("payment")["tps"],
            sold_out_tps=best("sold_out")["tps"],
            p50_ms={name: float(single(name)["p50_ms"]) for name in ops},
            statements={name: int(ops[name]["statements"]) for name in ops},
            hot_tps_at=hot,
            hot_ms_0=1000.0 / zero["tps"] if zero["tps"] else 1.0,
            shard_gain=float(report["lift"]["gain"] or 1.0),
            shards=int(report["lift"]["sharded"]["shards"]),
            line_scan_ms=float(line["scan_cpu_ms_per_queued_job"]),
            line_end_ms=max(1e-3, float(line["end_cpu_ms_per_job"])),
            line_batch=int(line["batch"]),
            statement_timeout_ms=int(line["statement_timeout_ms"]),
            # The median over the connection counts: contention on this shared machine inflates the
            # busiest level's number, the quietest one flatters it.
            cpu_ms={
                name: max(1e-3, statistics.median(float(lv["backend_cpu_ms_per_op"]) for lv in ops[name]["levels"]))
                for name in ops
            },
            wal={
                name: {
                    "bytes": best(name)["wal_bytes_per_op"],
                    "flushes": best(name)["wal_flushes_per_op"],
                }
                for name in ops
            },
        )

    def hot_rate(self, commit_ms: float) -> float:
        """Payments/s one product row allows at this commit latency: measured if that latency was
        run, else 1 / (the measured no-latency time + the latency)."""
        if int(commit_ms) in self.hot_tps_at and commit_ms == int(commit_ms):
            return self.hot_tps_at[int(commit_ms)]
        return 1000.0 / (self.hot_ms_0 + commit_ms)

    def hot_rate_sharded(self, commit_ms: float, shards: int) -> float:
        """The same with the stock in `shards` rows: the measured gain, for the shard count measured
        (more shards than measured are not extrapolated: re-run with CAP_SHARDS)."""
        return self.hot_rate(commit_ms) * (self.shard_gain if shards > 1 else 1.0)


@dataclass(frozen=True)
class Variant:
    """A deployment the model is run for: prod as configured, or prod with some limits lifted."""

    name: str
    change: str
    # Added monthly cost in USD over prod (docs/deploy.md's price table).
    cost_per_month: float = 0.0
    hot_shards: int = 1
    api_rps: int = PROD.api.throttle_rate_per_second
    api_account_rps: int = API_ACCOUNT_RPS
    db_vcpus: int = DB_VCPUS
    max_concurrency: int = PROD.processor.max_concurrency
    poll_max_ms: int = Settings().poll_max_ms
    commit_ms: float = ASSUMED_MULTI_AZ_COMMIT_MS
    # Waiting shoppers read the shared now-serving figure through CloudFront and their own job only when
    # its number comes up or every JOB_CHECK_S; off: every poll is a status Lambda and a database read.
    shared_figure: bool = True
    # When the hot stock is gone its queued buyers leave at once and later ones are refused at enqueue;
    # off: each waits its turn to be told out_of_stock by a processor.
    sold_out_at_once: bool = True
    # What enqueue costs the database on AWS (a measured operation): "enqueue", one statement; or
    # "enqueue_sent_mark", the previous release's two (the job, then the mark after the SQS send).
    enqueue_op: str = "enqueue"


# Monthly prices from docs/deploy.md (ap-south-1, on demand): db.m7g.large $0.168/h, Multi-AZ x2,
# 730 h. Larger m7g classes are priced here in proportion to their vCPUs (RDS lists them that way
# within a family; check the calculator), and RDS Proxy is $0.015 per instance vCPU-hour.
def _db_upgrade_cost(vcpus: int) -> float:
    instance = 0.168 / 2 * (vcpus - DB_VCPUS) * 2 * 730
    proxy = 0.015 * (vcpus - DB_VCPUS) * 730
    return round(instance + proxy)


TODAY = "today"


def ladder(shards: int) -> list[Variant]:
    """The release before the shared figure, today's prod, then each lift in the order the sizes need
    them, each on top of the last."""
    before = Variant(
        "before the line's lifts",
        "the previous release: every poll a status Lambda and a database read, sold-out buyers wait their "
        "turn, enqueue 2 statements",
        shared_figure=False,
        sold_out_at_once=False,
        enqueue_op="enqueue_sent_mark",
    )
    today = Variant(
        TODAY, "prod as configured (infra/config.py): the shared figure on CloudFront, sold out at once, enqueue 1"
    )
    sharded = replace(
        today, name="+ stock shards", change=f"the hot product's stock in {shards} rows (code; $0)", hot_shards=shards
    )
    bigger = replace(
        sharded,
        name="+ 8 vCPU database",
        change="db.m7g.2xlarge Multi-AZ, processor max concurrency 40 -> 100 (reserved 110; the proxy budget fits)",
        cost_per_month=_db_upgrade_cost(8),
        db_vcpus=8,
        max_concurrency=100,
    )
    throttle = replace(
        bigger,
        name="+ API throttle",
        change="stage throttle 2,000 -> 10,000 rps, the account quota (config; $0 fixed)",
        api_rps=API_ACCOUNT_RPS,
    )
    polls = replace(
        throttle,
        name="+ slower polls, quota",
        change="poll_max_ms 10 s -> 30 s and the account quota 10,000 -> 20,000 rps (Service Quotas; $0 fixed)",
        api_rps=20_000,
        api_account_rps=20_000,
        poll_max_ms=30_000,
    )
    return [before, today, sharded, bigger, throttle, polls]


def polls_while_waiting(eta_s: float, settings: Settings) -> float:
    """Polls one shopper makes while its ETA runs down from eta_s to 0, following poll_after_ms
    (shared/services/reads.py: 0.75 x ETA, clamped to [poll_min_ms, poll_max_ms])."""
    lo, hi, k = settings.poll_min_ms / 1000, settings.poll_max_ms / 1000, 0.75
    a, b = lo / k, hi / k  # ETAs where the clamps start to bite
    polls = min(eta_s, a) / lo
    if eta_s > a:
        polls += math.log(min(eta_s, b) / a) / k
    if eta_s > b:
        polls += (eta_s - b) / hi
    return polls + 1  # the enqueue answer's first advice, then at least one poll to see the end


@dataclass
class Simulation:
    drain_s: float
    max_wait_s: float
    peak_backlog: int
    peak_poll_rps: float
    peak_offered_rps: float
    throttled_requests: int
    total_polls: float
    peak_db_util: float
    hot_phase_s: float
    throughput_pps: float
    peak_figure_rps: float  # reads of the shared figure a second (CloudFront's; 0 without it)
    total_figure_reads: float
    refused_sold_out: float  # shoppers answered 409 sold_out at enqueue: no job
    ended_sold_out: float  # queued jobs ended in bulk when the hot product sold out
    # The line when the hot stock ran out, and its buyers in it (what the first bulk end must read and end).
    line_at_sell_out: float
    stranded_at_sell_out: float


def simulate(n: int, m: Measured, v: Variant) -> Simulation:
    """One-second steps. Shoppers arrive evenly over the window and POST; every waiting shopper polls
    as advised (the shared figure at CloudFront, its own job when due: _next_polls). The API admits at
    most its throttle a second, POSTs and polls alike (a throttled POST is retried the next second, a
    throttled poll at its next interval). The processors pay as fast as the tightest of their
    concurrency, the database CPU the admitted enqueues and polls leave, and, while the hot product
    has stock, its row lock; once it is gone its queued buyers end in bulk and later ones are refused
    at enqueue (sold_out_at_once), or, before that lift, each is told out_of_stock in its turn."""
    settings = Settings(poll_max_ms=v.poll_max_ms)
    limit = float(min(v.api_rps, v.api_account_rps))
    arrival = n / ARRIVAL_WINDOW_S
    processor = processor_rate(m, v)
    hot_bound = m.hot_rate_sharded(v.commit_ms, v.hot_shards) / HOT_SHARE
    enqueue_cap = m.capacity(v.enqueue_op, v.db_vcpus)
    poll_cap, payment_cap, sold_out_cap = (m.capacity(op, v.db_vcpus) for op in ("status_poll", "payment", "sold_out"))
    hot_until = min(n, HOT_STOCK_SHARE * n / HOT_SHARE)  # payments processed when the hot stock is gone
    come = accepted = done = 0.0
    t = 0
    peak_backlog = peak_polls = peak_offered = peak_util = total_polls = throttled = hot_phase = 0.0
    polls = peak_figure = figure_reads = stranded = refused = ended_total = line_at_sell_out = 0.0
    sold_out = False
    while done < n - 0.5 and t < 36_000:
        t += 1
        come = min(float(n), come + arrival)
        posts = come - accepted  # new shoppers and those whose POST was throttled
        offered = posts + polls
        admitted_posts, admitted_polls = _admit(posts, polls, limit, enqueue_cap, poll_cap)
        enq_util, poll_util = admitted_posts / enqueue_cap, admitted_polls / poll_cap
        throttled += offered - admitted_posts - admitted_polls
        accepted += admitted_posts
        if sold_out and v.sold_out_at_once:  # the hot product's new buyers are refused at enqueue: no job
            refused += HOT_SHARE * admitted_posts
            done += HOT_SHARE * admitted_posts
        elif sold_out:  # before the lift they join the line, to be told out_of_stock in their turn
            stranded += HOT_SHARE * admitted_posts
        elif done >= hot_until:  # the hot stock is gone: its buyers in line can buy nothing
            sold_out, stranded, line_at_sell_out = True, HOT_SHARE * (accepted - done), accepted - done
        ended, end_util, tries_per_job = _end_in_bulk(m, v, accepted - done, stranded, 1.0 - enq_util - poll_util)
        stranded, done, ended_total = stranded - ended, done + ended, ended_total + ended
        # A job in its turn costs a payment, or a stranded buyer's an out_of_stock answer. A batch that met
        # one tries the bulk end again, which, past the timeout, holds its processor that long, and soaks
        # up the database's spare CPU meanwhile (PostgreSQL shares it among the backends).
        share = stranded / max(accepted - done, 1.0)
        retry_ms = tries_per_job * m.statement_timeout_ms
        per_job = (1 - share) / payment_cap + share / sold_out_cap
        turn_rate = v.max_concurrency * 1000.0 / (_payment_ms(m, v) + retry_ms)
        rate = min(processor, turn_rate, max(0.0, 1.0 - enq_util - poll_util - end_util) / per_job)
        if done < hot_until:
            rate = min(rate, hot_bound)
            hot_phase += 1
        paid = min(rate, accepted - done)
        done, stranded = done + paid, stranded - paid * share
        backlog = accepted - done
        total_polls += admitted_polls
        util = enq_util + poll_util + end_util + paid * per_job
        util += min(max(0.0, 1.0 - util), paid * retry_ms / (v.db_vcpus * 1000.0))
        peak_backlog, peak_util = max(peak_backlog, backlog), max(peak_util, util)
        peak_polls, peak_offered = max(peak_polls, polls), max(peak_offered, offered)
        polls, figure = _next_polls(backlog, rate, settings, v)
        peak_figure, figure_reads = max(peak_figure, figure), figure_reads + figure
    return Simulation(
        drain_s=float(t),
        max_wait_s=max(0.0, t - ARRIVAL_WINDOW_S),  # the last shopper arrived at the window's end
        peak_backlog=int(peak_backlog),
        peak_poll_rps=round(peak_polls, 1),
        peak_offered_rps=round(peak_offered, 1),
        throttled_requests=int(throttled),
        total_polls=round(total_polls),
        peak_db_util=round(peak_util, 3),
        hot_phase_s=hot_phase,
        throughput_pps=round(n / t, 1) if t else 0.0,
        peak_figure_rps=round(peak_figure, 1),
        total_figure_reads=round(figure_reads),
        refused_sold_out=round(refused),
        ended_sold_out=round(ended_total),
        line_at_sell_out=round(line_at_sell_out),
        stranded_at_sell_out=round(HOT_SHARE * line_at_sell_out),
    )


def _end_in_bulk(m: Measured, v: Variant, queued: float, stranded: float, free: float) -> tuple[float, float, float]:
    """A second of the bulk end, with `stranded` buyers of the sold-out product among `queued` jobs: the
    jobs it ends, the database's share it takes, and the bulk-end tries per job paid in turn. Statement
    after statement on one core, each ending at most a batch (and costing the line's measured share), while
    one fits in the statement timeout. Past it a statement is cut off having ended none, and each
    processor batch that meets a stranded buyer (out_of_stock in its turn) tries again after its
    commit (functions/process_payment/handler.py, _end_line_of), for as long as the timeout."""
    if not v.sold_out_at_once or stranded < 1:
        return 0.0, 0.0, 0.0
    cpu_ms = v.db_vcpus * 1000.0
    statement_ms = m.bulk_end_ms(queued, stranded)
    if statement_ms > m.statement_timeout_ms:
        batch = PROD.processor.batch_size
        return 0.0, 0.0, (1 - (1 - min(1.0, stranded / max(queued, 1.0))) ** batch) / batch
    per_job_ms = statement_ms / min(stranded, m.line_batch)
    ended = min(stranded, 1000.0 / per_job_ms, max(0.0, free) * cpu_ms / per_job_ms)
    return ended, ended * per_job_ms / cpu_ms, 0.0


def _admit(posts: float, polls: float, limit: float, enqueue_cap: float, poll_cap: float) -> tuple[float, float]:
    """The POSTs and polls the API admits in a second: at most `limit` requests, POSTs and polls alike,
    and no more than the database's CPU serves (the rest wait: their functions time out, retry)."""
    offered = posts + polls
    admit = min(1.0, limit / offered) if offered > 0 else 1.0
    util = (posts / enqueue_cap + polls / poll_cap) * admit
    if util > 1:
        admit /= util
    return posts * admit, polls * admit


def _next_polls(backlog: float, rate: float, settings: Settings, v: Variant) -> tuple[float, float]:
    """Next second's reads through the API (polls) and of the shared figure at CloudFront: each waiting
    shopper about once per its interval -- of the figure, or, without it, of its own job. With it, own
    jobs are read by those whose number has come up (about the paid rate), at each read of the figure in
    their last second (bench/client.py: within a second's worth of the line's rate), the rest once a
    JOB_CHECK_S, and CloudFront asks the API for the figure about once a second (Origin Shield)."""
    if backlog < 1:
        return 0.0, 0.0
    reads = backlog / _mean_interval(backlog / max(rate, 1.0), settings)
    if not v.shared_figure:
        return reads, 0.0
    at_turn = polls_while_waiting(1.0, settings) - 1  # the reads while the ETA runs down its last second
    return min(backlog, rate) * at_turn + backlog / JOB_CHECK_S + 1, reads


def _mean_interval(eta_s: float, settings: Settings) -> float:
    """The mean poll interval of shoppers spread evenly over ETAs 0..eta_s (their queue)."""
    if eta_s <= 0:
        return settings.poll_min_ms / 1000
    return eta_s / polls_while_waiting(eta_s, settings)


def _payment_ms(m: Measured, v: Variant) -> float:
    """A processor's time per payment: the statement, the proxy hop, the Multi-AZ commit, and its share
    of the batch's overhead."""
    batch_share = ASSUMED_BATCH_OVERHEAD_MS / PROD.processor.batch_size
    return m.p50_ms["payment"] + ASSUMED_PROXY_RTT_MS + v.commit_ms + batch_share


def processor_rate(m: Measured, v: Variant) -> float:
    """Payments/s the processor functions can drive: max concurrency x one payment's time."""
    return v.max_concurrency * 1000.0 / _payment_ms(m, v)


def enqueue_ms(m: Measured, v: Variant) -> float:
    op = v.enqueue_op
    return m.p50_ms[op] + m.statements[op] * ASSUMED_PROXY_RTT_MS + ASSUMED_SQS_SEND_MS + ASSUMED_INVOKE_OVERHEAD_MS


def poll_ms(m: Measured) -> float:
    return m.p50_ms["status_poll"] + ASSUMED_PROXY_RTT_MS + ASSUMED_INVOKE_OVERHEAD_MS


def sale_cost(n: int, m: Measured, v: Variant, sim: Simulation) -> dict[str, float]:
    """What one sale's traffic costs, USD: every request the stage receives, the API functions'
    invocations and time, the processors', each job's queue and event traffic, and the figure's reads
    at CloudFront. Shoppers refused at enqueue make no job."""
    jobs = n - sim.refused_sold_out
    api_invocations = n + sim.total_polls
    api_gb_s = (n * enqueue_ms(m, v) + sim.total_polls * poll_ms(m)) / 1000 * API_FUNCTION_GB
    processor_gb_s = jobs * _payment_ms(m, v) / 1000 * PROD.processor.memory_mb / 1024
    costs = {
        "api_gateway": (api_invocations + sim.throttled_requests) * API_PER_MILLION / 1e6,
        "lambda": (api_invocations + jobs / PROD.processor.batch_size) * LAMBDA_PER_MILLION / 1e6
        + (api_gb_s + processor_gb_s) * LAMBDA_ARM_PER_GB_S,
        "cloudfront": sim.total_figure_reads
        * (ASSUMED_CLOUDFRONT_HTTPS_PER_10K / 1e4 + ASSUMED_FIGURE_BYTES / 1e9 * CLOUDFRONT_INDIA_PER_GB),
        "queue_and_events": jobs * PAYMENT_TAIL_USD,
    }
    return {k: round(c, 2) for k, c in costs.items()} | {"total": round(sum(costs.values()), 2)}


def size_model(n: int, m: Measured, v: Variant) -> dict[str, Any]:
    sim = simulate(n, m, v)
    commit_ms, hot_shards = v.commit_ms, v.hot_shards
    api, proc, db = PROD.api, PROD.processor, PROD.database
    arrival = n / ARRIVAL_WINDOW_S
    requests_peak = sim.peak_offered_rps
    api_limit = min(v.api_rps, v.api_account_rps)
    total_requests = n + sim.total_polls
    enq_conc = arrival * enqueue_ms(m, v) / 1000
    status_conc = min(sim.peak_poll_rps, api_limit) * poll_ms(m) / 1000
    pay_rate = sim.throughput_pps if sim.drain_s > ARRIVAL_WINDOW_S else min(arrival, processor_rate(m, v))
    hot_rate = m.hot_rate_sharded(commit_ms, hot_shards)
    rows = [
        _row(
            "API Gateway (stage throttle)",
            requests_peak,
            v.api_rps,
            "req/s",
            "infra/config.py prod: throttle_rate_per_second (burst 5,000)",
            total_requests,
        ),
        _row(
            "API Gateway (account quota)",
            requests_peak,
            v.api_account_rps,
            "req/s",
            "API Gateway quotas: 10,000 rps per account and Region, burst 5,000",
            total_requests,
        ),
        _row(
            "enqueue Lambda (reserved)",
            enq_conc,
            api.enqueue.reserved_concurrency,
            "concurrent",
            f"infra/config.py prod; {enqueue_ms(m, v):.1f} ms per request",
            None,
        ),
        _row(
            "status Lambda (reserved)",
            status_conc,
            api.status.reserved_concurrency,
            "concurrent",
            f"infra/config.py prod; {poll_ms(m):.1f} ms per poll",
            None,
        ),
        _row(
            "Lambda burst scaling",
            max(enq_conc, status_conc),
            LAMBDA_SCALE_PER_10S,
            "new in 10 s",
            "Lambda scaling behavior: 1,000 environments per 10 s per function",
            None,
        ),
        _row(
            "Lambda account concurrency",
            enq_conc + status_conc + proc.reserved_concurrency,
            LAMBDA_ACCOUNT_CONCURRENCY,
            "concurrent",
            "Lambda quotas: 1,000 per account and Region",
            None,
        ),
        _row(
            "RDS Proxy connections",
            min(enq_conc, api.enqueue.reserved_concurrency)
            + min(status_conc, api.status.reserved_concurrency)
            + v.max_concurrency
            + 2,
            db.proxy_connection_budget,
            "connections",
            f"infra/config.py prod: {db.proxy_max_connections_percent}% of max_connections {db.max_connections}; "
            f"borrow timeout {db.proxy_borrow_timeout_seconds} s -> 503",
            None,
        ),
        _row(
            "PostgreSQL CPU (enqueue + polls + payments)",
            sim.peak_db_util,
            1.0,
            f"of {v.db_vcpus} vCPU",
            f"measured server CPU per operation, scaled to {v.db_vcpus} vCPU",
            None,
        ),
        _row(
            "hot product row lock",
            HOT_SHARE * pay_rate if sim.hot_phase_s else 0.0,
            hot_rate,
            "payments/s",
            f"measured at +{commit_ms:g} ms commit ({hot_shards} stock row{'s' if hot_shards > 1 else ''})",
            HOT_STOCK_SHARE * n,
        ),
        _row(
            "sold-out bulk end (first statement)",
            m.bulk_end_ms(sim.line_at_sell_out, sim.stranded_at_sell_out) / 1000,
            m.statement_timeout_ms / 1000,
            "s of a core",
            f"measured CPU per job read ({sim.line_at_sell_out:,.0f} in line) and ended (at most "
            f"{m.line_batch:,}); past the functions' statement timeout (migration 0005) it ends none",
            None,
        ),
        _row(
            "CloudFront (now-serving figure)",
            sim.peak_figure_rps,
            CLOUDFRONT_RPS,
            "req/s",
            "CloudFront quotas: 250,000 requests/s per distribution; the API sees ~1/s (Origin Shield)",
            None,
        ),
        _row(
            "SQS FIFO SendMessageBatch",
            arrival,
            SQS_FIFO_HT_TPS,
            "calls/s",
            "SQS message quotas: high throughput FIFO, Mumbai 9,000 TPS per action",
            n,
        ),
        _row(
            "SQS FIFO per message group",
            1.0,
            SQS_FIFO_GROUP_TPS,
            "calls/s/group",
            "one group per shopper, one job each; 300 TPS per group",
            None,
        ),
        _row(
            "processor Lambdas (max concurrency)",
            pay_rate,
            processor_rate(m, v),
            "payments/s",
            f"max_concurrency {v.max_concurrency} (prod {proc.max_concurrency}), batch {proc.batch_size}",
            n,
        ),
        _row(
            "EventBridge PutEvents",
            pay_rate / 10,
            EVENTBRIDGE_PUTEVENTS_PER_S,
            "req/s",
            "10 events a request; ap-south-1 quota ASSUMED 400 (check Service Quotas)",
            n / 10,
        ),
        _row(
            "EventBridge rule invocations",
            pay_rate,
            EVENTBRIDGE_INVOCATIONS_PER_S,
            "invocations/s",
            "EventBridge quotas: 1,100/s in ap-south-1 (delayed past it, not dropped)",
            n,
        ),
        _row(
            "SNS Publish (from the rule)",
            pay_rate,
            SNS_PUBLISH_PER_S,
            "publishes/s",
            "ASSUMED 1,500/s in ap-south-1 (check Service Quotas)",
            n,
        ),
        _row(
            f"gateways ({GATEWAY_SHARE:.0%} of payments, if enabled)",
            GATEWAY_SHARE * pay_rate * GATEWAY_CALLS_PER_PAYMENT,
            PROD_GATEWAY_RATE,
            "req/s",
            "shared/gateway_limits.py: Cashfree Get Payments, 100/min published (80% used)",
            GATEWAY_SHARE * n * GATEWAY_CALLS_PER_PAYMENT,
        ),
    ]
    # The first limit is the one the arrivals themselves push past first: each component's load at
    # the arrival rate with no backlog (a backlog's polls are a consequence of a limit, not a cause).
    primary = {
        "API Gateway (stage throttle)": arrival / v.api_rps,
        "API Gateway (account quota)": arrival / v.api_account_rps,
        "enqueue Lambda (reserved)": enq_conc / api.enqueue.reserved_concurrency,
        "PostgreSQL CPU (enqueue + polls + payments)": arrival / m.capacity(v.enqueue_op, v.db_vcpus)
        + arrival / m.capacity("payment", v.db_vcpus),
        "hot product row lock": HOT_SHARE * arrival / hot_rate,
        "SQS FIFO SendMessageBatch": arrival / SQS_FIFO_HT_TPS,
        "processor Lambdas (max concurrency)": arrival / processor_rate(m, v),
    }
    # The notifications' path: past its limits events are delayed (EventBridge retries), payments are not.
    notify = {
        "EventBridge PutEvents": arrival / 10 / EVENTBRIDGE_PUTEVENTS_PER_S,
        "EventBridge rule invocations": arrival / EVENTBRIDGE_INVOCATIONS_PER_S,
        "SNS Publish (from the rule)": arrival / SNS_PUBLISH_PER_S,
    }
    ranked = sorted(primary.items(), key=lambda kv: kv[1], reverse=True)
    for r in rows:
        r["arrival_utilization"] = round(primary.get(r["component"], notify.get(r["component"], 0.0)), 3)
    slowest_notify = min(EVENTBRIDGE_INVOCATIONS_PER_S, SNS_PUBLISH_PER_S, 10 * EVENTBRIDGE_PUTEVENTS_PER_S)
    return {
        "shoppers": n,
        "arrival_per_s": round(arrival, 1),
        "simulation": sim.__dict__,
        "sale_usd": sale_cost(n, m, v, sim),
        "components": rows,
        "first_limit": ranked[0][0],
        "first_limit_utilization": round(ranked[0][1], 3),
        "limits_past_100": [name for name, u in ranked if u >= 1.0],
        "notification_limits_past_100": [name for name, u in notify.items() if u >= 1.0],
        # The last event leaves this long after the last payment when the notification path is slower.
        "notifications_lag_s": round(max(0.0, n / slowest_notify - sim.drain_s), 1),
    }


# The gateways' per-endpoint token buckets (shared/gateway_limits.py): the tightest one a payment
# passes through is Cashfree's Get Payments (100 a minute published for production, 80% of it used),
# so payments reach the gateways at most that bucket's rate; in requests, times the calls per payment.
PROD_GATEWAY_RATE = (
    bucket(Settings(cashfree_environment="production"), "cashfree", "get_payments")[1] * GATEWAY_CALLS_PER_PAYMENT
)


def _row(  # noqa: PLR0917 (one table row, in the table's column order)
    component: str, load: float, limit: float, unit: str, source: str, work: float | None = None
) -> dict[str, Any]:
    return {
        "component": component,
        "load": round(load, 1),
        "limit": round(limit, 1),
        "unit": unit,
        "utilization": round(load / limit, 3) if limit else math.inf,
        "source": source,
        # How long the component needs for the whole sale's work of its kind at its limit.
        "drain_s_at_limit": None if work is None or not limit else round(work / limit, 1),
    }


def model(report: dict[str, Any]) -> dict[str, Any]:
    m = Measured.from_report(report)
    shards = int(report.get("knobs", {}).get("shards", 8))
    variants = ladder(shards)
    today = next(v for v in variants if v.name == TODAY)
    return {
        "assumptions": {
            "multi_az_commit_ms": ASSUMED_MULTI_AZ_COMMIT_MS,
            "proxy_rtt_ms": ASSUMED_PROXY_RTT_MS,
            "sqs_send_ms": ASSUMED_SQS_SEND_MS,
            "invoke_overhead_ms": ASSUMED_INVOKE_OVERHEAD_MS,
            "batch_overhead_ms": ASSUMED_BATCH_OVERHEAD_MS,
            "hot_share": HOT_SHARE,
            "hot_stock_share": HOT_STOCK_SHARE,
        },
        "processor_pps": round(processor_rate(m, today), 1),
        "hot_row_pps": round(m.hot_rate(ASSUMED_MULTI_AZ_COMMIT_MS), 1),
        "hot_row_sharded_pps": round(m.hot_rate_sharded(ASSUMED_MULTI_AZ_COMMIT_MS, shards), 1),
        "capacity_2vcpu": {op: round(m.capacity(op), 1) for op in m.cpu_ms},
        "sizes": [size_model(n, m, today) for n in SIZES],
        "variants": [
            {
                "name": v.name,
                "change": v.change,
                "cost_per_month": v.cost_per_month,
                "sizes": [_brief(size_model(n, m, v)) for n in SIZES],
            }
            for v in variants
        ],
        "floor_per_month": PROD_FLOOR_PER_MONTH,
        "shards": shards,
    }


def _brief(size: dict[str, Any]) -> dict[str, Any]:
    keys = ("shoppers", "simulation", "sale_usd", "first_limit", "first_limit_utilization", "limits_past_100")
    return {k: size[k] for k in (*keys, "notification_limits_past_100", "notifications_lag_s")}


# --- The document's generated block -------------------------------------------------------------

BEGIN, END = "<!-- capacity:begin (make capacity rewrites this block) -->", "<!-- capacity:end -->"


def _n(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value >= 1 else f"{value:.2f}"


def render(report: dict[str, Any]) -> str:
    mod = report["model"]
    mach = report["machine"]
    lines = [
        BEGIN,
        "",
        f"Measured {mach['measured_at']} on {mach['cpus']} cores "
        f"(load average {mach['load_average_1m']} while it ran: "
        f"a shared machine), PostgreSQL {mach['postgres']}, data in memory, commit latency injected with "
        f"`{report['hot_row']['commit_latency_method']}`; `make capacity` took {report.get('run_seconds', '?')} s.",
        "",
        "| operation (statements) | connections | tps | p50 ms | p99 ms | server CPU ms/op "
        "| WAL bytes/op | WAL records/op | WAL flushes/op |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, op in report["operations"].items():
        for lv in op["levels"]:
            lines.append(
                f"| {name} ({op['statements']}) | {lv['connections']} | {_n(lv['tps'])} | {lv['p50_ms']:.2f} | "
                f"{lv['p99_ms']:.2f} | {lv['backend_cpu_ms_per_op']:.3f} | {_n(lv['wal_bytes_per_op'])} | "
                f"{lv['wal_records_per_op']} | "
                f"{'–' if lv['wal_flushes_per_op'] is None else lv['wal_flushes_per_op']} |"
            )
    lines += [
        "",
        f"Hot product row (every payment buys it, {report['hot_row']['connections']} connections):",
        "",
        "| injected commit latency | payments/s | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|",
    ]
    for lv in report["hot_row"]["levels"]:
        lines.append(f"| +{lv['commit_delay_ms']} ms | {_n(lv['tps'])} | {lv['p50_ms']:.2f} | {lv['p99_ms']:.2f} |")
    line = report["sold_out_line"]
    ran = ", ".join(f"{st['seconds']:.2f} s ({st['ended']:,.0f} of {st['queued']:,.0f})" for st in line["statements"])
    lines += [
        "",
        f"Sold-out line: {line['line_jobs']:,} queued jobs, every fourth holding the hot product when it sold out, "
        f"ended {line['batch']:,} a statement at most (`pq_end_sold_out_jobs`, one connection; each statement's "
        f"time, jobs ended of jobs queued: {ran}): server CPU **{line['scan_cpu_ms_per_queued_job']:.4f} ms per "
        f"queued job in line** and **{line['end_cpu_ms_per_job']:.3f} ms per job ended** "
        f"({line.get('rows_read_per_job_ended', '–')} rows of payment_jobs and orders read per job ended), "
        f"{_n(line['wal_bytes_per_job'])} WAL bytes per job ended; statement timeout "
        f"{line['statement_timeout_ms'] / 1000:g} s (the functions' role, migration 0005).",
    ]
    a = mod["assumptions"]
    lines += [
        "",
        f"Model inputs: Multi-AZ commit {a['multi_az_commit_ms']} ms (assumed), so the hot row allows "
        f"**{_n(mod['hot_row_pps'])} payments/s** ({_n(mod['hot_row_sharded_pps'])} in {mod['shards']} shards: "
        f"the side-by-side run's gain, {report['lift']['gain']}x) and the prod processors (max concurrency "
        f"{PROD.processor.max_concurrency}) **{_n(mod['processor_pps'])} payments/s**. Server CPU per "
        "operation, as 2-vCPU capacity: "
        + ", ".join(f"{op} {_n(c)}/s" for op, c in mod["capacity_2vcpu"].items())
        + ".",
        "",
    ]
    lines += _before_after(mod, max(SIZES))
    lines += [
        "#### Per size, the previous release, today, and with each lift added to the last",
        "",
        "| deployment | added $/month | shoppers in 60 s | drained after | last shopper waits | peak backlog | "
        "peak requests/s offered to the API | throttled (429) | DB CPU peak | the sale's traffic | "
        "first limit (arrival load / limit) | also past 100 % | notifications lag the last payment by |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for v in mod["variants"]:
        for s in v["sizes"]:
            sim = s["simulation"]
            also = ", ".join(x for x in s["limits_past_100"] if x != s["first_limit"]) or "–"
            lines.append(
                f"| {v['name']} | {v['cost_per_month']:,.0f} | {s['shoppers']:,} | {sim['drain_s']:.0f} s | "
                f"{sim['max_wait_s']:.0f} s | {sim['peak_backlog']:,} | {_n(sim['peak_offered_rps'])} | "
                f"{sim['throttled_requests']:,} | {sim['peak_db_util']:.0%} | ${s['sale_usd']['total']:,.2f} | "
                f"{s['first_limit']} ({s['first_limit_utilization']:.0%}) | {also} | {s['notifications_lag_s']:.0f} s |"
            )
    lines += ["", "| deployment | the change |", "|---|---|"]
    lines += [f"| {v['name']} | {v['change']} |" for v in mod["variants"]]
    lines.append("")
    for s in mod["sizes"]:
        lines += [
            f"#### {s['shoppers']:,} shoppers, today's design: load and limit per component",
            "",
            "| component | load at arrival rate / limit | peak load | limit | unit | peak used "
            "| work at the limit takes | limit from |",
            "|---|---:|---:|---:|---|---:|---:|---|",
        ]
        for r in s["components"]:
            drain = "–" if r["drain_s_at_limit"] is None else f"{_n(r['drain_s_at_limit'])} s"
            mark = "**" if r["component"] == s["first_limit"] else ""
            lines.append(
                f"| {mark}{r['component']}{mark} | {r['arrival_utilization']:.0%} | {_n(r['load'])} | "
                f"{_n(r['limit'])} | {r['unit']} | "
                f"{r['utilization']:.0%} | {drain} | {r['source']} |"
            )
        lines.append("")
    lift = report["lift"]
    lines += [
        f"#### The lift, side by side in one run (+{lift['commit_delay_ms']} ms commit, "
        f"{lift['connections']} connections)",
        "",
        "| design | stock rows | jobs | succeeded | out of stock | payments/s | drain s | p99 ms "
        "| refused with stock left | invariants |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label in ("today", "sharded"):
        r = lift[label]
        inv = (
            "all 0"
            if not any(r["invariants"].values())
            else ", ".join(f"{k} {v}" for k, v in r["invariants"].items() if v)
        )
        lines.append(
            f"| {label} | {r['shards']} | {r['jobs']:,} | {r['succeeded']:,} | {r['out_of_stock']:,} | "
            f"{_n(r['payments_per_s'])} | {r['drain_s']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['refused_with_stock_left']} | {inv} |"
        )
    lines += ["", f"Gain: **{lift['gain']}x** payments/s of the hot product.", "", END]
    return "\n".join(lines)


def _before_after(mod: dict[str, Any], n: int) -> list[str]:
    """The largest sale under each deployment of the ladder, the previous release first: what the line's
    lifts changed, then what each further lift adds, with what a month with that sale costs."""
    lines = [
        f"#### {n:,} shoppers: the previous release beside today's, then each lift",
        "",
        "| deployment | drained after | last shopper waits | peak requests/s offered to the API "
        "| peak figure reads/s at CloudFront | throttled (429) | DB CPU peak | shoppers refused or ended as sold out "
        "| the sale's traffic: API, Lambda, CloudFront, queue + events | a month: floor + added + this sale |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for v in mod["variants"]:
        s = next(size for size in v["sizes"] if size["shoppers"] == n)
        sim, usd = s["simulation"], s["sale_usd"]
        month = mod["floor_per_month"] + v["cost_per_month"] + usd["total"]
        lines.append(
            f"| {v['name']} | {sim['drain_s']:.0f} s | {sim['max_wait_s']:.0f} s | {_n(sim['peak_offered_rps'])} | "
            f"{_n(sim['peak_figure_rps'])} | {sim['throttled_requests']:,} | {sim['peak_db_util']:.0%} | "
            f"{sim['refused_sold_out'] + sim['ended_sold_out']:,.0f} | "
            f"${usd['total']:,.2f}: {usd['api_gateway']:,.2f} + {usd['lambda']:,.2f} + {usd['cloudfront']:,.2f} "
            f"+ {usd['queue_and_events']:,.2f} | ${month:,.0f} |"
        )
    return [*lines, ""]


def rewrite_doc(path: Path, report: dict[str, Any]) -> None:
    text = path.read_text() if path.exists() else f"{BEGIN}\n{END}\n"
    block = render(report)
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no generated block ({BEGIN} ... {END})")
    path.write_text(pattern.sub(lambda _: block, text, count=1))

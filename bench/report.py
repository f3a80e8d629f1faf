"""The benchmark's chart (PNG) and its short markdown summary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt

# The 5,000-shopper wallet sale's targets (drain, CPU and the seed's design: the line issue's own).
TARGETS = [
    ("drain_s", "<=", 10.0, "drain (s)"),
    ("enqueue_p99_ms", "<=", 500.0, "enqueue p99 (ms)"),
    ("processor_connections_peak", "<=", 20, "processor DB connections"),
    ("round_trips_per_payment", "<=", 1.0, "DB round trips per payment"),
    ("enqueue_round_trips_per_request", "<=", 1.0, "DB round trips per enqueue"),
    ("cpu_ms_per_payment_total", "<=", 3.5, "CPU per payment, all roles (ms)"),
    ("speedup_vs_baseline", ">=", 5.0, "drain vs baseline (x faster)"),
    ("fraction_of_db_only", ">=", 0.10, "fraction of DB-only ceiling"),
]
# Goals measured by an optional phase: (the report key the phase writes, the knob that skips it).
PHASE_OF = {
    "speedup_vs_baseline": ("baseline", "BASELINE=0"),
    "fraction_of_db_only": ("db_only_pps", "CEILINGS=0"),
}


@dataclass(frozen=True)
class Goal:
    label: str
    value: Any
    goal: str
    status: str  # "met", "NOT met", "skipped (<knob>)" or "not measured"


def goals(report: dict[str, Any]) -> list[Goal]:
    """Each target against the report; a phase that did not run is skipped, not failed."""
    out = []
    for key, op, target, label in TARGETS:
        value = report.get(key)
        phase = PHASE_OF.get(key)
        if phase and phase[0] not in report:
            status = f"skipped ({phase[1]})"
        elif value is None:
            status = "not measured"
        else:
            status = "met" if (value <= target if op == "<=" else value >= target) else "NOT met"
        out.append(Goal(label, value, f"{op} {target}", status))
    return out


def _reasons(report: dict[str, Any]) -> str:
    reasons = report.get("failed_by_reason") or {}
    return " (" + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + ")" if reasons else ""


def summary_text(report: dict[str, Any], out: Path) -> str:
    """What a person reads on the terminal after a run; the JSON has everything else."""
    knobs = report.get("knobs", {})
    lines = [
        f"Flash sale: {report['users']} shoppers ({knobs.get('workers')} workers, batch {knobs.get('batch')}, "
        f"{knobs.get('api_workers')} API processes, {report['machine']['cpus']} CPUs)",
        f"  ours       drained in {report['drain_s']} s at {report['throughput_pps']} payments/s; enqueue p50/p99 "
        f"{report['enqueue_p50_ms']}/{report['enqueue_p99_ms']} ms; wait p50/p95 "
        f"{report['wait_p50_s']}/{report['wait_p95_s']} s",
        f"             {report['accepted']} accepted: {report['succeeded']} succeeded, {report['failed_business']} "
        f"failed{_reasons(report)}, {report['failed_other']} other errors, DLQ {report['dlq']}",
    ]
    if base := report.get("baseline"):
        lines.append(
            f"  baseline   drained in {base['drain_s']} s at {base['throughput_pps']} payments/s; request p99 "
            f"{base['request_p99_ms']} ms; up to {base['connections_peak']} DB connections"
        )
    else:
        lines.append("  baseline   skipped (BASELINE=0)")
    if "db_only_pps" in report:
        lines.append(
            f"  ceilings   payment function alone {report['db_only_pps']} payments/s; pgbench "
            f"{report['pgbench_tps']} tps prepared, {report['pgbench_tps_simple']} simple"
        )
    else:
        lines.append("  ceilings   skipped (CEILINGS=0)")
    if runs := runs_text(report):
        lines.append(f"  runs       {runs}")
    bad = {k: v for k, v in report["invariants"].items() if v}
    if every_run := report.get("runs"):  # every run's, not only the median's
        bad = {
            f"{design} run {n} {k}": v
            for design, items in every_run.items()
            for n, run in enumerate(items, 1)
            for k, v in run.get("invariants", {}).items()
            if v
        }
    violated = ", ".join(f"{k} {v}" for k, v in bad.items())
    lines.append("  invariants " + (f"VIOLATED: {violated}" if bad else "all 0"))
    lines.append("Goals:")
    width = max(len(t[3]) for t in TARGETS)
    for goal in goals(report):
        value = "–" if goal.value is None else str(goal.value)
        lines.append(f"  {goal.label:<{width}}  {value:>8}  {goal.goal:<8}  {goal.status}")
    lines.append(f"Report: {out} (full JSON), {out.with_suffix('.md')}, {out.with_suffix('.png')}")
    return "\n".join(lines)


def runs_text(report: dict[str, Any]) -> str:
    """With RUNS > 1: every run's drain, and which one the report is of; empty for one run."""
    runs = report.get("runs")
    if not runs:
        return ""
    drains = "; ".join(
        f"{design} " + " / ".join(str(r["drain_s"]) for r in items) + " s" for design, items in runs.items()
    )
    return f"drain of each run: {drains}. The report is of each design's median run."


def write_chart(path: Path, ours: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    series = ours["_series"]
    samples, t0 = series["samples"], series["t0"]
    t = [s["t"] - t0 for s in samples]
    rate = [0.0] + [
        (b["finished"] - a["finished"]) / max(1e-3, b["t"] - a["t"]) for a, b in itertools.pairwise(samples)
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.plot(t, [s["depth"] for s in samples], label="queue depth")
    left.plot(t, [s["in_flight"] for s in samples], label="in flight")
    left.set_xlabel("seconds since the first request")
    left.set_ylabel("messages")
    twin = left.twinx()
    twin.plot(t, rate, color="tab:green", alpha=0.7, label="completions/s")
    twin.set_ylabel("completions per second")
    lines = left.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    left.legend(lines, [str(line.get_label()) for line in lines], loc="upper right")
    left.set_title(f"{ours['users']} shoppers: drained in {ours['drain_s']} s")

    def cdf(values: list[float], label: str) -> None:
        ordered = sorted(values)
        if ordered:
            right.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)

    cdf([v / 1000 for v in series["enqueue_ms"]], "ours: POST answered (202)")
    cdf(series["waits"], "ours: accepted -> terminal")
    if baseline:
        cdf([v / 1000 for v in baseline["_series"]["latencies_ms"]], "seed's design: POST answered")
    right.set_xscale("log")
    right.set_xlabel("seconds")
    right.set_ylabel("fraction of requests")
    right.set_title("latency CDF")
    right.legend(loc="lower right")
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_summary(path: Path, report: dict[str, Any]) -> None:
    rows = [f"| {g.label} | {'–' if g.value is None else g.value} | {g.goal} | {g.status} |" for g in goals(report)]
    inv = report["invariants"]
    base = report.get("baseline")
    lines = [
        f"# Flash sale: {report['users']} shoppers",
        "",
        f"Accepted {report['accepted']}, succeeded {report['succeeded']}, failed (business) "
        f"{report['failed_business']} {report.get('failed_by_reason', {})}, other failures {report['failed_other']}, "
        f"DLQ {report['dlq']}. Drained in **{report['drain_s']} s** ({report['throughput_pps']} payments/s); "
        f"enqueue p50/p99 {report['enqueue_p50_ms']}/{report['enqueue_p99_ms']} ms; wait p50/p95/max "
        f"{report['wait_p50_s']}/{report['wait_p95_s']}/{report['wait_max_s']} s; {report['status_polls']} status "
        f"polls (p99 {report['status_poll_p99_ms']} ms), {report.get('job_polls', '–')} of them of a shopper's own "
        f"job (the rest the shared now-serving figure); ETA error p50/p95 {report.get('eta_error_p50_s', '–')}/"
        f"{report.get('eta_error_p95_s', '–')} s over {report.get('eta_predictions', '–')} predictions.",
        "",
        "| target | measured | goal | |",
        "|---|---|---|---|",
        *rows,
        "",
        "Invariants (all must be 0): " + ", ".join(f"{k} {v}" for k, v in inv.items()),
        "",
        "CPU per payment (ms), everything on the same cores: "
        + ", ".join(f"{k} {v}" for k, v in report.get("cpu_ms_per_payment", {}).items())
        + f" (total {sum(report.get('cpu_ms_per_payment', {}).values()):.1f} ms).",
    ]
    if gateway := report.get("gateway"):
        lines += [
            "",
            f"Gateway (Razorpay simulator): {gateway['payments']} payments, limit {gateway['limit_rps']}/s "
            f"(burst {gateway['burst']}), peak observed {gateway['peak_rps_observed']}/s over {gateway['calls']} "
            f"calls, {gateway['captures']} captures, {gateway['double_captures']} double captures, "
            f"{gateway['retries_429']} answered 429, {gateway['refused_by_gateway_limit']} refused by the gateway's "
            "own limit.",
        ]
    if base:
        lines += [
            "",
            f"The seed's design on the same data: drained in {base['drain_s']} s ({base['throughput_pps']} "
            f"payments/s), request p99 {base['request_p99_ms']} ms, up to {base['connections_peak']} DB connections "
            f"(pool {base['pool_max_connections']}), {base['errors']} errors; invariants: "
            + ", ".join(f"{k} {v}" for k, v in base["invariants"].items()),
        ]
    if "db_only_pps" in report:
        lines += [
            "",
            f"Ceilings on the same server: the payment function alone from 8 connections {report['db_only_pps']} "
            f"payments/s (end to end is {report['fraction_of_db_only']:.0%} of it); pgbench TPC-B-like "
            f"{report['pgbench_tps']} tps prepared, {report['pgbench_tps_simple']} simple.",
        ]
    if runs := runs_text(report):
        lines += ["", runs[0].upper() + runs[1:]]
    lines += ["", f"Machine: {report['machine']}", ""]
    path.write_text("\n".join(lines))

"""Settings of the local runtime only (the functions' own settings are shared/settings.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent

# The runtime's processes by the machine's cores. Every process is one Python interpreter, and every role
# shares the cores: with more of them runnable than there are cores each request and each payment cost more
# (switches, cold caches), and processors racing for a short queue took batches of ~3 messages. On 2 cores,
# 2 processors and 3 API processes drained the benchmark's 5,000-shopper sale ~20 % sooner on ~20 % less CPU
# per payment than 4 and 4, in three pairs of runs back to back (docs/benchmark.md). Two processors at least:
# an SQS event source mapping's maximum concurrency is never below 2 (AWS::Lambda::EventSourceMapping
# ScalingConfig, MaximumConcurrency: minimum 2, maximum 1000). At most the 4 processors this runtime always
# had, and one API process more: each holds a database connection, and nothing was measured above 2 cores.


def _usable_cores() -> int:
    """The CPUs this process may run on (a container's cpuset included), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 2


CORES = _usable_cores()
DEFAULT_WORKERS = min(4, max(2, CORES))
DEFAULT_API_WORKERS = min(5, CORES + 1)


class LocalSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PQ_", frozen=True, extra="ignore")

    data_dir: Path = ROOT / ".data"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Worker processes that play the SQS event source mapping (the cap on DB load, as in AWS).
    workers: int = DEFAULT_WORKERS
    batch_size: int = 10
    # How long a received message stays invisible; a killed worker's messages return after it.
    visibility_timeout_s: int = 30
    # Locally a failed record comes back after this delay instead of a full visibility timeout.
    retry_delay_s: int = 2
    # PostgreSQL's max_connections for the embedded server (the benchmark's baseline needs many).
    pg_max_connections: int = 200
    jwt_issuer: str = "payment-queue-local"
    jwt_audience: str = "payment-queue"
    demo_users: int = 3
    # Function "containers" behind the local API: processes that each run one request at a
    # time, as Lambda does, and each hold one DB connection.
    api_workers: int = DEFAULT_API_WORKERS
    # Fault injection for `make chaos` (off by default): a processor SIGKILLs itself in its
    # fault_after_batches-th batch, either mid_batch (half of it committed, nothing published or
    # deleted) or before_delete (the handler returned; its messages never deleted).
    fault_kill: Literal["", "mid_batch", "before_delete"] = ""
    fault_after_batches: int = 0

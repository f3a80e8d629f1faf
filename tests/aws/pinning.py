"""What would pin an RDS Proxy session, judged on the statements that reached the server.

The rules are AWS's, "Avoiding pinning an RDS Proxy"
(https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-proxy-pinning.html), for all engines:
"Any statement with a text size greater than 16 KB causes the proxy to pin the session"; for
PostgreSQL: SET commands; PREPARE, DISCARD, DEALLOCATE or EXECUTE; creating temporary sequences,
tables or views; declaring cursors; discarding the session state; listening on a notification
channel; loading a library module (LOAD); sequence functions such as nextval and setval; lock
functions such as pg_advisory_lock and pg_try_advisory_lock (not the transaction-level
pg_advisory_xact_lock family); setting or resetting a parameter, SET and set_config alike.
Calling a stored function does not pin: the proxy does not see what runs inside it.
"""

from __future__ import annotations

import csv
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STATEMENT_PIN_BYTES = 16 * 1024

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE | re.DOTALL))
    for name, pattern in (
        ("SET / RESET", r"(^|;)\s*(SET|RESET)\b"),
        ("prepared statement", r"(^|;)\s*(PREPARE|EXECUTE|DEALLOCATE)\b"),
        ("DISCARD", r"(^|;)\s*DISCARD\b"),
        ("LISTEN", r"(^|;)\s*LISTEN\b"),
        ("cursor", r"(^|;)\s*DECLARE\b"),
        ("LOAD", r"(^|;)\s*LOAD\b"),
        (
            "temporary object",
            r"\bCREATE\s+(OR\s+REPLACE\s+)?(GLOBAL\s+|LOCAL\s+)?(TEMP|TEMPORARY)\b|\bINTO\s+(TEMP|TEMPORARY)\b",
        ),
        ("set_config", r"\bset_config\s*\("),
        ("sequence function", r"\b(nextval|setval|currval|lastval)\s*\("),
        ("session advisory lock", r"\bpg_(try_)?advisory_lock(_shared)?\s*\("),
    )
)

# PgBouncer's own statements, not the application's: its health check (server_check_query in
# local/pgbouncer.py) and the SET with which it keeps a server connection's application_name in
# step with the client it serves (RDS Proxy keeps no such per-client parameter by SET).
PGBOUNCER_OWN = re.compile(r"^(select \$?1|SET application_name=('[^']*'|\$1);?)$")


def pinning_reasons(sql: str) -> list[str]:
    """Why a top-level statement would pin a proxy session (empty: it would not)."""
    text = re.sub(r"^\s*(/\*.*?\*/\s*|--[^\n]*\n\s*)*", "", sql, flags=re.DOTALL)
    reasons = [name for name, rule in _RULES if rule.search(text)]
    if len(sql.encode()) > STATEMENT_PIN_BYTES:
        reasons.append(f"over 16 KB ({len(sql.encode())} bytes)")
    return reasons


@dataclass(frozen=True)
class Logged:
    """One message the server received, as its CSV log has it: who sent it and its full text."""

    application_name: str
    text: str
    user_name: str = ""

    @property
    def size(self) -> int:
        return len(self.text.encode())


def logged_statements(log_file: Path, offset: int, database: str) -> list[Logged]:
    """Statements logged (log_statement = all) for `database` after byte `offset` of the CSV log."""
    found = []
    with open(log_file, newline="", encoding="utf-8") as f:
        f.seek(offset)
        for row in csv.reader(f):
            # csvlog columns: 1 user_name, 2 database_name, 13 message, 22 application_name
            if len(row) > 22 and row[2] == database and row[13].startswith("statement: "):
                found.append(Logged(row[22], row[13].removeprefix("statement: "), row[1]))
    return found


def logged_until_now(log_file: Path, offset: int, database: str, send: Callable[[str], None]) -> list[Logged]:
    """The statements logged since `offset`, once the log has caught up with the server.

    The logging collector writes asynchronously: `send` runs a marker statement in `database`,
    and the log is read until the marker shows (the marker itself is not returned).
    """
    marker = f"window-closed-{uuid.uuid4().hex}"
    send(f"SELECT '{marker}'")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        logged = logged_statements(log_file, offset, database)
        if any(marker in s.text for s in logged):
            return [s for s in logged if marker not in s.text]
        time.sleep(0.1)
    raise TimeoutError("the server log did not catch up")

"""The SQL layout: schema in versioned migrations, each function defined once in shared/sql/, typed
outcomes, and an upgrade from the previous release that keeps its code working."""

from __future__ import annotations

import hashlib
import re
import tarfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from functions.status.handler import handler as status_handler
from local.pg import install_pgmq
from local.seed import SeedPlan, seed
from shared.bootstrap import App, bootstrap
from shared.db import Database
from shared.migrate import REPEATABLE, migrate, repeatable_files, versioned_files
from shared.outcomes import SQL_TYPES
from shared.services.line import cancel_job
from shared.services.wallet import process_wallet_job
from shared.settings import Settings
from tests.conftest import _admin_exec, _url
from tests.integration.helpers import pay
from tests.integration.test_api_handlers import call

REPO = Path(__file__).resolve().parents[2]
# The migrations of the release before this layout (commit 2b3608d): what deployed databases applied.
PREVIOUS_RELEASE = Path(__file__).parent / "data" / "release-2b3608d-migrations.tar.gz"
# The SQL of the last release on this layout (commit c493264): its migrations, then its function
# files in the order its runner applied them.
LAST_RELEASE = Path(__file__).parent / "data" / "release-c493264-sql.tar.gz"
# The SQL of the release a rollback of this one goes back to (commit 69d5757), as its runner applies it:
# "cdk deploy the previous commit" (docs/deploy.md) runs its migrate function over this release's schema.
ROLLBACK_RELEASE = Path(__file__).parent / "data" / "release-69d5757-sql.tar.gz"
_DEFINITION = re.compile(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+([a-z_][a-z0-9_.]*)\s*\(", re.I)


def _definitions() -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for path in sorted(REPO.glob("shared/**/*.sql")):
        for name in _DEFINITION.findall(path.read_text(encoding="utf-8")):
            found[(name.lower(), str(path.relative_to(REPO)))] += 1
    return found


def test_every_sql_function_is_defined_once_and_only_in_a_repeatable_file() -> None:
    definitions = _definitions()
    per_name = Counter(name for name, _ in definitions.elements())

    assert per_name, "no function definitions found"
    assert {name: n for name, n in per_name.items() if n > 1} == {}
    assert {path for _, path in definitions if not path.startswith("shared/sql/")} == set()


def test_the_runner_applies_every_repeatable_file_it_names() -> None:
    present = {p.name for p in (REPO / "shared" / "sql").glob("*.sql")}

    assert present == set(REPEATABLE)


def test_each_outcome_type_matches_its_python_enum(db: Database) -> None:
    # Given every function of ours that answers with an outcome column
    rows = db.fetch_all(
        """SELECT p.proname, t.typname
             FROM pg_proc p
             JOIN LATERAL unnest(p.proargnames, p.proallargtypes::oid[], p.proargmodes) AS a(name, type, mode)
               ON a.name = 'outcome' AND a.mode IN ('o', 't')
             JOIN pg_type t ON t.oid = a.type
            WHERE p.proname LIKE 'pq\\_%'"""
    )
    assert {r["proname"] for r in rows} >= {"pq_enqueue_job", "pq_process_payment", "pq_gateway_begin"}

    # Then each outcome is a type of its own whose values are exactly its enum's
    for row in rows:
        assert row["typname"] in SQL_TYPES, f"{row['proname']} answers an untyped outcome ({row['typname']})"
        labels = db.fetch_all(
            "SELECT enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = %s",
            (row["typname"],),
        )
        assert {r["enumlabel"] for r in labels} == {m.value for m in SQL_TYPES[row["typname"]]}, row["proname"]


def test_a_function_cannot_answer_an_outcome_its_type_lacks(db: Database) -> None:
    with pytest.raises(psycopg2.errors.InvalidTextRepresentation):
        db.fetch_one("SELECT 'already_queued'::pq_wallet_outcome")


def _released(archive: tarfile.TarFile) -> dict[str, str]:
    """A release's SQL files in the order its runner applied them, by the names it recorded them
    under: 0001_schema.sql for a migration, sql/intake.sql for a function file."""
    found = {}
    for member in archive.getmembers():
        extracted = archive.extractfile(member) if member.isfile() else None
        if extracted is not None:
            path = Path(member.name)
            found[f"sql/{path.name}" if path.parent.name == "sql" else path.name] = extracted.read().decode()
    return found


def _database_as_released(pg_admin_url: str, release: Path) -> Iterator[str]:
    """A database migrated by a release's runner: its files applied and recorded, in its order."""
    name = f"t_upgrade_{uuid.uuid4().hex[:10]}"
    _admin_exec(pg_admin_url, f"CREATE DATABASE {name}")
    url = _url(pg_admin_url, name)
    db = Database(lambda: url, connect_timeout_s=10)
    with tarfile.open(release) as archive, db.transaction() as cur:
        cur.execute(
            """CREATE TABLE schema_migrations (
                   version text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        for version, sql in _released(archive).items():
            cur.execute(sql)
            cur.execute(
                "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                (version, hashlib.sha256(sql.encode()).hexdigest()),
            )
    db.close()
    yield url
    _admin_exec(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def old_release_url(pg_admin_url: str) -> Iterator[str]:
    """A database migrated by the release before this layout, with its migrations."""
    yield from _database_as_released(pg_admin_url, PREVIOUS_RELEASE)


@pytest.fixture
def last_release_url(pg_admin_url: str) -> Iterator[str]:
    """A database the last release's runner migrated: its migrations, then its function files."""
    yield from _database_as_released(pg_admin_url, LAST_RELEASE)


def _pays_as_this_release_does(app: App, user_id: str) -> bool:
    order = app.db.fetch_one("SELECT id FROM orders WHERE user_id = %s", (user_id,))
    assert order is not None
    job = pay(app, user_id, f"new-{user_id}", order["id"]).body["job_id"]
    return process_wallet_job(app, job).outcome == "succeeded"


def _pays_as_the_last_release_did(url: str, user_id: str) -> bool:
    """The calls the last release's code makes for a wallet payment, on a connection of its own."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "SELECT outcome FROM pq_process_payment((SELECT job_id FROM pq_enqueue_job(%s, %s, 'h', "
            "(SELECT id FROM orders WHERE user_id = %s), 'wallet', NULL)))",
            (user_id, f"key-{user_id}", user_id),
        )
        row = cur.fetchone()
    conn.close()
    return row == ("succeeded",)


def test_a_database_of_the_previous_release_upgrades_and_pays(old_release_url: str) -> None:
    # Given a database the previous release migrated, with a payment made by its functions
    app: App = bootstrap(Settings(database_url=old_release_url, queue_backend="pgmq", event_bus_backend="pgmq"))
    db = app.db
    seed(db, SeedPlan(users=2))
    old = db.fetch_one(
        "SELECT * FROM pq_enqueue_job('demo-user-1', 'old-key', 'h', "
        "(SELECT id FROM orders WHERE user_id = 'demo-user-1'), 'wallet', NULL)"
    )
    assert old is not None and old["outcome"] == "created"
    assert db.fetch_one("SELECT outcome FROM pq_process_payment(%s)", (old["job_id"],)) == {"outcome": "succeeded"}

    # When this release's runner migrates it
    applied = migrate(db)

    # Then the later migrations apply, the functions are replaced, nothing else is re-applied, and
    # this release's code pays
    with tarfile.open(PREVIOUS_RELEASE) as archive:
        released = set(_released(archive))
    later = [name for name, _ in versioned_files() if name not in released]
    assert applied == later + [f"sql/{name}" for name in REPEATABLE]
    assert migrate(db) == []
    try:
        install_pgmq(db)
        assert _pays_as_this_release_does(app, "demo-user-2")
    finally:
        app.db.close()


def test_a_database_of_the_last_release_upgrades_and_both_releases_pay(last_release_url: str) -> None:
    # Given a database the last release migrated, and a payment made by its functions
    app: App = bootstrap(Settings(database_url=last_release_url, queue_backend="pgmq", event_bus_backend="pgmq"))
    db = app.db
    seed(db, SeedPlan(users=3))
    install_pgmq(db)
    assert _pays_as_the_last_release_did(last_release_url, "demo-user-1")

    # When this release's runner migrates it
    applied = migrate(db)

    # Then only what is new or changed is applied, once; and the calls of the last release's code
    # (which runs on during a deploy and after a rollback) pay, as this release's code does
    with tarfile.open(LAST_RELEASE) as archive:
        released = {version: hashlib.sha256(sql.encode()).hexdigest() for version, sql in _released(archive).items()}
    changed = [
        version
        for version, sql in versioned_files() + repeatable_files()
        if released.get(version) != hashlib.sha256(sql.encode()).hexdigest()
    ]
    assert applied == changed and "0009_lookup_indexes.sql" in applied
    assert migrate(db) == []
    try:
        assert _pays_as_the_last_release_did(last_release_url, "demo-user-3")
        assert _pays_as_this_release_does(app, "demo-user-2")
    finally:
        app.db.close()


def test_the_previous_release_code_still_reads_what_it_read(app: App, demo: dict[str, int]) -> None:
    # Given the calls and columns the previous release's code makes and reads (it keeps running
    # while a deploy rolls out, and after a rollback)
    order = app.db.fetch_one("SELECT id FROM orders WHERE user_id = 'demo-user-1'")
    assert order is not None
    enqueued = app.db.fetch_one(
        "SELECT outcome, job_id, status, queue_seq, reason, finished FROM pq_enqueue_job(%s, %s, %s, %s, %s, %s)",
        ("demo-user-1", "k", "h", order["id"], "wallet", None),
    )
    assert enqueued is not None and enqueued["outcome"] == "created"

    # Then the payment function answers the same columns, with outcomes it knows as strings
    paid = app.db.fetch_one(
        "SELECT outcome, reason, payment_id, event FROM pq_process_payment(%s)", (enqueued["job_id"],)
    )
    assert paid is not None and paid["outcome"] == "succeeded"
    assert set(paid["event"]) == {"id", "type", "occurred_at", "data"}


def _checkout(db: Database, user_id: str, method: str, status: str, minutes_ago: int) -> None:
    """A checkout as the last release recorded it (a live one per order and method)."""
    db.execute(
        """INSERT INTO gateway_checkouts (order_id, user_id, method, merchant_ref, gateway_order_id, amount_paise,
                                          currency, status, expires_at, created_at)
           SELECT o.id, o.user_id, %s, 'pq' || md5(random()::text),
                  CASE WHEN %s = 'created' THEN md5(random()::text) END, o.total_paise, o.currency, %s,
                  now() + interval '30 minutes',
                  now() - make_interval(mins => %s)
             FROM orders o WHERE o.user_id = %s""",
        (method, status, status, minutes_ago, user_id),
    )


def test_an_order_with_live_checkouts_at_two_gateways_keeps_both_live_when_upgraded(
    last_release_url: str,
) -> None:
    # Given a database the last release migrated, where two shoppers each opened a checkout at both gateways
    # (that release let them, and this one does too): one given to the page at each; one whose create answer
    # was lost, then one given
    db = Database(lambda: last_release_url, connect_timeout_s=10)
    try:
        seed(db, SeedPlan(users=2))
        _checkout(db, "demo-user-1", "razorpay", "created", 10)
        _checkout(db, "demo-user-1", "cashfree", "created", 5)
        _checkout(db, "demo-user-2", "razorpay", "creating", 10)
        _checkout(db, "demo-user-2", "cashfree", "created", 5)

        # When this release's runner migrates it
        migrate(db)

        # Then every checkout is as it was: the migration rewrites no data
        rows = db.fetch_all("SELECT user_id, method, status FROM gateway_checkouts ORDER BY user_id, method")
        assert rows == [
            {"user_id": "demo-user-1", "method": "cashfree", "status": "created"},
            {"user_id": "demo-user-1", "method": "razorpay", "status": "created"},
            {"user_id": "demo-user-2", "method": "cashfree", "status": "created"},
            {"user_id": "demo-user-2", "method": "razorpay", "status": "creating"},
        ]
    finally:
        db.close()


def _roll_back(db: Database, released: dict[str, str]) -> None:
    """A deploy of a release before this one: its runner applies its function files that differ from ours, in
    its order, in one transaction, and records them (so that this release's runner applies ours again)."""
    ours = dict(repeatable_files())
    with db.transaction() as cur:
        for version, sql in released.items():
            if version.startswith("sql/") and sql != ours.get(version):
                cur.execute(sql)
                cur.execute(
                    "UPDATE schema_migrations SET checksum = %s WHERE version = %s",
                    (hashlib.sha256(sql.encode()).hexdigest(), version),
                )


def test_a_rollback_to_the_release_before_migrates_and_its_calls_work_then_this_release_again(
    app: App, demo: dict[str, int], database_url: str
) -> None:
    # Given this release's schema, and the files of the release before it
    db = app.db
    with tarfile.open(ROLLBACK_RELEASE) as archive:
        released = _released(archive)
    ours = dict(repeatable_files())
    assert set(released) >= set(ours), "a repeatable file this release adds needs no rollback of its own"

    # When a rollback deploys that release: its runner applies its function files that differ from ours, in
    # its order, in one transaction
    _roll_back(db, released)

    # Then its calls resolve and answer as they did (no second overload of a name it calls makes them
    # ambiguous): a checkout opened its way, a wallet payment made its way
    order = db.fetch_one("SELECT id FROM orders WHERE user_id = 'demo-user-1'")
    assert order is not None
    opened = db.fetch_one(
        "SELECT outcome FROM pq_checkout_open('demo-user-1', %s, 'razorpay', 1800, 30)", (order["id"],)
    )
    assert opened == {"outcome": "pending"}
    assert _pays_as_the_last_release_did(database_url, "demo-user-2")

    # And deploying this release again applies cleanly, and its own code pays
    migrate(db)
    assert migrate(db) == []
    assert _pays_as_this_release_does(app, "demo-user-3")


def test_a_shopper_who_leaves_while_the_release_before_runs_is_still_counted_as_a_leaver(
    app: App, demo: dict[str, int]
) -> None:
    # Given three shoppers in line under this release
    _, middle, last = (pay(app, f"demo-user-{i}", f"k{i}").body for i in (1, 2, 3))
    assert middle["position"] == 2

    # When a rollback deploys the release before (its function files over this schema: its pq_end_job knows
    # nothing of the leavers' count), the last shopper leaves the line meanwhile, and this release is back
    with tarfile.open(ROLLBACK_RELEASE) as archive:
        _roll_back(app.db, _released(archive))
    cancel_job(app, "demo-user-3", last["job_id"])
    assert app.db.fetch_one("SELECT pq_finished_count() - pq_processed_count() AS leavers") == {"leavers": 0}
    migrate(app.db)

    # Then the leaver was counted as one (this release's events.sql counts them again when applied): the
    # middle shopper's own answer still has the first one ahead of them. Found by a review: it read 1
    job = call(status_handler, "GET", f"/v1/payments/{middle['job_id']}", user="demo-user-2")[1]
    assert job["position"] == 2
    assert app.db.fetch_one("SELECT pq_finished_count() - pq_processed_count() AS leavers") == {"leavers": 1}

"""Least privilege in the database (migration 0014, shared/sql/grants.sql): a role per path, a login per
function. A role runs only the functions granted to it; the read paths cannot write; each function, logged
in as its own role, serves every route it serves and does its work; the grants outlive a function file
applied again; and a database that is past 0014's number without it applies it in the next run."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import boto3
import psycopg2
import psycopg2.errors
import pytest

import shared.migrate
from functions.enqueue.handler import handler as enqueue_handler
from functions.process_payment.handler import handler as process_handler
from functions.status.handler import handler as status_handler
from functions.sweeper.handler import handler as sweeper_handler
from local.gateway_sim import Simulator
from local.invariants import check
from local.lambda_shim import LocalContext, http_api_event
from local.seed import SeedPlan, seed
from shared.bootstrap import App, bootstrap
from shared.db import Database
from shared.db_roles import LOGIN_ROLES
from shared.migrate import migrate
from shared.routes import MERCHANT_SCOPE, OPERATOR_SCOPE, PAYMENTS_SCOPE, ROUTES
from shared.settings import Settings
from tests.aws.harness import sqs_event_record
from tests.conftest import _admin_exec, _url
from tests.integration.conftest import AWS_REGION
from tests.integration.gateway_helpers import WebhookInbox, gateway_settings, pay_at_gateway

GROUPS = (
    "pq_enqueue",
    "pq_line",
    "pq_status",
    "pq_webhook",
    "pq_merchant",
    "pq_redeliver",
    "pq_operator",
    "pq_processor",
    "pq_sweeper",
)


def _as_role(database_url: str, role: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement as `role` (SET ROLE in a transaction of its own, rolled back: what it did is undone)."""
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL ROLE %s" % role)  # noqa: UP031 -- a role name is no literal
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.rollback()
        conn.close()


def _login_url(database_url: str, role: str) -> str:
    """The test database's URL with another user (the test server trusts local connections, as RDS Proxy
    trusts a valid IAM token)."""
    parts = urlsplit(database_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


def _queued_job(db: Database, user_id: str) -> str:
    order = db.fetch_one("SELECT id FROM orders WHERE user_id = %s ORDER BY id LIMIT 1", (user_id,))
    assert order is not None
    row = db.fetch_one(
        "SELECT job_id FROM pq_enqueue_job(%s, %s, 'h', %s, 'wallet', NULL)", (user_id, f"k-{user_id}", order["id"])
    )
    assert row is not None
    return str(row["job_id"])


def test_the_enqueue_role_cannot_call_the_payment_function(
    db: Database, demo: dict[str, int], database_url: str
) -> None:
    # Given a queued job
    job_id = _queued_job(db, "demo-user-1")

    # When the enqueue role calls the payment function on it, then it is refused
    with pytest.raises(
        psycopg2.errors.InsufficientPrivilege, match="permission denied for function pq_process_payment"
    ):
        _as_role(database_url, "pq_enqueue", "SELECT * FROM pq_process_payment(%s)", (job_id,))
    # (as is a function granted to nobody, called by the processor's role)
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        _as_role(database_url, "pq_processor", "SELECT pq_lock_user('demo-user-1')")

    # And the processor's role pays it
    assert _as_role(database_url, "pq_processor", "SELECT outcome::text FROM pq_process_payment(%s)", (job_id,)) == [
        ("succeeded",)
    ]


def test_the_status_role_reads_and_cannot_write(db: Database, demo: dict[str, int], database_url: str) -> None:
    # Given a queued job
    job_id = _queued_job(db, "demo-user-1")

    # Then the status role reads the job as the status route does, and the line's figures
    from shared.services.reads import JOB_QUERY, NOW_SERVING_QUERY

    (row,) = _as_role(database_url, "pq_status", JOB_QUERY, (job_id, "demo-user-1"))
    assert row[3] == "queued"
    assert len(_as_role(database_url, "pq_status", NOW_SERVING_QUERY, (10,))) == 1
    # But it writes nothing: not a table, not through a function that writes
    for sql, params in (
        ("UPDATE payment_jobs SET status = 'failed' WHERE id = %s", (job_id,)),
        ("UPDATE wallets SET balance_paise = balance_paise + 1", ()),
        ("DELETE FROM outbox_events", ()),
        ("INSERT INTO users (id) VALUES ('intruder')", ()),
        ("SELECT * FROM pq_cancel_job('demo-user-1', %s)", (job_id,)),
        ("SELECT * FROM pq_leave_line('demo-user-1', %s, true)", (job_id,)),
        ("SELECT * FROM pq_process_payment(%s)", (job_id,)),
        ("SELECT nextval('payment_finished_seq')", ()),
        ("UPDATE line_finished SET finished = finished + 1", ()),
    ):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            _as_role(database_url, "pq_status", sql, params)
    # And what it may run or touch is only ever a read: STABLE functions, SELECT on tables
    granted = db.fetch_all(
        """SELECT p.proname, p.provolatile FROM pg_proc p
            WHERE p.pronamespace = 'public'::regnamespace AND has_function_privilege('pq_status', p.oid, 'EXECUTE')"""
    )
    assert granted and all(f["provolatile"] in ("s", "i") for f in granted), granted
    writable = db.fetch_all(
        """SELECT c.relname FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'S')
              AND (has_table_privilege('pq_status', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
                   OR (c.relkind = 'S' AND has_sequence_privilege('pq_status', c.oid, 'UPDATE, USAGE')))"""
    )
    assert writable == []


def test_no_one_but_the_owner_runs_a_function_granted_to_no_role_and_every_writer_runs_as_its_owner(
    db: Database,
) -> None:
    rows = db.fetch_all(
        """SELECT p.proname, p.provolatile, p.prosecdef, p.proconfig,
                  array(SELECT r FROM unnest(%s::text[]) r WHERE has_function_privilege(r, p.oid, 'EXECUTE')) AS roles,
                  has_function_privilege('public', p.oid, 'EXECUTE') AS public
             FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'pq\\_%%'""",
        (list(GROUPS),),
    )
    assert rows
    assert [r["proname"] for r in rows if r["public"]] == []
    for r in rows:
        # A function some role may call that writes runs as its owner, on a search_path of our own;
        # the others (internal steps, reads) as their caller
        definer = bool(r["roles"]) and r["provolatile"] == "v"
        assert r["prosecdef"] == definer, r
        if definer:
            assert "search_path=public, pg_temp" in r["proconfig"], r
    # The request paths' functions keep their plan setting beside it
    (payment,) = [r for r in rows if r["proname"] == "pq_process_payment"]
    assert "enable_seqscan=off" in payment["proconfig"]


def test_each_login_is_a_member_of_the_groups_of_what_its_function_serves(db: Database) -> None:
    rows = db.fetch_all(
        """SELECT m.rolname AS login, g.rolname AS grp FROM pg_auth_members a
             JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid
            WHERE m.rolname LIKE 'pq\\_fn\\_%%'"""
    )
    logins = db.fetch_all("SELECT rolname, rolcanlogin, rolinherit FROM pg_roles WHERE rolname LIKE 'pq\\_%%'")

    assert {r["rolname"] for r in logins if r["rolcanlogin"]} == set(LOGIN_ROLES.values())
    assert {r["rolname"] for r in logins if not r["rolcanlogin"]} == set(GROUPS)
    # (inheriting the groups' rights: a SET ROLE per session would pin an RDS Proxy session)
    assert all(r["rolinherit"] for r in logins if r["rolcanlogin"])
    memberships: dict[str, set[str]] = {}
    for r in rows:
        memberships.setdefault(r["login"], set()).add(r["grp"])
    assert memberships == {
        LOGIN_ROLES["enqueue"]: {"pq_enqueue", "pq_webhook", "pq_merchant"},
        LOGIN_ROLES["status"]: {"pq_status", "pq_line", "pq_operator", "pq_redeliver"},
        LOGIN_ROLES["process_payment"]: {"pq_processor"},
        LOGIN_ROLES["sweeper"]: {"pq_sweeper"},
    }


def test_a_function_file_applied_again_keeps_its_functions_grants_and_owner_rights(
    db: Database, demo: dict[str, int], database_url: str
) -> None:
    # Given a function dropped and created again, as a release's file does on a signature change (it lost
    # its grants and its SECURITY DEFINER), and one replaced in place (it lost SECURITY DEFINER)
    files = dict(shared.migrate.repeatable_files())
    db.execute(files["sql/checkouts.sql"])
    db.execute(files["sql/wallet_payment.sql"])
    rights = """SELECT has_function_privilege('pq_enqueue',
                                              (SELECT oid FROM pg_proc WHERE proname = 'pq_checkout_open'),
                                              'EXECUTE') AS granted,
                       (SELECT prosecdef FROM pg_proc WHERE proname = 'pq_checkout_open') AS checkout_definer,
                       (SELECT prosecdef FROM pg_proc WHERE proname = 'pq_process_payment') AS payment_definer"""
    assert db.fetch_one(rights) == {"granted": False, "checkout_definer": False, "payment_definer": False}

    # When the runner applies those files again (their recorded checksums are not the files')
    db.execute(
        "UPDATE schema_migrations SET checksum = 'old' WHERE version IN ('sql/checkouts.sql', 'sql/wallet_payment.sql')"
    )
    applied = migrate(db)

    # Then the grants are applied after them, once, and the roles have their rights back
    assert applied == ["sql/checkouts.sql", "sql/wallet_payment.sql", "sql/grants.sql"]
    assert db.fetch_one(rights) == {"granted": True, "checkout_definer": True, "payment_definer": True}
    job_id = _queued_job(db, "demo-user-1")
    assert _as_role(database_url, "pq_processor", "SELECT outcome::text FROM pq_process_payment(%s)", (job_id,)) == [
        ("succeeded",)
    ]
    assert migrate(db) == []


@pytest.fixture
def fresh_url(pg_admin_url: str) -> Iterator[str]:
    name = f"t_roles_{uuid.uuid4().hex[:10]}"
    _admin_exec(pg_admin_url, f"CREATE DATABASE {name}")
    yield _url(pg_admin_url, name)
    _admin_exec(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_a_database_past_0014s_number_without_it_applies_it_in_the_next_run(
    fresh_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a database the release before 0014 migrated: every migration up to 0017 but 0014, no grants
    versioned, repeatable = shared.migrate.versioned_files, shared.migrate.repeatable_files
    with monkeypatch.context() as before:
        before.setattr(
            shared.migrate, "versioned_files", lambda: [v for v in versioned() if not v[0].startswith("0014")]
        )
        before.setattr(
            shared.migrate, "repeatable_files", lambda: [r for r in repeatable() if r[0] != "sql/grants.sql"]
        )
        first = migrate(Database(lambda: fresh_url, connect_timeout_s=10))
    assert "0017_merchant_api.sql" in first and "0014_function_roles.sql" not in first

    # When this release's runner migrates it
    db = Database(lambda: fresh_url, connect_timeout_s=10)
    applied = migrate(db)

    # Then 0014 applies, below the number already applied, and the grants after it; once
    assert applied == ["0014_function_roles.sql", "sql/grants.sql"]
    db = Database(lambda: fresh_url, connect_timeout_s=10)
    assert migrate(db) == []
    # And the roles are in force: the enqueue role may not pay, and each login has the request paths'
    # statement timeout in this database
    seed(db, SeedPlan(users=1))
    job_id = _queued_job(db, "demo-user-1")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        _as_role(fresh_url, "pq_enqueue", "SELECT * FROM pq_process_payment(%s)", (job_id,))
    settings = db.fetch_all(
        """SELECT r.rolname, s.setconfig FROM pg_db_role_setting s
             JOIN pg_roles r ON r.oid = s.setrole JOIN pg_database d ON d.oid = s.setdatabase
            WHERE d.datname = current_database() AND r.rolname LIKE 'pq\\_fn\\_%%'"""
    )
    assert {r["rolname"]: r["setconfig"] for r in settings} == {
        login: ["statement_timeout=5s"] for login in LOGIN_ROLES.values()
    }
    db.close()


def test_on_rds_the_logins_may_authenticate_with_iam(fresh_url: str) -> None:
    # Given a server with RDS's rds_iam role (made here, in a transaction that is rolled back)
    conn = psycopg2.connect(fresh_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam'")
            if cur.fetchone() is None:
                cur.execute("CREATE ROLE rds_iam NOLOGIN")
            # When 0014 runs
            cur.execute(dict(shared.migrate.versioned_files())["0014_function_roles.sql"])
            # Then every login holds it: RDS Proxy logs in as them with IAM (end-to-end IAM authentication)
            cur.execute(
                "SELECT pg_has_role(r, 'rds_iam', 'MEMBER') FROM unnest(%s::text[]) r", (list(LOGIN_ROLES.values()),)
            )
            assert [r[0] for r in cur.fetchall()] == [True] * len(LOGIN_ROLES)
    finally:
        conn.rollback()
        conn.close()


# Every function serving its routes, logged in as its own role -------------------------------------------------

EVENT_BUS = "payment-queue"


@pytest.fixture
def deployment(
    database_url: str, queues: tuple[Any, str, str], sim: Simulator, inbox: WebhookInbox
) -> Iterator[Callable[[str], App]]:
    """The functions wired as on AWS (SQS, EventBridge: moto), each to the database as its own login."""
    _, queue_url, dlq_url = queues
    boto3.client("events", region_name=AWS_REGION).create_event_bus(Name=EVENT_BUS)

    def login(function: str) -> App:
        return bootstrap(
            Settings(
                database_url=_login_url(database_url, LOGIN_ROLES[function]),
                db_application_name=f"pq-{function}",
                queue_backend="sqs",
                queue_url=queue_url,
                dlq_url=dlq_url,
                event_bus_backend="eventbridge",
                event_bus_name=EVENT_BUS,
                sweep_after_s=0,
                **gateway_settings(sim),
            )
        )

    yield login
    bootstrap().db.close()


def _api(
    login: Callable[[str], App],
    called: set[str],
    method: str,
    path: str,
    *,
    user: str,
    scope: str,
    body: dict[str, Any] | None = None,
    query: str = "",
    key: str | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """A request as API Gateway hands it to the route's function (after the JWT authorizer); the function
    logged in as its own role."""
    route = next(r for r in ROUTES if r.method == method and _matches(r.path, path))
    called.add(route.key)
    login(route.function)
    event = http_api_event(
        method=method,
        path=path,
        route_key=route.key,
        query=query,
        headers={"content-type": "application/json"} | ({"idempotency-key": key} if key else {}) | (headers or {}),
        body=raw if raw is not None else (json.dumps(body).encode() if body is not None else b""),
        claims=None if route.scope is None else {"sub": user, "scope": scope},
        scopes=None if route.scope is None else [scope],
        path_parameters=None,
        source_ip="127.0.0.1",
    )
    handler = enqueue_handler if route.function == "enqueue" else status_handler
    result = handler(event, LocalContext(route.function))
    return int(result["statusCode"]), json.loads(result["body"] or "null")


def _matches(pattern: str, path: str) -> bool:
    want, got = pattern.split("/"), path.split("/")
    return len(want) == len(got) and all(w == g or w.startswith("{") for w, g in zip(want, got, strict=True))


def test_each_function_logged_in_as_its_own_role_serves_every_route_and_does_its_work(
    app: App,
    demo: dict[str, int],
    deployment: Callable[[str], App],
    queues: tuple[Any, str, str],
    sim: Simulator,
    inbox: WebhookInbox,
) -> None:
    sqs, queue_url, _ = queues
    called: set[str] = set()
    owner = app.db
    orders = {r["user_id"]: r["id"] for r in owner.fetch_all("SELECT user_id, id FROM orders")}
    product = owner.fetch_one("SELECT id FROM products ORDER BY id LIMIT 1")
    assert product is not None
    answers: list[tuple[str, int]] = []

    def api(
        method: str, path: str, user: str = "demo-user-1", scope: str = PAYMENTS_SCOPE, **kw: Any
    ) -> dict[str, Any]:
        status, body = _api(deployment, called, method, path, user=user, scope=scope, **kw)
        answers.append((f"{method} {path}", status))
        assert status < 500, (method, path, body)
        return body

    # Given shoppers paying by wallet, at Razorpay, and at Cashfree (whose word comes by webhook), a shop
    # backend ordering and paying for a shopper, and a shopper who leaves the line (enqueue, status)
    shop = {"user": "shop-backend", "scope": MERCHANT_SCOPE}
    wallet_job = api("POST", "/v1/payments", body={"order_id": orders["demo-user-1"], "method": "wallet"}, key="w1")
    razorpay = api(
        "POST", "/v1/checkouts", "demo-user-2", body={"order_id": orders["demo-user-2"], "method": "razorpay"}
    )
    handed = pay_at_gateway(sim, razorpay)
    signed = {k: handed[k] for k in ("razorpay_order_id", "razorpay_payment_id", "razorpay_signature")}
    razorpay_job = api(
        "POST",
        "/v1/payments",
        "demo-user-2",
        key="r1",
        body={"order_id": orders["demo-user-2"], "method": "razorpay"} | signed,
    )
    cashfree = api(
        "POST", "/v1/checkouts", "demo-user-3", body={"order_id": orders["demo-user-3"], "method": "cashfree"}
    )
    pay_at_gateway(sim, cashfree)
    for webhook in inbox.pending():
        api("POST", f"/v1/webhooks/{webhook.gateway}", raw=webhook.body, headers=webhook.headers)
    one = [{"product_id": product["id"], "quantity": 1}]
    merchant_order = api("POST", "/v1/merchant/orders", **shop, key="m1", body={"user_id": "shopper-9", "items": one})
    api(
        "POST",
        "/v1/merchant/wallet-adjustments",
        **shop,
        key="m2",
        body={"user_id": "shopper-9", "amount_paise": 100_000, "reason": "opening credit"},
    )
    merchant_job = api(
        "POST",
        "/v1/merchant/payments",
        **shop,
        key="m3",
        body={"user_id": "shopper-9", "order_id": merchant_order["order_id"], "method": "wallet"},
    )
    second = api("POST", "/v1/merchant/orders", **shop, key="m4", body={"user_id": "demo-user-1", "items": one})
    leaving = api("POST", "/v1/payments", body={"order_id": second["order_id"], "method": "wallet"}, key="l1")
    left = api("DELETE", f"/v1/payments/{leaving['job_id']}")

    # When the processor consumes the queue (and a message no job stands behind) as its own role
    poison = {"job_id": str(uuid.uuid4()), "user_id": "x", "order_id": 0, "method": "wallet"}
    sqs.send_message(
        QueueUrl=queue_url, MessageBody=json.dumps(poison), MessageGroupId="poison", MessageDeduplicationId="poison"
    )
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    while messages := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    ).get("Messages"):
        deployment("process_payment")
        event = {"Records": [sqs_event_record(m, arn, AWS_REGION) for m in messages]}
        assert process_handler(event, LocalContext("process_payment"))["batchItemFailures"] == []
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    # Then every read the status function serves answers, as its own role
    operator = {"user": "operator", "scope": OPERATOR_SCOPE}
    statuses = {
        name: api("GET", f"/v1/payments/{job['job_id']}", user)["status"]
        for name, job, user in (
            ("wallet", wallet_job, "demo-user-1"),
            ("razorpay", razorpay_job, "demo-user-2"),
            ("merchant", merchant_job, "shopper-9"),
            ("left", leaving, "demo-user-1"),
        )
    }
    api("GET", f"/v1/checkouts/{razorpay['checkout_id']}", "demo-user-2")
    api("GET", f"/v1/orders/{orders['demo-user-1']}")
    api("GET", "/v1/queue/now-serving")
    api("GET", "/v1/queue/status", **operator)
    api("GET", "/v1/metrics", **operator)
    api("GET", "/health/db", **operator)
    api("POST", "/v1/refunds/1/retry", **operator)
    api("POST", f"/v1/dlq/jobs/{uuid.uuid4()}/drop", **operator)
    for path in ("orders", "payments", "wallet"):
        api("GET", f"/v1/merchant/{path}", **shop, query="user_id=shopper-9")
    assert api("GET", f"/v1/merchant/payments/{merchant_job['job_id']}", **shop)["status"] == "succeeded"
    since = quote((datetime.now(UTC) - timedelta(hours=1)).isoformat())
    events = api("GET", "/v1/merchant/events", **shop, query=f"since={since}")["events"]
    api("POST", f"/v1/merchant/events/{events[0]['id']}/redeliver", **shop)
    # and the sweeper, as its own role, publishes the event the merchant asked for again
    deployment("sweeper")
    swept = sweeper_handler(
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, LocalContext("sweeper")
    )

    # And the payments went through: every route served (the DLQ redrive, an SQS move task, touches no
    # database), the shopper who left has left, and the books hold
    assert called == {r.key for r in ROUTES} - {"POST /v1/dlq/redrive"}, answers
    assert statuses == {"wallet": "succeeded", "razorpay": "succeeded", "merchant": "succeeded", "left": "failed"}
    assert left["reason"] == "cancelled"
    cashfree_job = owner.fetch_one("SELECT status FROM payment_jobs WHERE method = 'cashfree'")
    assert cashfree_job == {"status": "succeeded"}
    assert owner.fetch_one("SELECT count(*) AS n FROM delivery_failures WHERE dead_lettered") == {"n": 1}
    assert swept["events_republished"] == 1
    found = check(owner)
    assert found == dict.fromkeys(found, 0)

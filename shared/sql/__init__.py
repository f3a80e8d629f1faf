"""The SQL functions, one repeatable file per concern (applied by shared/migrate.py, in its order).

The functions a request, a payment or a webhook calls are created with `SET enable_seqscan = off`.
PL/pgSQL keeps each statement's plan for the life of the connection and, after five executions,
may keep a generic plan for good (PostgreSQL docs: PL/pgSQL "Plan Caching"; PREPARE, "Notes"). A
connection that planned its key lookups while payment_jobs was nearly empty (a new environment's
first sale, the benchmark's fresh database) would keep scanning the whole table as it fills, each
request costing time in proportion to every job taken. Every statement of those functions has an
index to go by; the setting holds only while the function runs and is invisible to RDS Proxy (no
session state, no pinning). tests/integration/test_plan_cache.py holds it.
"""

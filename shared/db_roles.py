"""The database roles the functions log in as: migration 0014 creates them, shared/sql/grants.sql says
what each may do. On AWS each function reaches the database through RDS Proxy as its own role with an IAM
token (infra/components/functions.py); the migrate function alone logs in as the master user, which owns
the schema and the functions."""

from __future__ import annotations

LOGIN_ROLES: dict[str, str] = {
    "enqueue": "pq_fn_enqueue",
    "status": "pq_fn_status",
    "process_payment": "pq_fn_process_payment",
    "sweeper": "pq_fn_sweeper",
}

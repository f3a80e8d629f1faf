"""The books' own check, each sweep (functions/sweeper): money a gateway holds for us that our books place
nowhere.

Every path that moves a gateway's money books it in the same transaction (applied, refunded, refunding, owed),
so a payment no live job holds whose books do not add up is a defect of ours, not a moment between two steps.
pq_books_check finds them among the payments whose books moved within BOOKS_WINDOW_S, and keeps them
(gateway_books_open) until their books close: each sweep gives each an error line naming it, and their count
is the GatewayMoneyUnaccounted metric, whose alarm calls an operator and stays on until the money is placed.
The tests' invariant (local/invariants.py gateway_unaccounted_paise) checks the same books in full, and
against the gateway's own record.
"""

from __future__ import annotations

from shared.observability import logger
from shared.ports import HasDb

# Longer than a sweep's period (a minute on AWS) by far: a sweep missed does not let a movement pass unseen.
# What a sweep reads grows with the hour's gateway payments: 50,000 of them (a 500,000-shopper sale's tenth)
# took 215 ms of one statement on the bench machine (2 cores), every payment's books read by index.
BOOKS_WINDOW_S = 3_600


def check_books(deps: HasDb) -> dict[str, int]:
    """The payments whose money is in no book, each logged at ERROR; how many, and how many paise."""
    rows = deps.db.fetch_all("SELECT * FROM pq_books_check(make_interval(secs => %s))", (BOOKS_WINDOW_S,))
    for row in rows:
        logger.error(
            "gateway money in no book",
            gateway=row["method"],
            gateway_ref=row["gateway_ref"],
            order_id=row["order_id"],
            job_id=str(row["job_id"]),
            captured_paise=row["captured_paise"],
            unaccounted_paise=row["unaccounted_paise"],
            first_found_at=row["first_found_at"].isoformat(),
        )
    return {
        "payments_unaccounted": len(rows),
        "paise_unaccounted": sum(abs(int(r["unaccounted_paise"])) for r in rows),
    }

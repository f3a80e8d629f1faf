"""`make token USER=<id> [OPERATOR=1 | MERCHANT=1]`: print a development bearer token for the local API.

The token carries the payments scope the payment routes require (shared/routes.py), and with
OPERATOR=1 the operator scope as well. MERCHANT=1 prints the shop backend's token instead: the merchant
scope only, its subject the client (shop-backend unless USER names another), as a client-credentials
grant would issue it.
"""

from __future__ import annotations

import argparse
import sys

from local.auth import LocalIssuer
from local.config import LocalSettings
from shared.routes import MERCHANT_SCOPE, OPERATOR_SCOPE, PAYMENTS_SCOPE

MERCHANT_CLIENT = "shop-backend"


def main() -> None:
    parser = argparse.ArgumentParser(description="print a development JWT for the local API")
    parser.add_argument("--user", help="the token's subject (user id; default demo-user-1, or shop-backend)")
    parser.add_argument("--operator", action="store_true", help="add the operator scope to the payments scope")
    parser.add_argument("--merchant", action="store_true", help="the shop backend's token: the merchant scope only")
    parser.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    args = parser.parse_args()
    local = LocalSettings()
    key = local.data_dir / "jwt" / "signing-key.pem"
    if not key.exists():  # a key made here would differ from the one a running API verifies with
        print(f"make token: no signing key at {key}: start the system once with make run", file=sys.stderr)
        raise SystemExit(1)
    issuer = LocalIssuer(key, local.jwt_issuer, local.jwt_audience)
    if args.merchant:
        if args.operator:
            parser.error("a merchant token carries the merchant scope only")
        print(issuer.issue(args.user or MERCHANT_CLIENT, scopes=(MERCHANT_SCOPE,), ttl_s=args.ttl))
        return
    scopes = (PAYMENTS_SCOPE, OPERATOR_SCOPE) if args.operator else (PAYMENTS_SCOPE,)
    print(issuer.issue(args.user or "demo-user-1", scopes=scopes, ttl_s=args.ttl))


if __name__ == "__main__":
    main()

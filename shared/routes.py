"""The HTTP API's routes and the JWT scope each one needs: the one table that the CDK app
(API Gateway routes and their AuthorizationScopes) and the local API (its authorizer) build from.

Scopes are in Amazon Cognito's resource-server form (`payments/<scope>`), so a Cognito user pool
can issue them. Payment routes need the payments scope: the HTTP API's JWT authorizer cannot tell
an access token from an ID token otherwise, and AWS recommends requiring scopes for that reason.
"""

from __future__ import annotations

from dataclasses import dataclass

PAYMENTS_SCOPE = "payments/pay"
OPERATOR_SCOPE = "payments/operator"


@dataclass(frozen=True)
class ApiRoute:
    method: str
    # API Gateway's path syntax: `{name}` is a path parameter.
    path: str
    # The function behind it: functions/<function>/handler.py.
    function: str
    # None: no JWT at all (the gateways' webhooks, whose handler verifies the gateway's HMAC instead).
    scope: str | None

    @property
    def key(self) -> str:
        """The route key, as API Gateway writes it into the event (`routeKey`)."""
        return f"{self.method} {self.path}"


ROUTES = (
    ApiRoute("POST", "/v1/payments", "enqueue", PAYMENTS_SCOPE),
    ApiRoute("GET", "/v1/payments/{job_id}", "status", PAYMENTS_SCOPE),
    ApiRoute("DELETE", "/v1/payments/{job_id}", "status", PAYMENTS_SCOPE),
    ApiRoute("POST", "/v1/checkouts", "enqueue", PAYMENTS_SCOPE),
    ApiRoute("GET", "/v1/checkouts/{checkout_id}", "status", PAYMENTS_SCOPE),
    ApiRoute("POST", "/v1/webhooks/razorpay", "enqueue", None),
    ApiRoute("POST", "/v1/webhooks/cashfree", "enqueue", None),
    ApiRoute("GET", "/v1/queue/status", "status", OPERATOR_SCOPE),
    ApiRoute("GET", "/v1/metrics", "status", OPERATOR_SCOPE),
    ApiRoute("GET", "/health/db", "status", OPERATOR_SCOPE),
    ApiRoute("POST", "/v1/dlq/redrive", "status", OPERATOR_SCOPE),
    ApiRoute("POST", "/v1/refunds/{refund_id}/retry", "status", OPERATOR_SCOPE),
)

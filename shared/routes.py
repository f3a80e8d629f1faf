"""The HTTP API's routes and the JWT scope each one needs: the one table that the CDK app
(API Gateway routes and their AuthorizationScopes) and the local API (its authorizer) build from.

Scopes are in Amazon Cognito's resource-server form (`payments/<scope>`), so a Cognito user pool
can issue them. Payment routes need the payments scope: the HTTP API's JWT authorizer cannot tell
an access token from an ID token otherwise, and AWS recommends requiring scopes for that reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.gateways import GATEWAY_NAMES

PAYMENTS_SCOPE = "payments/pay"
OPERATOR_SCOPE = "payments/operator"
# The shop's backend: a client-credentials token (its subject is the client), which names the shopper
# in each request. Never given to a shopper: it creates orders and moves money in any shopper's wallet.
MERCHANT_SCOPE = "payments/merchant"
# How long the "now serving" figure may be answered from a shared cache: a second of staleness costs a
# waiting shopper nothing, and makes the figure one read a second for everyone, however many wait.
NOW_SERVING_CACHE_S = 1
# The route of that figure. A waiting client is told where to read it (the 202's now_serving_url, from the
# now_serving_url setting): this path of the API locally, CloudFront's URL of it on AWS.
NOW_SERVING_PATH = "/v1/queue/now-serving"


@dataclass(frozen=True)
class ApiRoute:
    method: str
    # API Gateway's path syntax: `{name}` is a path parameter.
    path: str
    # The function behind it: functions/<function>/handler.py.
    function: str
    # None: no JWT at all (the gateways' webhooks, whose handler verifies the gateway's HMAC instead; and
    # the shared figure below, the same for everyone).
    scope: str | None
    # Seconds every client may be answered from a shared cache, the route's Cache-Control max-age:
    # CloudFront in front of it on AWS (an HTTP API caches nothing itself), the local API's own cache
    # locally. 0: never cached. Only for an answer with nothing of any one caller in it.
    shared_cache_s: int = 0

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
    ApiRoute("GET", "/v1/orders/{order_id}", "status", PAYMENTS_SCOPE),
    *(ApiRoute("POST", f"/v1/webhooks/{name}", "enqueue", None) for name in GATEWAY_NAMES),
    ApiRoute("GET", NOW_SERVING_PATH, "status", None, shared_cache_s=NOW_SERVING_CACHE_S),
    ApiRoute("GET", "/v1/queue/status", "status", OPERATOR_SCOPE),
    ApiRoute("GET", "/v1/metrics", "status", OPERATOR_SCOPE),
    ApiRoute("GET", "/health/db", "status", OPERATOR_SCOPE),
    ApiRoute("POST", "/v1/dlq/redrive", "status", OPERATOR_SCOPE),
    ApiRoute("POST", "/v1/dlq/jobs/{job_id}/drop", "status", OPERATOR_SCOPE),
    ApiRoute("POST", "/v1/refunds/{refund_id}/retry", "status", OPERATOR_SCOPE),
    ApiRoute("POST", "/v1/merchant/orders", "enqueue", MERCHANT_SCOPE),
    ApiRoute("GET", "/v1/merchant/orders", "status", MERCHANT_SCOPE),
    ApiRoute("POST", "/v1/merchant/payments", "enqueue", MERCHANT_SCOPE),
    ApiRoute("GET", "/v1/merchant/payments", "status", MERCHANT_SCOPE),
    ApiRoute("GET", "/v1/merchant/payments/{job_id}", "status", MERCHANT_SCOPE),
    ApiRoute("POST", "/v1/merchant/wallet-adjustments", "enqueue", MERCHANT_SCOPE),
    ApiRoute("GET", "/v1/merchant/wallet", "status", MERCHANT_SCOPE),
    ApiRoute("GET", "/v1/merchant/events", "status", MERCHANT_SCOPE),
    ApiRoute("POST", "/v1/merchant/events/{event_id}/redeliver", "status", MERCHANT_SCOPE),
)

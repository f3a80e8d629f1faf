"""HTTP API: a JWT authorizer from config on every route, the operator scope on operator routes."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from infra.build_assets import FUNCTION_NAMES
from shared.routes import NOW_SERVING_CACHE_S, NOW_SERVING_PATH, ROUTES
from shared.settings import Settings
from tests.infra.conftest import Synthesized

PAYMENT_ROUTES = {
    "POST /v1/payments",
    "GET /v1/payments/{job_id}",
    "DELETE /v1/payments/{job_id}",
    "POST /v1/checkouts",
    "GET /v1/checkouts/{checkout_id}",
    "GET /v1/orders/{order_id}",
}
WEBHOOK_ROUTES = {"POST /v1/webhooks/razorpay", "POST /v1/webhooks/cashfree"}
# The same figure for every shopper, served through CloudFront's cache: no JWT.
SHARED_ROUTES = {"GET /v1/queue/now-serving"}
OPERATOR_ROUTES = {
    "GET /v1/queue/status",
    "GET /v1/metrics",
    "GET /health/db",
    "POST /v1/dlq/redrive",
    "POST /v1/dlq/jobs/{job_id}/drop",
    "POST /v1/refunds/{refund_id}/retry",
}
MERCHANT_ROUTES = {
    "POST /v1/merchant/orders",
    "GET /v1/merchant/orders",
    "POST /v1/merchant/payments",
    "GET /v1/merchant/payments",
    "GET /v1/merchant/payments/{job_id}",
    "POST /v1/merchant/wallet-adjustments",
    "GET /v1/merchant/wallet",
    "GET /v1/merchant/events",
    "POST /v1/merchant/events/{event_id}/redeliver",
}


def test_api_verifies_jwts_from_the_configured_issuer_and_audience(stack: Synthesized) -> None:
    stack.template.has_resource_properties(
        "AWS::ApiGatewayV2::Authorizer",
        {
            "AuthorizerType": "JWT",
            "IdentitySource": ["$request.header.Authorization"],
            "JwtConfiguration": {
                "Issuer": stack.config.api.jwt_issuer,
                "Audience": list(stack.config.api.jwt_audience),
            },
        },
    )


def _routes(stack: Synthesized) -> dict[str, dict[str, Any]]:
    return {r["Properties"]["RouteKey"]: r["Properties"] for r in stack.resources("AWS::ApiGatewayV2::Route").values()}


def test_every_route_needs_a_jwt_payment_routes_the_payments_scope_operator_routes_the_operator_scope(
    stack: Synthesized,
) -> None:
    authorizer_id, _ = stack.only("AWS::ApiGatewayV2::Authorizer")
    routes = _routes(stack)

    assert set(routes) == PAYMENT_ROUTES | OPERATOR_ROUTES | WEBHOOK_ROUTES | SHARED_ROUTES | MERCHANT_ROUTES
    for key, route in routes.items():
        # The gateways send no JWT (the handler checks their HMAC); the shared figure needs none.
        if key in WEBHOOK_ROUTES | SHARED_ROUTES:
            assert route.get("AuthorizationType", "NONE") == "NONE", key
            assert "AuthorizerId" not in route and "AuthorizationScopes" not in route, key
            continue
        assert route["AuthorizationType"] == "JWT", key
        assert route["AuthorizerId"] == {"Ref": authorizer_id}, key
        # Without a scope an ID token of the same issuer would open the payment routes.
        expected_scopes = (
            ["payments/operator"]
            if key in OPERATOR_ROUTES
            else ["payments/merchant"]
            if key in MERCHANT_ROUTES
            else ["payments/pay"]
        )
        assert route.get("AuthorizationScopes") == expected_scopes, key


def test_the_routes_and_scopes_are_the_ones_the_local_api_enforces(stack: Synthesized) -> None:
    from local.api import ROUTES as LOCAL_ROUTES

    deployed = {key: route.get("AuthorizationScopes") for key, route in _routes(stack).items()}
    local = {route.route_key: None if route.scope is None else [route.scope] for route in LOCAL_ROUTES}

    assert deployed == local == {r.key: None if r.scope is None else [r.scope] for r in ROUTES}


def test_cors_allows_the_configured_page_origins_only(stack: Synthesized) -> None:
    _, api = stack.only("AWS::ApiGatewayV2::Api")
    cors = api["Properties"]["CorsConfiguration"]

    assert cors["AllowOrigins"] == list(stack.config.api.cors_origins)
    assert cors["AllowOrigins"] == ["https://shop.example.com", "https://ops.example.com"]
    assert {"authorization", "idempotency-key"} <= set(cors["AllowHeaders"])
    assert "retry-after" in cors["ExposeHeaders"]
    assert set(cors["AllowMethods"]) == {"GET", "POST", "DELETE", "OPTIONS"}
    assert cors.get("AllowCredentials") is False


def test_routes_reach_the_enqueue_and_status_functions(stack: Synthesized) -> None:
    integrations = stack.resources("AWS::ApiGatewayV2::Integration")
    targets = {i["Properties"]["IntegrationUri"]["Fn::GetAtt"][0] for i in integrations.values()}

    assert targets == {stack.function("enqueue")[0], stack.function("status")[0]}


def test_stage_throttles_and_writes_access_logs(stack: Synthesized) -> None:
    api = stack.config.api

    stack.template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "AutoDeploy": True,
            "DefaultRouteSettings": {
                "ThrottlingRateLimit": api.throttle_rate_per_second,
                "ThrottlingBurstLimit": api.throttle_burst,
            },
            "AccessLogSettings": {
                "DestinationArn": Match.any_value(),
                "Format": Match.string_like_regexp(r"\$context\.requestId"),
            },
        },
    )


def test_the_now_serving_figure_is_cached_by_cloudfront_and_nothing_else_is(stack: Synthesized) -> None:
    _, distribution = stack.only("AWS::CloudFront::Distribution")
    config = distribution["Properties"]["DistributionConfig"]
    behaviours = {b["PathPattern"]: b for b in config["CacheBehaviors"]}
    policies = stack.resources("AWS::CloudFront::CachePolicy")

    # Only the shared figure's path is cached, for at most its max-age, keyed on nothing of the viewer
    assert set(behaviours) == {"/v1/queue/now-serving"}
    figure = behaviours["/v1/queue/now-serving"]
    policy = policies[figure["CachePolicyId"]["Ref"]]["Properties"]["CachePolicyConfig"]
    assert (policy["MinTTL"], policy["DefaultTTL"], policy["MaxTTL"]) == (0, NOW_SERVING_CACHE_S, NOW_SERVING_CACHE_S)
    key = policy["ParametersInCacheKeyAndForwardedToOrigin"]
    assert key["HeadersConfig"]["HeaderBehavior"] == "none"
    assert key["CookiesConfig"]["CookieBehavior"] == "none"
    assert key["QueryStringsConfig"]["QueryStringBehavior"] == "none"
    assert figure["AllowedMethods"] == ["GET", "HEAD"] and figure["ViewerProtocolPolicy"] == "https-only"
    # The rest reaches the API uncached, read-only, without the viewer's Authorization (the JWT routes refuse)
    default = config["DefaultCacheBehavior"]
    assert default["AllowedMethods"] == ["GET", "HEAD"] and "OriginRequestPolicyId" not in default
    # One shared cache in the API's region in front of the origin, over TLS
    (origin,) = config["Origins"]
    assert origin["OriginShield"] == {"Enabled": True, "OriginShieldRegion": stack.config.region}
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"


def test_a_waiting_client_is_sent_to_the_figure_through_cloudfront_not_the_api(
    stack: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the distribution in front of the figure and the stack's NowServingUrl output (its base URL)
    distribution_id, _ = stack.only("AWS::CloudFront::Distribution")
    domain = {"Fn::GetAtt": [distribution_id, "DomainName"]}
    assert stack.json["Outputs"]["NowServingUrl"]["Value"] == {"Fn::Join": ["", ["https://", domain]]}

    # Then the functions that answer a job in line (enqueue's 202, status's job) are told the figure's
    # absolute URL through the cache, and no other function is given the setting
    cached = {"Fn::Join": ["", ["https://", domain, NOW_SERVING_PATH]]}
    for name in FUNCTION_NAMES:
        variables = stack.function(name)[1]["Properties"]["Environment"]["Variables"]
        if name in ("enqueue", "status"):
            assert variables["PQ_NOW_SERVING_URL"] == cached, name
        else:
            assert "PQ_NOW_SERVING_URL" not in variables, name

    # And that variable is the setting the answers read (the relative route when it is unset, locally)
    monkeypatch.delenv("PQ_NOW_SERVING_URL", raising=False)
    assert Settings().now_serving_url == NOW_SERVING_PATH
    monkeypatch.setenv("PQ_NOW_SERVING_URL", "https://d111111abcdef8.cloudfront.net/v1/queue/now-serving")
    assert Settings().now_serving_url == "https://d111111abcdef8.cloudfront.net/v1/queue/now-serving"

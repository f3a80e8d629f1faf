"""HTTP API: a JWT authorizer from config on every route, the operator scope on operator routes."""

from __future__ import annotations

from aws_cdk.assertions import Match

from tests.infra.conftest import Synthesized

PAYMENT_ROUTES = {"POST /v1/payments", "GET /v1/payments/{job_id}"}
OPERATOR_ROUTES = {"GET /v1/queue/status", "GET /v1/metrics", "GET /health/db", "POST /v1/dlq/redrive"}


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


def test_every_route_needs_a_jwt_and_operator_routes_the_operator_scope(stack: Synthesized) -> None:
    authorizer_id, _ = stack.only("AWS::ApiGatewayV2::Authorizer")
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"] for r in stack.resources("AWS::ApiGatewayV2::Route").values()
    }

    assert set(routes) == PAYMENT_ROUTES | OPERATOR_ROUTES
    for key, route in routes.items():
        assert route["AuthorizationType"] == "JWT", key
        assert route["AuthorizerId"] == {"Ref": authorizer_id}, key
        expected_scopes = ["payments/operator"] if key in OPERATOR_ROUTES else None
        assert route.get("AuthorizationScopes") == expected_scopes, key


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

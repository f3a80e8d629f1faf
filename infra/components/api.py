"""HTTP API: JWT-authorized routes onto the enqueue and status functions."""

from __future__ import annotations

import json

import jsii
from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from infra.components.common import log_group
from infra.config import EnvironmentConfig
from shared.routes import ROUTES

# What the pages send and read across origins (docs/pages.md): the bearer token, the redrive's
# Idempotency-Key, and the polling advice and throttling answers they honour.
_CORS_ALLOW_HEADERS = ["authorization", "content-type", "idempotency-key"]
_CORS_EXPOSE_HEADERS = ["retry-after", "location"]

_WEBHOOK_AUTH = NagPackSuppression(
    id="AwsSolutions-APIG4",
    reason="Razorpay and Cashfree cannot send a JWT: each webhook is authenticated by the gateway's "
    "HMAC-SHA256 over the raw body (secrets in Secrets Manager), checked first by the handler, which "
    "answers 401 and records nothing when it does not verify.",
)

_SHARED_FIGURE_AUTH = NagPackSuppression(
    id="AwsSolutions-APIG4",
    reason="The now-serving figure (jobs served, the rate) is the same for every shopper and names none; "
    "it is served through CloudFront's cache (infra/components/waiting.py), which a token in the request "
    "would defeat. Every route with anything of a shopper's needs the JWT and its scope.",
)

# HTTP API context variables; the caller is the JWT subject, the same id the handlers use.
_ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "sub": "$context.authorizer.claims.sub",
    "authorizerError": "$context.authorizer.error",
    "integrationError": "$context.integrationErrorMessage",
}


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """IAccessLogSettings is an interface, not a struct: Python must implement it."""

    def __init__(self, destination: apigwv2.IAccessLogDestination) -> None:
        self._destination = destination

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(json.dumps(_ACCESS_LOG_FIELDS))


class PaymentsApi(Construct):
    """Every route needs a valid token and its scope from `shared.routes` (payments or
    operator; the caller is the token's `sub`). A token with neither, an ID token for example,
    gets 403 from the authorizer. Stage throttling caps what reaches the functions.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        enqueue: lambda_.IFunction,
        status: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        authorizer = authorizers.HttpJwtAuthorizer(
            "JwtAuthorizer",
            config.api.jwt_issuer,
            jwt_audience=list(config.api.jwt_audience),
            identity_source=["$request.header.Authorization"],
        )
        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"payment-queue-{config.name}",
            description="Payment Queue: enqueue payments, poll their status, operate the queue",
            default_authorizer=authorizer,
            create_default_stage=False,
            cors_preflight=_cors(config),
        )
        access_logs = log_group(self, "AccessLogs", config)
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.api.throttle_rate_per_second,
                burst_limit=config.api.throttle_burst,
            ),
            access_log_settings=_AccessLogSettings(apigwv2.LogGroupLogDestination(access_logs)),
        )

        integrations_by_function = {
            "enqueue": integrations.HttpLambdaIntegration("Enqueue", enqueue),
            "status": integrations.HttpLambdaIntegration("Status", status),
        }
        for route in ROUTES:
            if route.scope is None:  # a webhook (the handler verifies the gateway's HMAC), or the shared figure
                added = self.http_api.add_routes(
                    path=route.path,
                    methods=[apigwv2.HttpMethod(route.method)],
                    integration=integrations_by_function[route.function],
                    authorizer=apigwv2.HttpNoneAuthorizer(),
                )
                why = _SHARED_FIGURE_AUTH if route.shared_cache_s else _WEBHOOK_AUTH
                for public_route in added:
                    NagSuppressions.add_resource_suppressions(public_route, [why], apply_to_children=True)
                continue
            self.http_api.add_routes(
                path=route.path,
                methods=[apigwv2.HttpMethod(route.method)],
                integration=integrations_by_function[route.function],
                authorization_scopes=[route.scope],
            )

    @property
    def url(self) -> str:
        return self.stage.url


def _cors(config: EnvironmentConfig) -> apigwv2.CorsPreflightOptions | None:
    """CORS for the configured page origins; API Gateway answers the preflight itself.

    Tokens travel in the Authorization header, never in cookies, so credentials stay off.
    """
    origins = list(config.api.cors_origins)
    if not origins:
        return None
    return apigwv2.CorsPreflightOptions(
        allow_origins=origins,
        allow_methods=[
            apigwv2.CorsHttpMethod.GET,
            apigwv2.CorsHttpMethod.POST,
            apigwv2.CorsHttpMethod.DELETE,  # leaving the line (DELETE /v1/payments/{job_id})
            apigwv2.CorsHttpMethod.OPTIONS,
        ],
        allow_headers=_CORS_ALLOW_HEADERS,
        expose_headers=_CORS_EXPOSE_HEADERS,
        allow_credentials=False,
        max_age=Duration.hours(1),
    )

"""HTTP API: JWT-authorized routes onto the enqueue and status functions."""

from __future__ import annotations

import json

import jsii
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.components.common import log_group
from infra.config import EnvironmentConfig

OPERATOR_SCOPE = "payments/operator"
_OPERATOR_ROUTES = (
    (apigwv2.HttpMethod.GET, "/v1/queue/status"),
    (apigwv2.HttpMethod.GET, "/v1/metrics"),
    (apigwv2.HttpMethod.GET, "/health/db"),
    (apigwv2.HttpMethod.POST, "/v1/dlq/redrive"),
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
    """Payment routes need any valid token (the caller is its `sub`); operator routes need the
    `payments/operator` scope as well. Stage throttling caps what reaches the functions.
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

        enqueue_integration = integrations.HttpLambdaIntegration("Enqueue", enqueue)
        status_integration = integrations.HttpLambdaIntegration("Status", status)
        self.http_api.add_routes(
            path="/v1/payments", methods=[apigwv2.HttpMethod.POST], integration=enqueue_integration
        )
        self.http_api.add_routes(
            path="/v1/payments/{job_id}", methods=[apigwv2.HttpMethod.GET], integration=status_integration
        )
        for method, path in _OPERATOR_ROUTES:
            self.http_api.add_routes(
                path=path,
                methods=[method],
                integration=status_integration,
                authorization_scopes=[OPERATOR_SCOPE],
            )

    @property
    def url(self) -> str:
        return self.stage.url

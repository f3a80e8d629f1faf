"""CloudFront in front of the one route every waiting shopper polls, GET /v1/queue/now-serving.

An HTTP API caches nothing itself (response caching is a REST API feature: "Choose between REST APIs and
HTTP APIs" in the API Gateway developer guide), so without this every poll would be a Lambda invocation
and a database read. The figure is the same for everyone; the route answers it with Cache-Control:
public, max-age=NOW_SERVING_CACHE_S, which this behaviour's cache policy honours (CloudFront takes the
origin's max-age between the policy's minimum and maximum TTL: "Managing how long content stays in the
cache"), and Origin Shield makes the edge locations share one cache in the API's region, so the route
sees about one request a second however many shoppers wait ("Using Origin Shield"). The cache key holds
nothing of the viewer: no header, cookie or query string.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from infra.components.api import PaymentsApi
from infra.config import EnvironmentConfig
from shared.routes import NOW_SERVING_PATH, ROUTES

_SUPPRESSIONS = [
    NagPackSuppression(
        id="AwsSolutions-CFR1",
        reason="The figure (jobs served, rate) is the same for every shopper and names none: nothing to "
        "restrict by country.",
    ),
    NagPackSuppression(
        id="AwsSolutions-CFR2",
        reason="Only GET and HEAD pass, and the one cached route reaches the API about once a second; the "
        "HTTP API's stage throttling still guards the API behind it.",
    ),
    NagPackSuppression(
        id="AwsSolutions-CFR3",
        reason="The requests that reach the origin are in the HTTP API's access log; the edge's own hits "
        "carry nothing of any shopper.",
    ),
    NagPackSuppression(
        id="AwsSolutions-CFR4",
        reason="The distribution's default *.cloudfront.net certificate: CloudFront then accepts TLSv1 "
        "viewers, and a minimum protocol version needs a custom domain's certificate, which an "
        "environment adds with its domain.",
    ),
]


class NowServingCdn(Construct):
    """One distribution whose only cached behaviour is each shared-cache route of `shared.routes`; the
    default behaviour caches nothing and forwards no Authorization header, so any other route through
    it is refused by the API's JWT authorizer."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, api: PaymentsApi) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        origin = origins.HttpOrigin(
            f"{api.http_api.api_id}.execute-api.{stack.region}.{stack.url_suffix}",
            protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
            origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
            origin_shield_enabled=True,
            origin_shield_region=config.region,
        )
        shared = {route.path: route.shared_cache_s for route in ROUTES if route.shared_cache_s}
        behaviours = {}
        for path, seconds in shared.items():
            policy = cloudfront.CachePolicy(
                self,
                "SharedFigure" + "".join(part.title() for part in path.replace("-", "/").split("/")),
                comment=f"{path}: the origin's max-age, at most {seconds} s; nothing of the viewer in the key",
                min_ttl=Duration.seconds(0),
                default_ttl=Duration.seconds(seconds),
                max_ttl=Duration.seconds(seconds),
                header_behavior=cloudfront.CacheHeaderBehavior.none(),
                cookie_behavior=cloudfront.CacheCookieBehavior.none(),
                query_string_behavior=cloudfront.CacheQueryStringBehavior.none(),
                enable_accept_encoding_gzip=True,
            )
            behaviours[path] = cloudfront.BehaviorOptions(
                origin=origin,
                cache_policy=policy,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
            )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"Payment Queue ({config.name}): the now-serving figure every waiting shopper polls",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origin,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
            ),
            additional_behaviors=behaviours,
            # Edge locations in India are in price class 200 (the shoppers of an ap-south-1 shop).
            price_class=cloudfront.PriceClass.PRICE_CLASS_200,
        )
        NagSuppressions.add_resource_suppressions(self.distribution, _SUPPRESSIONS, apply_to_children=True)

    @property
    def url(self) -> str:
        return f"https://{self.distribution.distribution_domain_name}"

    @property
    def now_serving_url(self) -> str:
        """The figure's route through the cache: what the API tells a waiting client to read."""
        return f"{self.url}{NOW_SERVING_PATH}"

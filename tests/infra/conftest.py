"""The three environments' stacks, synthesized once per session (`cloud_assembly`, tests/conftest.py).

cfn-lint starts in the background as soon as the templates exist, so it runs while the
assertion tests do; `test_infra_guards` collects its result.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import assertions, cx_api

from infra import config as cfg
from infra.synth import cfn_lint_command, load_cdk_context, template_paths

ENVIRONMENTS = tuple(cfg.ENVIRONMENTS)


@dataclass(frozen=True)
class Synthesized:
    """One environment's stack as the tests see it."""

    config: cfg.EnvironmentConfig
    template: assertions.Template
    json: dict[str, Any]

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.json["Resources"].items() if r["Type"] == resource_type}

    def only(self, resource_type: str, **properties: Any) -> tuple[str, dict[str, Any]]:
        """The single resource of a type whose properties include `properties`."""
        matches = [
            (k, r)
            for k, r in self.resources(resource_type).items()
            if all(r.get("Properties", {}).get(p) == v for p, v in properties.items())
        ]
        assert len(matches) == 1, f"{len(matches)} {resource_type} match {properties}"
        return matches[0]

    def function(self, name: str) -> tuple[str, dict[str, Any]]:
        return self.only("AWS::Lambda::Function", Handler=f"functions.{name}.handler.handler")

    def queue(self, name_suffix: str) -> str:
        """Logical id of the queue whose name ends with `name_suffix`."""
        return self._named("AWS::SQS::Queue", "QueueName", name_suffix)

    def topic(self, name_suffix: str) -> str:
        return self._named("AWS::SNS::Topic", "TopicName", name_suffix)

    def role_policy(self, function_name: str) -> dict[str, Any]:
        """The policy document CDK's grants built for one function's role."""
        _, function = self.function(function_name)
        role = {"Ref": function["Properties"]["Role"]["Fn::GetAtt"][0]}
        policies = [p for p in self.resources("AWS::IAM::Policy").values() if role in p["Properties"]["Roles"]]
        assert len(policies) == 1
        document: dict[str, Any] = policies[0]["Properties"]["PolicyDocument"]
        return document

    def _named(self, resource_type: str, name_property: str, suffix: str) -> str:
        matches = [
            k for k, r in self.resources(resource_type).items() if r["Properties"][name_property].endswith(suffix)
        ]
        assert len(matches) == 1, f"{len(matches)} {resource_type} named *{suffix}"
        return matches[0]


# The deployer-supplied values, set so the optional wiring (gateways, webhook) is synthesized too.
DEPLOYER_CONTEXT = {
    "pq:jwt-issuer": "https://cognito-idp.ap-south-1.amazonaws.com/ap-south-1_Example",
    "pq:jwt-audience": "web-client,mobile-client",
    "pq:alarm-email": "oncall@example.com",
    "pq:webhook-url": "https://merchant.example.com/hooks/payments",
    "pq:webhook-secret-name": "payment-queue/webhook-hmac",
    "pq:razorpay-secret-name": "payment-queue/razorpay",
    "pq:cashfree-secret-name": "payment-queue/cashfree",
    "pq:cors-origins": "https://shop.example.com,https://ops.example.com",
}


@pytest.fixture(scope="session")
def cfn_lint(cloud_assembly: cx_api.CloudAssembly) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        cfn_lint_command(template_paths(cloud_assembly)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def stacks(cloud_assembly: cx_api.CloudAssembly, cfn_lint: subprocess.Popen[str]) -> dict[str, Synthesized]:
    context = load_cdk_context() | DEPLOYER_CONTEXT
    result = {}
    for env in ENVIRONMENTS:
        config = cfg.load(context, env)
        template_json = cloud_assembly.get_stack_by_name(config.stack_name).template
        result[env] = Synthesized(config, assertions.Template.from_json(template_json), template_json)
    return result


@pytest.fixture(params=ENVIRONMENTS)
def stack(request: pytest.FixtureRequest, stacks: dict[str, Synthesized]) -> Synthesized:
    synthesized: Synthesized = stacks[request.param]
    return synthesized


@pytest.fixture
def prod(stacks: dict[str, Synthesized]) -> Synthesized:
    return stacks["prod"]


@pytest.fixture
def dev(stacks: dict[str, Synthesized]) -> Synthesized:
    return stacks["dev"]


def asset_dir(cloud_assembly: cx_api.CloudAssembly, resource: dict[str, Any]) -> Path:
    """The staged asset folder a function or layer resource points at."""
    properties = resource["Properties"]
    key: str = (properties.get("Code") or properties["Content"])["S3Key"]
    return Path(cloud_assembly.directory) / f"asset.{key.removesuffix('.zip')}"

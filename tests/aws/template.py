"""Reading the synthesized CloudFormation template the way the AWS-shaped run needs it.

Each function's environment, the queues, rules, routes and the event source mapping come from
the template itself, so a drift between the template and the code (a variable the code reads
and the template never sets, a route pointing at the wrong function) shows up in the run.
References are replaced by local endpoints through `Resolver`; one the harness does not know
is an error, never silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

Resource = dict[str, Any]


@dataclass
class Resolver:
    """Values for Ref / Fn::GetAtt of the template's resources, and the pseudo parameters."""

    region: str
    account: str
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)

    def __call__(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and len(value) == 1:
            (function, argument), *_ = value.items()
            if function == "Ref":
                return self._ref(str(argument))
            if function == "Fn::GetAtt":
                key = (str(argument[0]), str(argument[1]))
                if key not in self.attributes:
                    raise KeyError(f"the harness has no local value for Fn::GetAtt {key}")
                return self.attributes[key]
            if function == "Fn::Join":
                separator, parts = argument
                return str(separator).join(self(p) for p in parts)
        raise KeyError(f"cannot resolve {value!r}")

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name not in self.refs:
            raise KeyError(f"the harness has no local value for Ref {name}")
        return self.refs[name]


@dataclass(frozen=True)
class Template:
    json: dict[str, Any]

    @property
    def resources(self) -> dict[str, Resource]:
        resources: dict[str, Resource] = self.json["Resources"]
        return resources

    def of_type(self, resource_type: str) -> dict[str, Resource]:
        return {k: r for k, r in self.resources.items() if r["Type"] == resource_type}

    def function(self, name: str) -> tuple[str, Resource]:
        """The function whose handler is functions/<name>/handler.py."""
        handler = f"functions.{name}.handler.handler"
        matches = [
            (k, r) for k, r in self.of_type("AWS::Lambda::Function").items() if r["Properties"]["Handler"] == handler
        ]
        assert len(matches) == 1, f"{len(matches)} functions with handler {handler}"
        return matches[0]

    def environment(self, name: str, resolve: Resolver) -> dict[str, str]:
        _, function = self.function(name)
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        return {key: resolve(value) for key, value in variables.items()}

    def timeout_s(self, name: str) -> int:
        return int(self.function(name)[1]["Properties"].get("Timeout", 3))

    def queue(self, name_suffix: str) -> tuple[str, Resource]:
        matches = [
            (k, r)
            for k, r in self.of_type("AWS::SQS::Queue").items()
            if r["Properties"]["QueueName"].endswith(name_suffix)
        ]
        assert len(matches) == 1, f"{len(matches)} queues named *{name_suffix}"
        return matches[0]

    def event_source_mapping(self, function_name: str) -> Resource:
        logical_id, _ = self.function(function_name)
        matches: list[Resource] = [
            r["Properties"]
            for r in self.of_type("AWS::Lambda::EventSourceMapping").values()
            if r["Properties"]["FunctionName"] == {"Ref": logical_id}
        ]
        assert len(matches) == 1, f"{len(matches)} event source mappings for {function_name}"
        return matches[0]

    def event_rules(self, bus_logical_id: str) -> dict[str, Resource]:
        return {
            k: r
            for k, r in self.of_type("AWS::Events::Rule").items()
            if r["Properties"].get("EventBusName") == {"Ref": bus_logical_id}
        }

    def routes(self) -> dict[str, tuple[str, list[str]]]:
        """RouteKey -> (function name, the authorization scopes the route requires)."""
        functions = {
            k: r["Properties"]["Handler"].split(".")[1] for k, r in self.of_type("AWS::Lambda::Function").items()
        }
        integrations = {
            k: functions[r["Properties"]["IntegrationUri"]["Fn::GetAtt"][0]]
            for k, r in self.of_type("AWS::ApiGatewayV2::Integration").items()
        }
        routes = {}
        for route in self.of_type("AWS::ApiGatewayV2::Route").values():
            properties = route["Properties"]
            _, parts = properties["Target"]["Fn::Join"]
            integration = parts[1]["Ref"]
            routes[properties["RouteKey"]] = (
                integrations[integration],
                list(properties.get("AuthorizationScopes", [])),
            )
        return routes


def match_route(routes: dict[str, tuple[str, list[str]]], method: str, path: str) -> tuple[str, dict[str, str]]:
    """The route key API Gateway would pick for a request, and its path parameters."""
    for key in routes:
        route_method, _, pattern = key.partition(" ")
        if route_method != method:
            continue
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"
        if m := re.match(regex, path):
            return key, m.groupdict()
    raise LookupError(f"no route for {method} {path}")

"""The connection budget: every function that touches the database has a cap on executions at
once, and the caps together fit in the connections the proxy may open. Read from the
synthesized template (not the config), and the table in docs/deploy.md held to the config.
"""

from __future__ import annotations

import re

from infra import config as cfg
from infra.build_assets import REPO_ROOT
from infra.synth import load_cdk_context
from tests.infra.conftest import Synthesized

DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"


def _database_functions(stack: Synthesized) -> dict[str, dict[str, object]]:
    """Functions whose environment names the proxy, by handler name."""
    return {
        f["Properties"]["Handler"].split(".")[1]: f["Properties"]
        for f in stack.resources("AWS::Lambda::Function").values()
        if "PQ_DB_HOST" in f["Properties"].get("Environment", {}).get("Variables", {})
    }


def test_every_function_that_connects_to_the_proxy_is_in_the_budget(stack: Synthesized) -> None:
    assert set(_database_functions(stack)) == set(stack.config.database_clients())


def test_the_database_functions_reserved_concurrency_fits_the_proxys_connections(stack: Synthesized) -> None:
    # Given the proxy's share of max_connections, as deployed
    _, parameters = stack.only("AWS::RDS::DBParameterGroup")
    _, target_group = stack.only("AWS::RDS::DBProxyTargetGroup")
    max_connections = int(parameters["Properties"]["Parameters"]["max_connections"])
    percent = target_group["Properties"]["ConnectionPoolConfigurationInfo"]["MaxConnectionsPercent"]
    proxy_connections = max_connections * percent // 100

    # When every database function runs at its reserved concurrency, one connection each
    reserved = {name: p.get("ReservedConcurrentExecutions") for name, p in _database_functions(stack).items()}

    # Then each has a cap and together they fit (dev reserves nothing, so that an account whose limit
    # is under Lambda's 100 unreserved can deploy it: its budget is the account's own small limit)
    if not stack.config.reserve_concurrency:
        assert set(reserved.values()) == {None}
        return
    assert all(isinstance(v, int) and v >= 1 for v in reserved.values()), reserved
    assert sum(reserved.values()) <= proxy_connections  # type: ignore[arg-type]
    assert reserved == {n: c.reserved_concurrency for n, c in stack.config.database_clients().items()}


def _budget_table() -> dict[str, dict[str, str]]:
    """docs/deploy.md's connection-budget table: row label -> environment -> cell."""
    text = DEPLOY_DOC.read_text()
    section = text.split("### Connection budget", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    table = {}
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        table[cells[0].strip("`*")] = dict(zip(header[1:], cells[1:], strict=True))
    return table


def _number(cell: str) -> int:
    return int(re.sub(r"[^\d]", "", cell.split("(", maxsplit=1)[0]))


def test_the_budget_table_in_deploy_md_matches_the_config() -> None:
    table = _budget_table()
    context = load_cdk_context() | {
        "pq:jwt-issuer": "https://cognito-idp.ap-south-1.amazonaws.com/x",
        "pq:jwt-audience": "client-id",
    }
    for env in cfg.ENVIRONMENTS:
        config = cfg.load(context, env)
        for name, limits in config.database_clients().items():
            assert _number(table[name][env]) == limits.reserved_concurrency, (env, name)
        assert _number(table["connections needed"][env]) == config.database_connections_needed, env
        assert _number(table["proxy may open"][env]) == config.database.proxy_connection_budget, env
        assert _number(table["max_connections"][env]) == config.database.max_connections, env
        assert _number(table["borrow timeout (s)"][env]) == config.database.proxy_borrow_timeout_seconds, env

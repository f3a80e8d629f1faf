"""The per-environment config: seed thresholds, prod stricter than dev, unsafe values refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from infra import config as cfg
from infra.synth import load_cdk_context

REAL_ISSUER = "https://cognito-idp.ap-south-1.amazonaws.com/ap-south-1_Example"
REAL_AUDIENCE = "4example0client0id"


@pytest.fixture(scope="module")
def context() -> dict[str, object]:
    """cdk.json's context plus the issuer and audience a deployer must pass for staging and prod."""
    return load_cdk_context() | {"pq:jwt-issuer": REAL_ISSUER, "pq:jwt-audience": REAL_AUDIENCE}


@pytest.mark.parametrize("env", list(cfg.ENVIRONMENTS))
def test_every_environment_loads_with_the_zones_from_cdk_json(context: dict[str, object], env: str) -> None:
    config = cfg.load(context, env)

    assert config.name == env
    assert len(config.availability_zones) >= 2
    assert all(zone.startswith(config.region) for zone in config.availability_zones)


def test_alarm_thresholds_default_to_the_seeds_limits() -> None:
    thresholds = cfg.AlarmThresholds()

    assert thresholds.queue_depth == 1_000
    assert thresholds.oldest_message_age_seconds == 20 * 60
    assert thresholds.processor_error_rate_percent == 2.0
    assert thresholds.dlq_messages == 0
    assert thresholds.proxy_connections_percent == 90
    assert thresholds.throttles == 0


def test_prod_is_stricter_than_dev(context: dict[str, object]) -> None:
    dev, prod = cfg.load(context, "dev"), cfg.load(context, "prod")

    assert prod.database.multi_az and not dev.database.multi_az
    assert prod.database.deletion_protection and not dev.database.deletion_protection
    assert prod.retain_data and not dev.retain_data
    assert prod.log_retention_days > dev.log_retention_days
    assert prod.database.backup_retention_days > dev.database.backup_retention_days
    assert prod.nat_gateways == len(prod.availability_zones)
    assert prod.max_receive_count >= dev.max_receive_count


def test_visibility_timeout_is_six_processor_timeouts() -> None:
    processor = cfg.ProcessorConfig(batch_size=10, max_concurrency=5, reserved_concurrency=5, timeout_seconds=30)

    assert processor.visibility_timeout_seconds == 180


def test_max_concurrency_above_reserved_concurrency_is_refused(context: dict[str, object]) -> None:
    config = cfg.load(context, "staging")
    unsafe = replace(config, processor=replace(config.processor, max_concurrency=6, reserved_concurrency=5))

    with pytest.raises(cfg.ConfigError, match="reserved concurrency"):
        unsafe.validate()


def test_fewer_than_five_receives_before_the_dlq_is_refused(context: dict[str, object]) -> None:
    config = cfg.load(context, "dev")

    with pytest.raises(cfg.ConfigError, match="max_receive_count"):
        replace(config, max_receive_count=4).validate()


def test_fifo_batches_above_ten_are_refused(context: dict[str, object]) -> None:
    config = cfg.load(context, "dev")

    with pytest.raises(cfg.ConfigError, match="batch_size"):
        replace(config, processor=replace(config.processor, batch_size=11)).validate()


def test_context_supplies_the_deployers_jwt_issuer_and_audience(context: dict[str, object]) -> None:
    given = {**context, "pq:jwt-issuer": "https://id.example.in/", "pq:jwt-audience": "web, mobile"}

    config = cfg.load(given, "prod")

    assert config.api.jwt_issuer == "https://id.example.in/"
    assert config.api.jwt_audience == ("web", "mobile")


def test_an_unknown_environment_is_refused(context: dict[str, object]) -> None:
    with pytest.raises(cfg.ConfigError, match="unknown environment"):
        cfg.load(context, "qa")


def test_a_region_without_zones_in_cdk_json_is_refused() -> None:
    with pytest.raises(cfg.ConfigError, match="no zones"):
        cfg.load({"pq:availability-zones": {"eu-west-1": ["eu-west-1a", "eu-west-1b"]}}, "dev")


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_placeholder_issuer_is_refused_for_staging_and_prod(env: str) -> None:
    # Given cdk.json's context, which names no issuer
    context = load_cdk_context()

    # When the environment is loaded, Then synthesis stops and says what to pass
    with pytest.raises(cfg.ConfigError, match=r"placeholder https://auth\.example\.com/.*pq:jwt-issuer"):
        cfg.load(context, env)


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_placeholder_audience_is_refused_for_staging_and_prod(env: str) -> None:
    # Given a real issuer but no audience: the authorizer would answer 401 to every token of the pool
    context = load_cdk_context() | {"pq:jwt-issuer": REAL_ISSUER}

    # When the environment is loaded, Then synthesis stops and says what to pass
    with pytest.raises(cfg.ConfigError, match=r"audience is the placeholder 'payment-queue'.*pq:jwt-audience"):
        cfg.load(context, env)


def test_dev_may_keep_the_placeholder_issuer() -> None:
    assert cfg.load(load_cdk_context(), "dev").api.jwt_issuer == cfg.PLACEHOLDER_ISSUER


def test_a_connection_budget_the_proxy_cannot_hold_is_refused_with_each_functions_share(
    context: dict[str, object],
) -> None:
    # Given dev, whose proxy may open 80 of 100 connections, and an enqueue allowed 70 at once
    config = cfg.load(context, "dev")
    greedy = replace(config, api=replace(config.api, enqueue=cfg.FunctionLimits(10, 70)))

    # When it is validated, Then the error names the total, every share and the proxy's limit
    with pytest.raises(cfg.ConfigError) as refused:
        greedy.validate()
    message = str(refused.value)
    assert f"can hold {greedy.database_connections_needed} connections" in message
    assert "enqueue 70" in message and "process_payment 5" in message and "migrate 1" in message
    assert "proxy may open 80" in message


def test_every_function_that_touches_the_database_is_in_the_budget(context: dict[str, object]) -> None:
    for env in cfg.ENVIRONMENTS:
        config = cfg.load(context, env)

        assert set(config.database_clients()) == {"enqueue", "status", "process_payment", "sweeper", "migrate"}
        assert config.database_connections_needed <= config.database.proxy_connection_budget
        assert config.processor.max_concurrency <= config.database_clients()["process_payment"].reserved_concurrency


def test_dev_reserves_no_concurrency_so_any_account_can_deploy_it(context: dict[str, object]) -> None:
    # Lambda keeps 100 of an account's concurrency unreserved: an account with a limit of 100 or less
    # can reserve nothing, and staging and prod need an account that can.
    reserved = {env: cfg.load(context, env).reserved_concurrency() for env in cfg.ENVIRONMENTS}

    assert reserved["dev"] == {}
    assert sum(reserved["staging"].values()) == 84 and sum(reserved["prod"].values()) == 252


def test_a_borrow_timeout_not_well_under_a_functions_timeout_is_refused(context: dict[str, object]) -> None:
    config = cfg.load(context, "dev")
    slow = replace(config, database=replace(config.database, proxy_borrow_timeout_seconds=6))

    with pytest.raises(cfg.ConfigError, match=r"borrow timeout \(6 s\) must be at most half of enqueue's timeout"):
        slow.validate()


def test_the_first_create_turns_prods_deletion_protection_off_and_only_then(context: dict[str, object]) -> None:
    assert cfg.load(context, "prod").deletion_protection
    assert not cfg.load(context | {cfg.FIRST_CREATE_CONTEXT_KEY: "true"}, "prod").deletion_protection
    assert cfg.load(context | {cfg.FIRST_CREATE_CONTEXT_KEY: "false"}, "prod").deletion_protection


@pytest.mark.parametrize("origin", ["*", "https://shop.example.com/", "http://shop.example.com", "shop.example.com"])
def test_a_cors_origin_that_is_not_a_scheme_and_host_is_refused(context: dict[str, object], origin: str) -> None:
    with pytest.raises(cfg.ConfigError, match="CORS origin"):
        cfg.load(context | {"pq:cors-origins": origin}, "dev")


def test_cors_origins_come_from_context(context: dict[str, object]) -> None:
    config = cfg.load(context | {"pq:cors-origins": "https://shop.example.com, http://localhost:8000"}, "dev")

    assert config.api.cors_origins == ("https://shop.example.com", "http://localhost:8000")

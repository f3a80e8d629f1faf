"""The per-environment config: seed thresholds, prod stricter than dev, unsafe values refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from infra import config as cfg
from infra.synth import load_cdk_context


@pytest.fixture(scope="module")
def context() -> dict[str, object]:
    return load_cdk_context()


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
    config = cfg.load(context, "dev")
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

"""make bench, make chaos and make capacity, like make run, refuse a second run on a data directory in use:
two runs sharing one embedded server stop it under each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import bench.capacity
import bench.chaos
import bench.flash_sale
from local.lock import RunLock, one_run_at_a_time, running


def _must_not_start(*_: Any, **__: Any) -> Any:
    raise AssertionError("a second run started a server on a data directory in use")


def test_a_second_chaos_run_on_the_same_data_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a chaos run holding its data directory
    monkeypatch.setattr(bench.chaos, "CHAOS_DATA", tmp_path)
    monkeypatch.setattr(bench.chaos.ChaosServer, "embedded", _must_not_start)
    monkeypatch.setenv("SCENARIOS", "poison")
    monkeypatch.setenv("OUT", str(tmp_path / "chaos.json"))
    with RunLock(tmp_path), pytest.raises(SystemExit) as refused:
        # When a second one starts
        bench.chaos.main()

    # Then it stops before starting anything, saying who holds it
    assert f"make chaos: Payment Queue is already running on {tmp_path}" in str(refused.value)
    assert not (tmp_path / "chaos.json").exists()


def test_a_second_bench_run_on_the_same_data_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a benchmark holding its data directory
    monkeypatch.setattr(bench.flash_sale, "BENCH_DATA", tmp_path)
    monkeypatch.setattr(bench.flash_sale, "Server", _must_not_start)
    monkeypatch.setenv("OUT", str(tmp_path / "bench.json"))
    with RunLock(tmp_path), pytest.raises(SystemExit) as refused:
        # When a second one starts
        bench.flash_sale.main()

    # Then it is refused, and the first one's data is untouched
    assert "make bench: Payment Queue is already running" in str(refused.value)
    assert (tmp_path / "run.lock").exists()


def test_a_second_capacity_run_on_the_same_data_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a capacity run holding its data directory
    monkeypatch.setattr(bench.capacity, "measure", _must_not_start)
    monkeypatch.setenv("CAP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OUT", str(tmp_path / "capacity.json"))
    monkeypatch.delenv("CAP_RENDER_ONLY", raising=False)
    with RunLock(tmp_path), pytest.raises(SystemExit) as refused:
        # When a second one starts
        bench.capacity.main()

    # Then it is refused
    assert "make capacity: Payment Queue is already running" in str(refused.value)


def test_the_data_directory_is_free_again_once_a_run_ends(tmp_path: Path) -> None:
    # Given a run that ended
    with one_run_at_a_time(tmp_path, "make chaos"):
        pass

    # When the next run starts, then it takes the directory
    with one_run_at_a_time(tmp_path, "make chaos"):
        assert running(tmp_path) is not None

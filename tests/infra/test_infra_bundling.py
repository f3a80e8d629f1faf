"""The dependency layer builds without Docker: pip fetches arm64 CPython 3.12 wheels.

The test inspects the very layer `make synth` ships, built into (or found in) the content-
addressed cache under .build/lambda/, so it costs a download once per requirements change.
It needs PyPI on a cache miss (as `make test` itself does, to install the dev tools), and fails saying so
when PyPI cannot be reached; everything else in tests/infra synthesizes without it.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from infra.build_assets import BUILD_ROOT, REQUIREMENTS, build_dependencies, build_function_code, dependencies_dir

# What the layer must hold whatever else requirements-lambda.lock lists.
FALLBACK_REQUIREMENTS = "psycopg2-binary==2.9.13\n"


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
    except OSError:
        return False
    return True


@pytest.fixture
def requirements(tmp_path: Path) -> Path:
    if REQUIREMENTS.is_file():
        return REQUIREMENTS
    fallback = tmp_path / "requirements-lambda.txt"
    fallback.write_text(FALLBACK_REQUIREMENTS)
    return fallback


def _can_build(requirements: Path) -> bool:
    return dependencies_dir(requirements, BUILD_ROOT).is_dir() or _pypi_reachable()


def test_dependencies_install_as_arm64_cpython_312_wheels(requirements: Path) -> None:
    if not _can_build(requirements):
        pytest.fail("PyPI is not reachable from here and no cached layer exists (.build/lambda/)", pytrace=False)

    layer = build_dependencies(requirements, BUILD_ROOT, install=True)

    site = layer / "python"
    native = [p.name for p in site.rglob("*.so")]
    assert any(name.startswith("_psycopg.cpython-312-aarch64-linux-gnu") for name in native), native
    assert not [name for name in native if "x86_64" in name]
    assert (site / "psycopg2" / "__init__.py").is_file()
    if (site / "botocore").is_dir():
        assert (site / "boto3").is_dir(), "botocore without a matching boto3 would shadow the runtime's"


def test_an_unchanged_function_is_not_rebuilt(tmp_path: Path) -> None:
    first = build_function_code("enqueue", tmp_path)
    second = build_function_code("enqueue", tmp_path)

    assert first == second
    assert first.name.startswith("code-enqueue-")

"""What a newcomer and a packager rely on: the license, the metadata, and locks that match their inputs."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Each lock and the input files `make lock` compiles it from.
LOCKS = {
    "requirements-dev.lock": ("requirements-dev.txt", "infra/requirements.txt"),
    "requirements.lock": ("requirements.txt",),
    "requirements-lambda.lock": ("infra/layer-requirements.in",),
}
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;\\]+)")


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` in a requirements file and the files it includes."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line.startswith("-r "):
            pins |= _pins((path.parent / line[3:].strip()).resolve())
        elif match := PIN.match(line):
            pins[_name(match.group(1))] = match.group(2)
    return pins


def _locked(lock: Path) -> dict[str, list[str]]:
    """name -> the versions a lock pins (one per environment marker), every one with hashes."""
    text = lock.read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    locked: dict[str, list[str]] = {}
    for entry in entries:
        if match := PIN.match(entry):
            assert "--hash=sha256:" in entry, f"{lock.name}: {match.group(1)} has no hash"
            locked.setdefault(_name(match.group(1)), []).append(match.group(2))
    return locked


def test_the_project_is_apache_2_licensed_and_says_so() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert project["authors"] == [{"name": "Payment Queue developers"}] and project["readme"] == "README.md"


def test_pyproject_dependencies_are_the_pins_of_requirements_txt() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(m.group(1)): m.group(2) for d in project["dependencies"] if (m := PIN.match(d))}
    assert len(declared) == len(project["dependencies"])
    assert declared == _pins(ROOT / "requirements.txt")


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_lock_pins_its_inputs_versions_with_hashes(lock: str) -> None:
    # Given a lock and the inputs it was compiled from
    locked = _locked(ROOT / lock)
    # Then every package an input pins is in the lock at that version (a stale lock, after an
    # input changed without `make lock`, fails here), and every locked package carries hashes
    for source in LOCKS[lock]:
        for name, version in _pins(ROOT / source).items():
            assert version in locked.get(name, []), f"{lock} lacks {name}=={version} from {source}: run make lock"


def test_one_package_has_one_version_across_the_locks_for_one_python() -> None:
    dev = _locked(ROOT / "requirements-dev.lock")
    for lock in ("requirements.lock", "requirements-lambda.lock"):
        for name, versions in _locked(ROOT / lock).items():
            assert set(versions) <= set(dev.get(name, [])), (lock, name, versions, dev.get(name))


def test_make_help_names_every_target() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):(?!=)", makefile, re.M)) - {"help"}
    shown = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    listed = {line.split()[1] for line in shown.splitlines() if line.startswith("make ")}
    assert targets and targets == listed, (targets - listed, listed - targets)

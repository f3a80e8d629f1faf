"""Every setting the docs name exists in the code: an environment variable, a make variable or knob, a
settings field. A doc that names a setting the code no longer reads sends its reader after nothing."""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

import infra.config
from local.config import LocalSettings
from local.gateway_sim import SimConfig
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONSTANT = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"  # NAME_LIKE_THIS: an environment variable, a knob, a constant


@cache
def code() -> str:
    """Every tracked file but the docs (and this test, which names settings it looks for)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    texts = []
    for name in tracked.split():
        path = ROOT / name
        if path.suffix in {".md", ".gz", ".png"} or path == Path(__file__) or not path.is_file():
            continue
        texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


@cache
def settings_env() -> frozenset[str]:
    """The environment variables the settings models read: PQ_<field> and their aliases (DATABASE_URL)."""
    names = set()
    for model in (Settings, LocalSettings):
        for field_name, info in model.model_fields.items():
            names.add(f"PQ_{field_name.upper()}")
            if isinstance(info.validation_alias, str):
                names.add(info.validation_alias)
    # The simulator's knobs, PQ_SIM_<KNOB> (local/gateway_sim.py main).
    names |= {f"PQ_SIM_{f.name.upper()}" for f in dataclasses.fields(SimConfig)}
    return frozenset(names)


def read_by_code(name: str) -> bool:
    """The name as code reads it from the environment: quoted, or a shell/make reference."""
    quoted = re.search(rf"""["']{name}["']""", code())
    referenced = re.search(rf"\$\{{?{name}\b|\$\({name}\)", code())
    return bool(quoted or referenced)


def doc_lines() -> list[tuple[str, int, str]]:
    return [(p.name, i, line) for p in DOCS for i, line in enumerate(p.read_text().splitlines(), 1)]


def environment_variables() -> list[tuple[str, str]]:
    """PQ_* names anywhere in the docs, with where they are."""
    return [
        (m.group(0), f"{doc}:{i}")
        for doc, i, line in doc_lines()
        for m in re.finditer(r"\bPQ_[A-Z0-9_]*[A-Z0-9]\b", line)
    ]


def make_variables() -> list[tuple[str, str]]:
    """Variables given to make: `make bench USERS=200`, `make orders [USER=<id>]`, `DATABASE_URL=... make run`."""
    found = []
    for doc, i, line in doc_lines():
        for args in re.finditer(r"\bmake\s+(?:-\S+\s+)*[a-z][a-z-]*((?:\s+\[?[A-Z][A-Z0-9_]*=\S*)+)", line):
            found += [(v, f"{doc}:{i}") for v in re.findall(r"([A-Z][A-Z0-9_]*)=", args.group(1))]
        for prefix in re.finditer(r"((?:\b[A-Z][A-Z0-9_]*=(?!\$\()(?:'[^']*'|\"[^\"]*\"|\S*)\s+)+)make\b", line):
            found += [(v, f"{doc}:{i}") for v in re.findall(r"([A-Z][A-Z0-9_]*)=", prefix.group(1))]
    return found


def table_names(header: str) -> list[tuple[str, str]]:
    """The backticked names in the first column of every table whose first heading is `header`."""
    found = []
    for path in DOCS:
        rows: list[str] | None = None
        for i, line in enumerate(path.read_text().splitlines(), 1):
            cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
            if not cells:
                rows = None
            elif cells[0] == header:
                rows = []
            elif rows is not None and not set(cells[0]) <= set("-: "):
                # What the cell says in parentheses is about the setting, not another one.
                named = re.sub(r"\([^)]*\)", "", cells[0])
                found += [(n, f"{path.name}:{i}") for n in re.findall(r"`([^`]+)`", named)]
    return found


def cited_settings() -> list[tuple[str, str, str]]:
    """Names given in parentheses after a settings file: `shared/settings.py` (`poll_min_ms`, ...)."""
    found = []
    for doc, i, line in doc_lines():
        for m in re.finditer(r"`((?:shared/settings|local/config|infra/config)\.py)`\s*\(([^)]*)\)", line):
            found += [(m.group(1), n, f"{doc}:{i}") for n in re.findall(r"`([a-z_*][a-z0-9_*]*)`", m.group(2))]
    return found


def fields_of(source: str) -> set[str]:
    if source == "shared/settings.py":
        return set(Settings.model_fields)
    if source == "local/config.py":
        return set(LocalSettings.model_fields)
    models = [c for c in vars(infra.config).values() if isinstance(c, type) and dataclasses.is_dataclass(c)]
    return {f.name for model in models for f in dataclasses.fields(model)}


def test_the_docs_name_settings_at_all() -> None:
    # The scans below find what they check: were a pattern to stop matching, every test would pass empty.
    assert len(environment_variables()) > 50
    assert {"USERS", "CAP_SECONDS", "SCENARIOS", "DATABASE_URL"} <= {v for v, _ in make_variables()}
    assert len(table_names("knob")) > 20 and len(table_names("variable")) > 30
    assert ("infra/config.py", "throttle_rate_per_second") in {(s, n) for s, n, _ in cited_settings()}


def test_every_environment_variable_the_docs_name_is_read_by_the_code() -> None:
    missing = sorted(
        {
            (name, where)
            for name, where in environment_variables()
            if name not in settings_env() and not read_by_code(name)
        }
    )
    assert missing == []


def test_every_make_variable_the_docs_pass_is_used_by_the_makefile_or_the_code() -> None:
    makefile = (ROOT / "Makefile").read_text()
    missing = sorted(
        {
            (name, where)
            for name, where in make_variables()
            if name not in settings_env() and not (re.search(rf"\b{name}\b", makefile) and read_by_code(name))
        }
    )
    assert missing == []


@pytest.mark.parametrize("header", ["knob", "variable"])
def test_every_knob_and_variable_in_the_docs_tables_exists(header: str) -> None:
    # Upper case: an environment variable or a make knob the code reads. Lower case: the simulator's knobs
    # (README, "Knobs, set through PQ_SIM_<KNOB>"): fields of its config.
    knobs = {f.name for f in dataclasses.fields(SimConfig)}
    missing = sorted(
        (name, where)
        for name, where in table_names(header)
        if not (
            (re.fullmatch(r"[A-Z][A-Z0-9_]*", name) and (name in settings_env() or read_by_code(name))) or name in knobs
        )
    )
    assert missing == []


def test_every_constant_named_in_the_docs_exists_in_the_code() -> None:
    missing = sorted(
        {
            (m.group(1), f"{doc}:{i}")
            for doc, i, line in doc_lines()
            for m in re.finditer(rf"`({CONSTANT})`", line)
            if m.group(1) not in settings_env()
            and not re.search(rf"(?<![A-Za-z0-9_]){m.group(1)}(?![A-Za-z0-9_])", code())
        }
    )
    assert missing == []


def test_every_setting_cited_from_a_settings_file_is_a_field_of_it() -> None:
    missing = [
        (name, source, where)
        for source, name, where in cited_settings()
        if not any(fnmatch.fnmatchcase(field, name) for field in fields_of(source))
    ]
    assert missing == []

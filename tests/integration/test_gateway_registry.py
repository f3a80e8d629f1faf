"""The gateways are named in one place (shared/gateways/__init__.py): the registry, the request models'
Literals and the schema's method CHECKs hold the same names, and the services and functions none."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

from shared.bootstrap import App
from shared.gateways import GATEWAY_NAMES, GatewayName, PaymentMethod
from shared.gateways.registry import GATEWAYS

ROOT = Path(__file__).resolve().parents[2]


def test_the_registry_and_the_literal_types_name_the_same_gateways() -> None:
    assert tuple(GATEWAYS) == GATEWAY_NAMES == get_args(GatewayName)
    assert get_args(PaymentMethod) == ("wallet", *GATEWAY_NAMES)
    assert all(package.name == name for name, package in GATEWAYS.items())


def test_every_method_check_of_the_schema_lists_exactly_the_registered_gateways(app: App) -> None:
    checks = app.db.fetch_all(
        """SELECT conrelid::regclass::text AS tbl, pg_get_constraintdef(oid) AS def FROM pg_constraint
            WHERE contype = 'c' AND pg_get_constraintdef(oid) ~ '''(razorpay|cashfree)''::text' ORDER BY 1"""
    )
    assert [c["tbl"] for c in checks] == ["gateway_attempts", "gateway_checkouts", "gateway_webhook_events"]
    for check in checks:
        assert tuple(re.findall(r"'([a-z_]+)'::text", check["def"])) == GATEWAY_NAMES


def _named_in_code(path: Path) -> list[str]:
    """Identifiers and string values naming a gateway, docstrings left out (comments never reach the AST)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        words = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.append(node.value)
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, ast.alias):
            words.append(node.name)
        found += [f"{path.relative_to(ROOT)}:{node.lineno}" for w in words if re.search("razorpay|cashfree", w, re.I)]  # type: ignore[attr-defined]
    return found


def test_no_service_or_function_names_a_gateway_outside_comments_and_docstrings() -> None:
    sources = [*(ROOT / "shared" / "services").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]
    assert sources
    assert [place for path in sources for place in _named_in_code(path)] == []

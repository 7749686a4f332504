"""The hub's surface holds: spokes import no private name of `providers` and do not reach
into a result's insides. (The import contracts themselves are import-linter's, in
pyproject.toml, run by scripts/test.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPOKES = ("playground", "dashboards", "gateway", "alerts", "batches", "rana_site")
INSIDES = {"prepared", "ledger", "_engine_stream", "_recorder", "plan"}  # a result's or service's internals


def _modules() -> list[Path]:
    return [p for spoke in SPOKES for p in (ROOT / spoke).rglob("*.py") if "migrations" not in p.parts]


def _private_imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("providers"):
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    return found


def _reaches_inside(tree: ast.AST) -> list[str]:
    """`x.prepared...`, `x.ledger...`: attribute chains through a hub object's insides."""
    return [
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in INSIDES and isinstance(node.value, ast.Name)
    ]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_spokes_use_only_public_names_of_the_hub(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    assert _private_imports(tree) == []
    assert _reaches_inside(tree) == []


def test_the_checks_catch_what_they_forbid():
    tree = ast.parse("from providers.services.budget import _period_start\nx = completion.prepared.ledger\n")
    assert _private_imports(tree) == ["providers.services.budget._period_start"]
    assert _reaches_inside(tree) == ["line 2: .prepared"]

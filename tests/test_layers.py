"""Layers: which of our packages each runtime package may import (read from the source with ast, not by running it)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"fedcore", "ledger", "node", "aggregator", "fedledger", "fedsets", "bench"}
# package -> our packages it may import (besides itself). bench is run from the repo root, never installed.
ALLOWED = {
    "fedcore": set(),
    "ledger": {"fedcore"},
    "node": {"fedcore", "ledger"},
    "aggregator": {"fedcore", "ledger"},
    "fedsets": {"fedcore"},
    "fedledger": {"fedcore", "ledger", "node", "aggregator", "fedsets"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every import in a module, wherever it sits (lazy imports in functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ALLOWED)
def test_runtime_packages_import_only_the_layers_below(package):
    sources = sorted((ROOT / package).rglob("*.py"))
    assert sources, f"no sources under {package}/"
    breaches = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources
        for name in imported_packages(path) & OURS - ALLOWED[package] - {package}
    }
    assert not breaches


def test_the_walker_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from bench.heart import ROUNDS\n    import node.site\n")
    assert imported_packages(module) == {"bench", "node"}


def test_bench_is_not_an_installed_package():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not [name for name in include if name.split(".")[0] == "bench"]
    assert {"fedsets", "fedsets.*"} <= set(include)

"""The import contracts of pyproject.toml ([tool.importlinter]) hold: no import cycle anywhere, the proxy's layers,
pilot's layers, the compilers importing only the leaves of validation, isthmus/, services/ and proxy/
apart. `lint-imports` (import-linter) checks them; these tests run it, and show it fails on a cycle and
on a broken layer, so a green run means something."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
ACYCLIC = ("proto", "runtime", "services", "isthmus", "proxy")


def lint_imports(cwd: Path, *config: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", *config], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_every_import_contract_of_pyproject_is_kept() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout, result.stdout


def test_no_module_is_on_an_import_cycle() -> None:
    """Every cycle, also one between a package's __init__ and its own modules (which import-linter's
    acyclic_siblings does not see), and through imports in functions or under TYPE_CHECKING."""
    graph = grimp.build_graph(*ACYCLIC, cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                cycles.append(" -> ".join((module, *chain)))
    assert not cycles, "\n".join(cycles)


def test_lint_imports_fails_on_a_cycle_and_on_a_broken_layer(tmp_path: Path) -> None:
    package = tmp_path / "shop"
    package.mkdir()
    sources = {
        "__init__.py": "",
        "low.py": "from shop import high\n",  # the lower layer imports the higher one
        "high.py": "from shop import low\n",
        "a.py": "def f():\n    from shop import b\n",  # a cycle hidden in a function
        "b.py": "from shop import a\n",
    }
    for name, text in sources.items():
        (package / name).write_text(text)
    (tmp_path / "contracts.toml").write_text(textwrap.dedent("""
        [tool.importlinter]
        root_packages = ["shop"]

        [[tool.importlinter.contracts]]
        name = "layers"
        type = "layers"
        containers = ["shop"]
        layers = ["high", "low"]

        [[tool.importlinter.contracts]]
        name = "acyclic"
        type = "acyclic_siblings"
        ancestors = ["shop"]
        """))
    result = lint_imports(tmp_path, "contracts.toml")
    assert result.returncode != 0
    assert "Contracts: 0 kept, 2 broken." in result.stdout, result.stdout
    assert "shop.low -> shop.high" in result.stdout, result.stdout

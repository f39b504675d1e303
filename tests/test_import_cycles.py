"""No import cycle among the modules of ``src/mdactors`` (``TYPE_CHECKING`` imports included).

A cycle is a design smell here: the layers are ``domain → engine → api → app``,
and within ``api/`` one protocol may build on another (Binance streams on the
WebSocket sessions) but never both ways. Type-only needs are met with a
``Protocol`` on the side that is used, not an import back.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import mdactors

SRC = Path(mdactors.__file__).parent


def module_paths(package_dir: Path) -> dict[str, Path]:
    """Every module under ``package_dir`` by dotted name (generated ``_proto`` left out)."""
    root = package_dir.parent
    found = {}
    for path in package_dir.rglob("*.py"):
        if "_proto" in path.relative_to(package_dir).parts:
            continue
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``name`` imports (``from package import module``
    counts as both, as Python runs the package's ``__init__`` first)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                parts = parts[: len(parts) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_cycle(package_dir: Path) -> list[str] | None:
    """One import cycle among the package's modules, or ``None`` when there is none."""
    modules = module_paths(package_dir)
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        return list(error.args[1])
    return None


def test_src_mdactors_has_no_import_cycle() -> None:
    assert import_cycle(SRC) is None


def test_a_cycle_through_a_type_checking_import_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..c import C\n"
    )
    (package / "c.py").write_text("import pkg.a\nclass C: ...\n")
    cycle = import_cycle(package)
    assert cycle is not None
    assert set(cycle) == {"pkg.a", "pkg.sub.b", "pkg.c"}


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in conftest: a test module never imports from another one."""
    tests = Path(__file__).parent
    offenders = []
    for path in sorted(tests.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                last = node.module.rpartition(".")[2]
                if last.startswith("test_") and (node.level or node.module.startswith("tests.")):
                    offenders.append(f"{path.name}: from {'.' * node.level}{node.module}")
    assert offenders == []

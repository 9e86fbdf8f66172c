"""The import graph points one way: console → messaging → reliability → hotelbot (DESIGN.md, Layout).

Read with ``ast`` (nothing is imported, so a lazy import inside a function counts too): the domain
and the toolkit never import the staff console, the toolkit never imports the domain, and the fakes
import neither app."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: package → top-level packages it must never import.
FORBIDDEN = {
    "reliability": ("console", "messaging"),
    "messaging": ("console",),
    "fakes": ("console", "messaging", "reliability"),
    "hotelbot": ("console", "messaging", "reliability"),
}
#: Where the floors are put together: the root URLconf mounts every app's URLs.
COMPOSITION_ROOTS = {"hotelbot/urls.py"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def upward_imports(package: str) -> list[str]:
    forbidden = FORBIDDEN[package]
    offences = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in path.parts or str(path.relative_to(ROOT)) in COMPOSITION_ROOTS:
            continue
        for line, module in imported_modules(path):
            if module.split(".")[0] in forbidden:
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return offences


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_import(package: str) -> None:
    assert upward_imports(package) == []


def test_the_walker_sees_absolute_relative_and_lazy_imports(tmp_path: Path, monkeypatch) -> None:
    """The check itself: a planted upward import of each form is found."""
    fake_root = tmp_path
    (fake_root / "reliability" / "sub").mkdir(parents=True)
    (fake_root / "reliability" / "__init__.py").write_text("")
    (fake_root / "reliability" / "sub" / "__init__.py").write_text("")
    (fake_root / "reliability" / "sub" / "mod.py").write_text(
        "import console.site\nfrom .. import x\n\ndef f():\n    from messaging import selectors\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", fake_root)
    assert upward_imports("reliability") == [
        "reliability/sub/mod.py:1 imports console.site",
        "reliability/sub/mod.py:5 imports messaging",
    ]


# --- no import cycle ------------------------------------------------------------------------------
#: Packages whose module-level imports must form no cycle.
LAYERED = ("console", "messaging", "reliability", "hotelbot", "fakes")


def module_level_imports(path: Path) -> list[str]:
    """Absolute names imported when ``path`` is imported: statements at module level, outside
    ``if TYPE_CHECKING:`` (an import inside a function runs later and cannot close a cycle at import
    time; those still count for the direction checks above)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[str] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - (node.level - 1)] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                found.append(module)
                found.extend(f"{module}.{alias.name}" for alias in node.names)  # from pkg import submodule
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + node.orelse + node.finalbody)

    visit(tree.body)
    return found


def import_cycles() -> list[list[str]]:
    """Strongly connected components (more than one module) of the module-level import graph."""
    modules = {
        _module_name(path): path
        for package in LAYERED
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    }

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {known(m) for m in module_level_imports(path)}
        # A module importing its own package's __init__ (``from . import x``) is Python's normal shape.
        graph[name] = {t for t in targets if t and t != name and not name.startswith(f"{t}.")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def test_no_import_cycle() -> None:
    assert import_cycles() == []


def test_the_cycle_check_finds_a_planted_cycle(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "reliability").mkdir()
    (tmp_path / "reliability" / "__init__.py").write_text("")
    (tmp_path / "reliability" / "a.py").write_text("from reliability import b\n")
    (tmp_path / "reliability" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nimport reliability.a\n"
        "if TYPE_CHECKING:\n    import reliability.c\n"
    )
    (tmp_path / "reliability" / "c.py").write_text("import reliability.b\n")  # only a typing-time arrow back
    (tmp_path / "reliability" / "d.py").write_text("def f():\n    import reliability.a\n")  # lazy: no cycle
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert import_cycles() == [["reliability.a", "reliability.b"]]

"""The import graph points one way: console → messaging → reliability (DESIGN.md, Layout).

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
}


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
        if "migrations" in path.parts:
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

"""The tests mirror the code (DESIGN.md, Layout): ``tests/<package>/<subpackage>/test_<module>.py``.

Every folder under tests/ is a folder of the project (``tests/reliability/breaker/stores`` for
``reliability/breaker/stores``), except ``tests/e2e`` (whole stacks, across every package), and is a
package (``from tests.x import y``; two test files of one name in two folders do not collide).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
CROSS_CUTTING = {"e2e"}


def _folders() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*") if p.is_dir() and not p.name.startswith((".", "__")))


def test_every_test_folder_mirrors_a_folder_of_the_code():
    strays = [
        str(folder.relative_to(ROOT))
        for folder in _folders()
        if folder.relative_to(TESTS).parts[0] not in CROSS_CUTTING
        and not (ROOT / folder.relative_to(TESTS)).is_dir()
    ]
    assert not strays, f"test folders with no code folder of the same path: {strays}"


def test_every_test_folder_is_a_package():
    assert (TESTS / "__init__.py").exists()
    missing = [str(f.relative_to(ROOT)) for f in _folders() if not (f / "__init__.py").exists()]
    assert not missing, f"test folders without __init__.py: {missing}"

"""libs/common is what every service shares: it imports no service (a service's vocabulary
belongs in that service) and nothing from tools/ (dev-only code, which the image does not ship)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("services", "tools")


def imported_modules(path: Path) -> Iterator[str]:
    """Every module `path` imports, anywhere in it (functions and TYPE_CHECKING blocks too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_libs_common_imports_no_service_and_nothing_dev_only() -> None:
    found = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / "libs" / "common").rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN
    ]
    assert found == []


def test_the_walk_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from services.invoice import pricing\n    import tools.devservers\n")
    assert list(imported_modules(module)) == ["services.invoice", "tools.devservers"]

"""libs/common is what every service shares: it imports no service (a service's vocabulary
belongs in that service). Nothing the image ships imports tools/ (dev-only code, not shipped)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What the Dockerfile copies into the image (and pyproject.toml packages), besides protos/.
SHIPPED = ("libs", "services", "checkout_admin", "clients")


def imported_modules(path: Path) -> Iterator[str]:
    """Every module `path` imports, anywhere in it (functions and TYPE_CHECKING blocks too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def imports_of(directories: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {module}"
        for directory in directories
        for path in sorted((ROOT / directory).rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] in forbidden
    ]


def test_libs_common_imports_no_service() -> None:
    assert imports_of(("libs/common",), ("services", "tools")) == []


def test_nothing_the_image_ships_imports_dev_only_tools() -> None:
    assert imports_of(SHIPPED, ("tools",)) == []


def test_the_walk_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from services.invoice import pricing\n    import tools.devservers\n")
    assert list(imported_modules(module)) == ["services.invoice", "tools.devservers"]

"""libs/common is what every service shares: it imports no service (a service's vocabulary
belongs in that service). Nothing the image ships imports tools/ (dev-only code, not shipped). A
service's application.py speaks plain values: no generated protobuf module in it. No hand-written
module is over 450 lines: past that it holds more than one concept."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What the Dockerfile copies into the image (and pyproject.toml packages), besides protos/.
SHIPPED = ("libs", "services", "checkout_admin", "clients")
# Every directory of hand-written Python (protos/ holds the generated code).
HAND_WRITTEN = (*SHIPPED, "tools", "tests")
MODULE_LINES_MAX = 450


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


def protobuf_imports(path: Path) -> list[str]:
    """The generated `*_pb2` (and `*_pb2_grpc`) modules `path` imports, however it names them."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return [name for name in found if "_pb2" in name.rsplit(".", 1)[-1]]


def test_an_application_speaks_plain_values_and_imports_no_protobuf() -> None:
    """grpc_api.py is the one place a service maps its requests and answers to protobuf."""
    applications = sorted((ROOT / "services").rglob("application.py"))
    assert len(applications) >= 6  # the walk finds them: invoice, merchant (3), customer, analytics
    assert [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in applications
        for module in protobuf_imports(path)
    ] == []


def test_the_protobuf_check_sees_each_way_of_importing_generated_code(tmp_path: Path) -> None:
    module = tmp_path / "application.py"
    module.write_text(
        "from checkout.merchant.v1 import merchant_pb2 as pb\n"
        "import checkout.invoice.v1.invoice_pb2\n"
        "from checkout.customer.v1.customer_pb2 import Customer\n"
        "from services.invoice import views\n"
    )
    assert protobuf_imports(module) == [
        "checkout.merchant.v1.merchant_pb2",
        "checkout.invoice.v1.invoice_pb2",
        "checkout.customer.v1.customer_pb2",
    ]


def long_modules(root: Path, directories: tuple[str, ...], most: int) -> list[str]:
    """`path: n lines` for each hand-written module over `most` lines (generated *_pb2* skipped)."""
    return [
        f"{path.relative_to(root)}: {lines} lines"
        for directory in directories
        for path in sorted((root / directory).rglob("*.py"))
        if "_pb2" not in path.name and (lines := len(path.read_text().splitlines())) > most
    ]


def test_no_hand_written_module_is_over_450_lines() -> None:
    assert long_modules(ROOT, HAND_WRITTEN, MODULE_LINES_MAX) == []


def test_the_length_check_counts_lines_and_passes_over_generated_code(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "long.py").write_text("x = 1\n" * 4)
    (tmp_path / "pkg" / "short.py").write_text("x = 1\n" * 3)
    (tmp_path / "pkg" / "long_pb2.py").write_text("x = 1\n" * 4)
    (tmp_path / "pkg" / "long_pb2_grpc.py").write_text("x = 1\n" * 4)
    assert long_modules(tmp_path, ("pkg",), 3) == ["pkg/sub/long.py: 4 lines"]

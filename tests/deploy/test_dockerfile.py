"""The Dockerfile and .dockerignore, read as text (no Docker engine here)."""

from __future__ import annotations

import re

from tests.deploy.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
INSTRUCTIONS = [line for line in DOCKERFILE.splitlines() if line and not line.startswith((" ", "#"))]


def stage(name: str) -> list[str]:
    start = next(i for i, line in enumerate(INSTRUCTIONS) if line.endswith(f" AS {name}"))
    end = next((i for i in range(start + 1, len(INSTRUCTIONS)) if INSTRUCTIONS[i].startswith("FROM ")), None)
    return INSTRUCTIONS[start:end]


def test_every_stage_starts_from_slim_python_3_11() -> None:
    bases = re.findall(r"^FROM (\S+) AS", DOCKERFILE, re.MULTILINE)
    external = [b for b in bases if b not in re.findall(r" AS (\S+)$", DOCKERFILE, re.MULTILINE)]
    assert external and all(b.startswith("python:3.11-slim") for b in external)


def test_dependencies_install_from_the_runtime_lock_alone_before_any_source_is_copied() -> None:
    deps = stage("deps")
    copies = [line for line in deps if line.startswith("COPY ")]
    assert copies == ["COPY requirements.lock /tmp/requirements.lock"]
    assert "RUN pip install --require-hashes --no-deps -r /tmp/requirements.lock" in deps
    assert "requirements-dev.lock" not in DOCKERFILE and ".[dev]" not in DOCKERFILE


def test_the_code_is_installed_as_a_package_and_the_runtime_copies_only_the_venv() -> None:
    build = stage("build")
    for directory in ("libs", "services", "protos", "checkout_admin", "clients"):
        assert f"COPY {directory}/ {directory}/" in build
    assert build[-1] == "RUN pip install --no-deps --no-build-isolation ."
    app = stage("app")
    assert [line for line in app if line.startswith("COPY ")] == ["COPY --from=build /opt/venv /opt/venv"]
    assert "PYTHONPATH" not in DOCKERFILE
    assert app[-1] == 'CMD ["checkout-gateway"]'


def test_the_production_image_is_the_last_stage_and_runs_as_a_numeric_non_root_user() -> None:
    assert INSTRUCTIONS[-1] == "FROM app AS runtime"
    users = [line.split()[1] for line in stage("app") if line.startswith("USER ")]
    assert users[-1] == "10001:10001"
    assert [line.split()[1] for line in stage("dev") if line.startswith("USER ")][-1] == "10001:10001"


def test_the_build_context_is_narrowed_to_what_the_image_copies() -> None:
    patterns = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    assert {p[1:] for p in patterns if p.startswith("!")} == {
        "requirements.lock",
        "pyproject.toml",
        "libs",
        "services",
        "protos",
        "checkout_admin",
        "clients",
    }

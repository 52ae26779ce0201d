"""The project as a package: `pip install .` gives importable code and working console scripts,
and the lock files pin (with hashes) every requirement pyproject.toml names."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+)", re.MULTILINE
)


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    found: dict[str, str] = {canonicalize_name(m[1]): m[2] for m in PIN.finditer(text)}
    # Every requirement line is a pin with at least one hash (pip's --require-hashes needs it).
    requirements = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(requirements) == len(found), [r for r in requirements if not PIN.match(r + " \\\n    --hash")]
    return found


@pytest.mark.parametrize(
    ("lock", "groups"),
    [("requirements.lock", ["dependencies"]), ("requirements-dev.lock", ["dependencies", "dev"])],
)
def test_each_lock_pins_every_requirement_at_a_version_it_allows(lock: str, groups: list[str]) -> None:
    pinned = pins(lock)
    names = list(PYPROJECT["build-system"]["requires"])  # --no-build-isolation needs setuptools
    for group in groups:
        names += (
            PYPROJECT["project"][group]
            if group == "dependencies"
            else PYPROJECT["project"]["optional-dependencies"][group]
        )
    for line in names:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} has no {name}: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, pyproject.toml asks for {requirement}: run `make lock`"
        )


def test_the_image_lock_holds_no_dev_tool() -> None:
    tools = {"pytest", "mypy", "ruff", "grpcio-tools", "uv", "playwright", "schemathesis", "pgserver"}
    assert not tools & set(pins("requirements.lock"))
    assert tools <= set(pins("requirements-dev.lock"))


def test_pip_install_of_the_image_sources_gives_working_console_scripts(tmp_path: Path) -> None:
    # What the image builds from (.dockerignore's list), copied so the build writes nothing here.
    source = tmp_path / "src"
    included = [
        line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")
    ]
    for name in included:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    # A fresh venv with no pip and no code of ours; the dependencies (already installed here from
    # the lock) are borrowed through a path entry, so only the project itself is installed.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    fresh_python = venv / "bin" / "python"
    site = subprocess.run(
        [fresh_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(fresh_python), "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--no-index", str(source)],
        check=True, env=env, cwd=tmp_path,
    )  # fmt: skip

    def run(*args: str) -> str:
        done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "Usage: checkout-admin" in run(str(venv / "bin" / "checkout-admin"), "--help")
    assert "projections" in run(str(venv / "bin" / "checkout-admin"), "--help")
    assert "migrate" in run(str(venv / "bin" / "checkout-service"), "invoice", "--help")
    # The code, the generated protos and the migrations come from the installed package.
    where = run(
        str(fresh_python),
        "-c",
        "import libs.common.db as d, checkout.invoice.v1.invoice_pb2 as p, services.gateway.__main__ as g,"
        " checkout_client as c; print(d.__file__, p.__file__, g.__file__, c.__file__);"
        " print(len(list(d.COMMON_MIGRATIONS.glob('*.sql'))))",
    ).split()
    assert all(path.startswith(site) for path in where[:4]), where
    assert int(where[4]) == len(list((ROOT / "libs/common/migrations").glob("*.sql")))
    assert Path(site, "services/gateway/pages/templates/pay.html").is_file()
    # The Alembic environment and every service's revisions, for `checkout-service <name> migrate`.
    assert Path(site, "libs/common/alembic/env.py").is_file()
    assert Path(site, "libs/common/alembic/script.py.mako").is_file()
    assert Path(site, "services/invoice/migrations/versions/0001_baseline.py").is_file()

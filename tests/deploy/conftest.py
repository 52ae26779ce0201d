"""Rendered manifests and the recorded Tiltfile run, computed once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.kustomize import Manifest, render
from tests.deploy.tilt import TiltRun, run_tiltfile

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
LAYOUTS = {"base": K8S / "base", "dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    return {name: render(path) for name, path in LAYOUTS.items()}


@pytest.fixture(scope="session")
def tilt() -> TiltRun:
    return run_tiltfile(ROOT)

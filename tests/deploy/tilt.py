"""Runs the Tiltfile under Starlark (starlark-pyo3) with Python stand-ins for the Tilt built-ins
it calls, recording each call, so tests can check what it builds, deploys and waits for without
Tilt, Docker or a cluster. `kustomize()` renders with tests/deploy/kustomize.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import starlark
import yaml

from tests.deploy.kustomize import Manifest, render


@dataclass
class Call:
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def arg(self, position: int, name: str, default: Any = None) -> Any:
        if len(self.args) > position:
            return self.args[position]
        return self.kwargs.get(name, default)


@dataclass
class TiltRun:
    calls: dict[str, list[Call]] = field(default_factory=dict)
    manifests: list[Manifest] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # every local path passed to a built-in

    def __getitem__(self, builtin: str) -> list[Call]:
        return self.calls.get(builtin, [])


def run_tiltfile(root: Path) -> TiltRun:
    run = TiltRun()

    def record(name: str, result: Callable[[Call], Any] = lambda call: None) -> Callable[..., Any]:
        def builtin(*args: Any, **kwargs: Any) -> Any:
            call = Call(args, kwargs)
            run.calls.setdefault(name, []).append(call)
            return result(call)

        return builtin

    def kustomize(call: Call) -> str:
        path = call.arg(0, "pathToDir")
        run.paths.append(path)
        return yaml.safe_dump_all(render(root / path))

    def k8s_yaml(call: Call) -> None:
        run.manifests.extend(d for d in yaml.safe_load_all(call.arg(0, "yaml")) if d)

    def sync(call: Call) -> dict[str, Any]:
        local, remote = call.arg(0, "local_path"), call.arg(1, "remote_path")
        run.paths.append(local)
        return {"step": "sync", "local_path": local, "remote_path": remote}

    def fall_back_on(call: Call) -> dict[str, Any]:
        files = call.arg(0, "files")
        run.paths.extend([files] if isinstance(files, str) else files)
        return {"step": "fall_back_on", "files": files}

    builtins: dict[str, Callable[..., Any]] = {
        "docker_build": record("docker_build"),
        "local_resource": record("local_resource"),
        "k8s_yaml": record("k8s_yaml", k8s_yaml),
        "kustomize": record("kustomize", kustomize),
        "k8s_resource": record("k8s_resource"),
        "sync": record("sync", sync),
        "fall_back_on": record("fall_back_on", fall_back_on),
        "run": record("run", lambda call: {"step": "run", "args": list(call.args)}),
        "port_forward": record("port_forward", lambda call: {"local_port": call.arg(0, "local_port")}),
        "link": record("link", lambda call: {"url": call.arg(0, "url")}),
    }
    module = starlark.Module()
    for name, function in builtins.items():
        module.add_callable(name, function)
    globals_ = starlark.Globals.extended_by([starlark.LibraryExtension.Print])
    source = (root / "Tiltfile").read_text()
    starlark.eval(module, starlark.parse("Tiltfile", source, starlark.Dialect.extended()), globals_)
    return run

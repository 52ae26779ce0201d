"""The Tiltfile, run under Starlark with recording stand-ins for Tilt's built-ins."""

from __future__ import annotations

import re

from libs.common.config import SERVICES
from tests.deploy import cluster
from tests.deploy.conftest import ROOT
from tests.deploy.kustomize import Manifest, containers
from tests.deploy.tilt import TiltRun

LABELS = {"infra", "services", "tooling"}


def defined_resources(tilt: TiltRun) -> set[str]:
    workloads = {w["metadata"]["name"] for w in cluster.workloads(tilt.manifests)}
    local = {c.arg(0, "name") for c in tilt["local_resource"]}
    grouped = {c.kwargs["new_name"] for c in tilt["k8s_resource"] if "new_name" in c.kwargs}
    return workloads | local | grouped


def test_the_tiltfile_deploys_the_dev_overlay(tilt: TiltRun, rendered: dict[str, list[Manifest]]) -> None:
    assert [c.arg(0, "pathToDir") for c in tilt["kustomize"]] == ["deploy/k8s/overlays/dev"]
    assert tilt.manifests == rendered["dev"]


def test_every_path_the_tiltfile_names_exists(tilt: TiltRun) -> None:
    (build,) = tilt["docker_build"]
    paths = [
        *tilt.paths,
        build.arg(1, "context"),
        build.kwargs["dockerfile"],
        *build.kwargs["only"],
        *(dep for c in tilt["local_resource"] for dep in c.kwargs.get("deps", [])),
    ]
    for path in paths:
        assert (ROOT / path).exists(), path


def test_every_resource_dependency_names_a_defined_resource(tilt: TiltRun) -> None:
    defined = defined_resources(tilt)
    for call in [*tilt["k8s_resource"], *tilt["local_resource"]]:
        for dependency in call.kwargs.get("resource_deps", []):
            assert dependency in defined, f"{call.args or call.kwargs.get('new_name')} waits for {dependency}"


def test_every_k8s_resource_names_a_workload_and_objects_that_exist(tilt: TiltRun) -> None:
    workloads = {w["metadata"]["name"] for w in cluster.workloads(tilt.manifests)}
    objects = {f"{m['metadata']['name']}:{m['kind'].lower()}" for m in tilt.manifests}
    for call in tilt["k8s_resource"]:
        if "new_name" not in call.kwargs:
            assert call.arg(0, "workload") in workloads
        for selector in call.kwargs.get("objects", []):
            assert selector in objects, selector


def test_every_object_that_is_not_a_workload_or_its_service_belongs_to_a_resource(tilt: TiltRun) -> None:
    claimed = {s for c in tilt["k8s_resource"] for s in c.kwargs.get("objects", [])}
    for manifest in tilt.manifests:
        if manifest["kind"] in cluster.WORKLOAD_KINDS or manifest["kind"] == "Service":
            continue  # Tilt groups these itself (a Service with the workload it selects)
        assert f"{manifest['metadata']['name']}:{manifest['kind'].lower()}" in claimed


def test_the_tiltfile_builds_exactly_the_bare_images_the_manifests_use(tilt: TiltRun) -> None:
    built = {c.arg(0, "ref") for c in tilt["docker_build"]}
    used = {c["image"] for w in cluster.workloads(tilt.manifests) for c in containers(w)}
    bare = {image for image in used if ":" not in image}
    assert bare == built
    assert all(re.fullmatch(r"[a-z0-9.-]+:[0-9][\w.-]*", image) for image in used - bare), used - bare


def test_the_image_is_built_from_the_repo_root_narrowed_to_what_it_copies(tilt: TiltRun) -> None:
    (build,) = tilt["docker_build"]
    assert build.arg(1, "context") == "."
    assert sorted(build.kwargs["only"]) == [
        "checkout_admin",
        "clients",
        "libs",
        "protos",
        "pyproject.toml",
        "requirements.lock",
        "services",
    ]
    stages = re.findall(r"^FROM \S+ AS (\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert build.kwargs["target"] in stages


def test_live_update_syncs_the_code_into_the_image_paths_and_rebuilds_on_dependency_changes(
    tilt: TiltRun,
) -> None:
    (build,) = tilt["docker_build"]
    steps = build.kwargs["live_update"]
    assert steps[0] == {"step": "fall_back_on", "files": ["requirements.lock", "pyproject.toml"]}
    syncs = {s["local_path"]: s["remote_path"] for s in steps if s["step"] == "sync"}
    assert syncs == {"libs": "/app/libs", "services": "/app/services", "protos": "/app/protos"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    for local in syncs:
        assert f"COPY {local}/ {local}/" in dockerfile
    # Synced files land in a writable /app (an emptyDir) that the watcher restarts on.
    for workload in cluster.workloads(tilt.manifests):
        for container in cluster.pod_spec_of(workload)["containers"]:
            if cluster.is_checkout(container) and workload["kind"] != "Job":
                assert {"mountPath": "/app", "name": "app"} in container["volumeMounts"]
                assert container["command"][0] == "watchfiles"
                assert [p for p in container["command"] if p.startswith("/app/")] == list(syncs.values())


def test_proto_codegen_runs_before_the_services_and_ignores_its_own_output(tilt: TiltRun) -> None:
    (protos,) = tilt["local_resource"]
    assert protos.arg(0, "name") == "protos"
    assert "protos" in protos.kwargs["deps"]
    assert all(pattern.startswith("protos/") for pattern in protos.kwargs["ignore"])
    waits = {c.arg(0, "workload"): set(c.kwargs.get("resource_deps", [])) for c in tilt["k8s_resource"]}
    for service in SERVICES:
        assert {"protos", "postgres", "nats", "checkout-migrate"} <= waits[service]
    assert {"protos", "postgres"} <= waits["checkout-migrate"]
    assert set(SERVICES) <= waits["gateway"]


def test_port_forwards_reach_ports_the_workloads_declare(tilt: TiltRun) -> None:
    forwards: dict[str, list[int]] = {}
    for call in tilt["k8s_resource"]:
        for forward in call.kwargs.get("port_forwards", []):
            forwards.setdefault(call.arg(0, "workload"), []).append(forward["local_port"])
    assert forwards == {"gateway": [8080], "postgres": [5432], "nats": [4222, 8222]}
    for port_forward in tilt["port_forward"]:
        container_port = port_forward.arg(1, "container_port")
        assert any(container_port in cluster.container_ports(w) for w in cluster.workloads(tilt.manifests))


def test_every_resource_is_labelled_infra_services_or_tooling(tilt: TiltRun) -> None:
    for call in [*tilt["k8s_resource"], *tilt["local_resource"]]:
        assert len(call.kwargs["labels"]) == 1 and set(call.kwargs["labels"]) <= LABELS

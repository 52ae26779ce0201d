"""The rendered base and overlays: valid Kubernetes objects, and consistent with each other and
with what the code reads (`Config.from_env`)."""

from __future__ import annotations

import tomllib
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest

from libs.common.config import DEFAULT_GRPC_PORTS, SERVICES, Config
from tests.deploy import cluster
from tests.deploy.cluster import Pod
from tests.deploy.conftest import ROOT
from tests.deploy.kustomize import Manifest, containers

# A Kubernetes release the schemas ship for; StatefulSet pod-index labels need >= 1.28.
KUBERNETES_VERSION = "1.33.0"
OVERLAYS = ["dev", "prod"]
PROD_SHARDS = 2


@pytest.mark.parametrize("layout", ["base", "dev", "prod"])
def test_every_rendered_object_validates_strictly_against_the_kubernetes_schemas(
    rendered: dict[str, list[Manifest]], layout: str
) -> None:
    assert rendered[layout]
    for manifest in rendered[layout]:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_a_misspelt_field(rendered: dict[str, list[Manifest]]) -> None:
    gateway = cluster.one(rendered["dev"], "Service", "gateway")
    broken = {**gateway, "spec": {**gateway["spec"], "selecter": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def checkout_containers(manifests: list[Manifest]) -> list[tuple[Pod, dict[str, object]]]:
    return [
        (pod, container)
        for pod in cluster.pods(manifests)
        for container in pod.workload["spec"]["template"]["spec"]["containers"]
        if cluster.is_checkout(container)
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_checkout_container_reads_a_complete_config_pointing_at_real_services(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    assert {pod.workload["metadata"]["name"] for pod, _ in checkout_containers(manifests)} == {
        *SERVICES,
        "gateway",
        "checkout-migrate",
    }
    for pod, container in checkout_containers(manifests):
        env = cluster.env_of(manifests, container, pod)
        config = Config.from_env(env)
        assert config.admin_token, f"{pod.name}: no CHECKOUT_ADMIN_TOKEN"
        for dsn in (config.shard_dsn(shard) for shard in config.served()):
            url = urlsplit(dsn)
            assert url.hostname and url.port and url.password, f"{pod.name}: incomplete DSN {dsn}"
            service, _ = cluster.resolve(manifests, url.hostname)
            assert cluster.service_port(service, url.port)["targetPort"] == "postgres"
        for url_text, port_name in ((config.nats_url, "client"), (config.redis_url, "redis")):
            url = urlsplit(url_text)
            assert url.hostname and url.port, f"{pod.name}: {url_text} needs host and port"
            service, _ = cluster.resolve(manifests, url.hostname)
            assert cluster.service_port(service, url.port)["targetPort"] == port_name
        # Every shard of every service has an endpoint, on a pod that serves that shard.
        for service_name in SERVICES:
            for shard in config.shards:
                host, _, port = config.endpoint_for(service_name, shard).rpartition(":")
                service, targets = cluster.resolve(manifests, host)
                assert service["metadata"]["name"] == service_name
                assert int(port) == DEFAULT_GRPC_PORTS[service_name]
                assert cluster.service_port(service, int(port))["targetPort"] == "grpc"
                for target in targets:
                    target_container = target.workload["spec"]["template"]["spec"]["containers"][0]
                    served = Config.from_env(cluster.env_of(manifests, target_container, target)).served()
                    assert shard in served, f"{host} does not serve shard {shard}"
        ports = cluster.container_ports(pod.workload)
        if pod.workload["metadata"]["name"] in SERVICES:
            _, _, grpc_port = config.grpc_address(pod.workload["metadata"]["name"]).rpartition(":")
            assert config.grpc_listen.startswith("0.0.0.0:") and ports["grpc"] == int(grpc_port)
            assert ports["metrics"] == int(config.metrics_listen.rpartition(":")[2])
        if pod.workload["metadata"]["name"] == "gateway":
            assert config.http_listen.startswith("0.0.0.0:")
            assert ports["http"] == int(config.http_listen.rpartition(":")[2])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_shard_is_served_by_exactly_one_instance_of_each_service(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    for service_name in SERVICES:
        served: list[int] = []
        for pod, container in checkout_containers(manifests):
            if pod.workload["metadata"]["name"] == service_name:
                served += Config.from_env(cluster.env_of(manifests, container, pod)).served()
        shard_count = int(
            cluster.one(manifests, "ConfigMap", "checkout-config")["data"]["CHECKOUT_SHARD_COUNT"]
        )
        assert sorted(served) == list(range(shard_count)), service_name


def test_prod_shard_count_agrees_across_config_databases_replicas_and_endpoints(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["prod"]
    data = cluster.one(manifests, "ConfigMap", "checkout-config")["data"]
    dsns = cluster.one(manifests, "Secret", "checkout-secrets")["stringData"]["CHECKOUT_SHARD_DSNS"]
    config = Config.from_env({**data, "CHECKOUT_SHARD_DSNS": dsns})
    assert int(data["CHECKOUT_SHARD_COUNT"]) == config.shard_count == PROD_SHARDS
    databases = [
        m
        for m in cluster.find(manifests, "StatefulSet")
        if m["metadata"]["name"].startswith("postgres-shard-")
    ]
    assert sorted(m["metadata"]["name"] for m in databases) == [
        f"postgres-shard-{n}" for n in range(PROD_SHARDS)
    ]
    for shard in config.shards:
        assert urlsplit(config.shard_dsn(shard)).hostname == f"postgres-shard-{shard}"
        assert urlsplit(config.shard_dsn(shard)).path == f"/checkout_shard_{shard}"
    for service_name in SERVICES:
        assert cluster.one(manifests, "StatefulSet", service_name)["spec"]["replicas"] == PROD_SHARDS
        endpoints = config.endpoints[service_name]
        assert sorted(s for e in endpoints for s in e.shards) == list(config.shards)


def test_dev_runs_one_postgres_and_one_instance_of_each_service_for_every_shard(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["dev"]
    assert [
        m["metadata"]["name"]
        for m in cluster.find(manifests, "StatefulSet")
        if "postgres" in m["metadata"]["name"]
    ] == ["postgres"]
    assert cluster.one(manifests, "StatefulSet", "nats")["spec"]["replicas"] == 1
    for service_name in SERVICES:
        assert cluster.one(manifests, "StatefulSet", service_name)["spec"]["replicas"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probe_ports_are_ports_their_container_declares(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    for workload in cluster.workloads(rendered[overlay]):
        for container in containers(workload):
            declared = {p["containerPort"] for p in container.get("ports", [])} | {
                p["name"] for p in container.get("ports", [])
            }
            for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(probe_name)
                if probe is None:
                    continue
                handler = probe.get("grpc") or probe.get("httpGet") or probe.get("tcpSocket")
                if handler is not None:
                    assert handler["port"] in declared, f"{container['name']} {probe_name}"
            main = container in cluster.pod_spec_of(workload)["containers"]
            if main and cluster.is_checkout(container) and workload["kind"] != "Job":
                # Services: native gRPC probes on the `grpc` port; the gateway: HTTP on `http`.
                readiness, liveness = container["readinessProbe"], container["livenessProbe"]
                if "grpc" in readiness:
                    grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
                    assert readiness["grpc"]["port"] == liveness["grpc"]["port"] == grpc_port
                else:
                    assert readiness["httpGet"] == {"path": "/readyz", "port": "http"}
                    assert liveness["httpGet"] == {"path": "/healthz", "port": "http"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_target_ports_are_container_ports_of_every_pod_they_select(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    for service in cluster.find(manifests, "Service"):
        selected = [
            p
            for p in cluster.pods(manifests)
            if cluster.selects({"matchLabels": service["spec"]["selector"]}, p.labels)
        ]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        for pod in selected:
            ports = cluster.container_ports(pod.workload)
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports, (
                    f"{service['metadata']['name']}:{port['name']} on {pod.name}"
                )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_non_root_read_only_with_no_capabilities_and_bounded_resources(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    for workload in cluster.workloads(rendered[overlay]):
        spec = cluster.pod_spec_of(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            for kind in ("requests", "limits"):
                assert set(container["resources"][kind]) == {"cpu", "memory"}, where
        if any(cluster.is_checkout(c) for c in containers(workload)):
            mounts = {m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, workload["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_and_statefulset_has_a_disruption_budget_selecting_it(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    budgets = cluster.find(manifests, "PodDisruptionBudget")
    for workload in cluster.workloads(manifests):
        if workload["kind"] == "Job":
            continue
        labels = workload["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if cluster.selects(b["spec"]["selector"], labels)]
        assert len(matching) == 1, workload["metadata"]["name"]


def test_prod_scales_the_gateway_with_an_hpa_above_dev(rendered: dict[str, list[Manifest]]) -> None:
    dev = cluster.one(rendered["dev"], "HorizontalPodAutoscaler", "gateway")["spec"]
    prod = cluster.one(rendered["prod"], "HorizontalPodAutoscaler", "gateway")["spec"]
    assert prod["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert prod["minReplicas"] > dev["minReplicas"]
    assert cluster.one(rendered["prod"], "Deployment", "gateway")["spec"]["replicas"] == prod["minReplicas"]


def test_prod_nats_is_a_three_node_jetstream_cluster_routing_to_every_peer(
    rendered: dict[str, list[Manifest]],
) -> None:
    nats = cluster.one(rendered["prod"], "StatefulSet", "nats")
    args = nats["spec"]["template"]["spec"]["containers"][0]["args"]
    assert nats["spec"]["replicas"] == 3 and "--jetstream" in args
    routes = next(a for a in args if a.startswith("--routes=")).removeprefix("--routes=").split(",")
    headless = nats["spec"]["serviceName"]
    assert routes == [f"nats://nats-{n}.{headless}:6222" for n in range(3)]
    for route in routes:
        service, _ = cluster.resolve(rendered["prod"], urlsplit(route).hostname or "")
        assert service["spec"]["publishNotReadyAddresses"] is True
    assert "--server_name=$(POD_NAME)" in args


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_only_the_owners_reach_databases_and_nats(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    pods = cluster.pods(manifests)
    databases = [p for p in pods if p.labels.get("app.kubernetes.io/component") == "database"]
    assert databases
    for database in databases:
        allowed = {p.name for p in pods if cluster.reaches(manifests, p, database, "postgres")}
        shard = database.workload["metadata"]["labels"].get("checkout.example.com/shard")
        owners = {
            p.name
            for p in pods
            if p.workload["metadata"]["name"] in SERVICES and (shard is None or p.ordinal == int(shard))
        }
        assert allowed == owners | {"checkout-migrate"}, database.name
    by_name = {p.name: p for p in pods}
    gateway, nats, redis = by_name["gateway"], by_name["nats-0"], by_name["redis"]
    service_pods = [p for p in pods if p.workload["metadata"]["name"] in SERVICES]
    assert not cluster.reaches(manifests, gateway, nats, "client")
    assert cluster.reaches(manifests, gateway, redis, "redis")
    for service_pod in service_pods:
        assert cluster.reaches(manifests, service_pod, nats, "client")
        assert cluster.reaches(manifests, gateway, service_pod, "grpc")
        assert not cluster.reaches(manifests, by_name["redis"], service_pod, "grpc")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_and_gateway_are_scraped_by_prometheus_on_a_declared_port(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    for workload in cluster.workloads(rendered[overlay]):
        if workload["kind"] == "Job" or not any(cluster.is_checkout(c) for c in containers(workload)):
            continue
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) in cluster.container_ports(workload)


def test_prod_pins_every_image_to_a_tag_and_base_uses_the_bare_checkout_image(
    rendered: dict[str, list[Manifest]],
) -> None:
    prod_images = {c["image"] for w in cluster.workloads(rendered["prod"]) for c in containers(w)}
    assert all(":" in image.rpartition("/")[2] for image in prod_images), prod_images
    base_images = {c["image"] for w in cluster.workloads(rendered["base"]) for c in containers(w)}
    assert "checkout-service" in base_images


def test_every_object_lives_in_the_checkout_namespace(rendered: dict[str, list[Manifest]]) -> None:
    for layout, manifests in rendered.items():
        namespaces = [m for m in manifests if m["kind"] == "Namespace"]
        assert [n["metadata"]["name"] for n in namespaces] == ["checkout"], layout
        for manifest in manifests:
            if manifest["kind"] != "Namespace":
                assert manifest["metadata"]["namespace"] == "checkout", manifest["metadata"]["name"]


@pytest.mark.parametrize("layout", ["base", "dev", "prod"])
def test_every_checkout_process_is_started_by_a_console_script_the_package_installs(
    rendered: dict[str, list[Manifest]], layout: str
) -> None:
    scripts = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
    started = []
    for workload in cluster.workloads(rendered[layout]):
        for container in containers(workload):
            if not cluster.is_checkout(container) or container["command"][0] == "cp":
                continue  # the dev overlay's init container copies the code, it runs none
            command = container["command"]
            if command[0] == "watchfiles":  # dev: the process is the wrapper's argument
                command = next(arg for arg in command[1:] if arg.startswith("checkout-")).split()
            elif command[:2] == ["sh", "-c"]:  # the migrate job loops over the services
                assert 'checkout-service "$service" migrate' in command[2]
                command = ["checkout-service", "merchant"]
            assert command[0] in scripts, command
            if command[0] == "checkout-service":
                assert command[1] in SERVICES, command
            started.append(command[0])
    assert {"checkout-service", "checkout-gateway"} <= set(started)

"""Questions about a rendered set of manifests: which pods a workload makes (with the labels the
controllers add), which container ports exist, which Services and policies select which pods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.deploy.kustomize import Manifest, containers, pod_spec

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
CHECKOUT_IMAGE = "checkout-service"


@dataclass(frozen=True)
class Pod:
    workload: Manifest
    ordinal: int  # the StatefulSet ordinal; 0 for other kinds

    @property
    def name(self) -> str:
        base = str(self.workload["metadata"]["name"])
        return f"{base}-{self.ordinal}" if self.workload["kind"] == "StatefulSet" else base

    @property
    def labels(self) -> dict[str, str]:
        labels = dict(self.workload["spec"]["template"]["metadata"].get("labels", {}))
        if self.workload["kind"] == "StatefulSet":
            labels["apps.kubernetes.io/pod-index"] = str(self.ordinal)
            labels["statefulset.kubernetes.io/pod-name"] = self.name
        return labels


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind and name in (None, m["metadata"]["name"])]


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def workloads(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in WORKLOAD_KINDS]


def pods(manifests: list[Manifest]) -> list[Pod]:
    result: list[Pod] = []
    for workload in workloads(manifests):
        replicas = workload["spec"].get("replicas", 1) if workload["kind"] != "Job" else 1
        result.extend(Pod(workload, ordinal) for ordinal in range(replicas))
    return result


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if set(selector) - {"matchLabels"}:
        raise AssertionError(f"selector {selector} uses more than matchLabels")
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def is_checkout(container: dict[str, Any]) -> bool:
    return str(container["image"]).split(":")[0].rpartition("/")[2] == CHECKOUT_IMAGE


def container_ports(workload: Manifest) -> dict[str | int, int]:
    """Every port of the workload's containers, by name and by number, to its number."""
    ports: dict[str | int, int] = {}
    for container in containers(workload):
        for port in container.get("ports", []):
            ports[port["containerPort"]] = port["containerPort"]
            if "name" in port:
                ports[port["name"]] = port["containerPort"]
    return ports


def env_of(manifests: list[Manifest], container: dict[str, Any], pod: Pod) -> dict[str, str]:
    """The environment the container starts with: envFrom first, then env (which wins)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(one(manifests, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            secret = one(manifests, "Secret", source["secretRef"]["name"])
            env.update(secret.get("stringData", {}))
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        path = variable["valueFrom"]["fieldRef"]["fieldPath"]
        if path.startswith("metadata.labels['") and path.endswith("']"):
            env[variable["name"]] = pod.labels[path[len("metadata.labels['") : -2]]
        elif path == "metadata.name":
            env[variable["name"]] = pod.name
        else:
            raise AssertionError(f"unsupported fieldRef {path}")
    return env


def resolve(manifests: list[Manifest], host: str) -> tuple[Manifest, list[Pod]]:
    """The Service a cluster-local DNS name (`svc` or `pod.headless-svc`) names, and the pods behind it."""
    parts = host.split(".")
    if len(parts) > 2:
        raise AssertionError(f"{host}: use a namespace-local name")
    service = one(manifests, "Service", parts[-1])
    behind = [p for p in pods(manifests) if selects({"matchLabels": service["spec"]["selector"]}, p.labels)]
    if len(parts) == 2:
        assert service["spec"].get("clusterIP") == "None", f"{host}: pod DNS needs a headless Service"
        behind = [
            p for p in behind if p.name == parts[0] and p.workload["spec"].get("serviceName") == parts[1]
        ]
    assert behind, f"{host} names no pod"
    return service, behind


def service_port(service: Manifest, port: int) -> dict[str, Any]:
    matches = [p for p in service["spec"]["ports"] if p["port"] == port]
    assert matches, f"Service {service['metadata']['name']} has no port {port}"
    return dict(matches[0])


def reaches(manifests: list[Manifest], source: Pod, target: Pod, port_name: str) -> bool:
    """Whether some NetworkPolicy lets `source` reach `target` on the named port (ingress only)."""
    policies = [
        p
        for p in find(manifests, "NetworkPolicy")
        if selects(p["spec"]["podSelector"], target.labels) and "Ingress" in p["spec"]["policyTypes"]
    ]
    assert policies, f"no NetworkPolicy selects {target.name}"
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            if rule.get("ports") and not any(p["port"] == port_name for p in rule["ports"]):
                continue
            if "from" not in rule:
                return True
            for peer in rule["from"]:
                if "namespaceSelector" in peer and not peer.get("podSelector"):
                    return True  # any pod in any namespace
                if selects(peer["podSelector"], source.labels):
                    return True
    return False


def pod_spec_of(workload: Manifest) -> dict[str, Any]:
    spec = pod_spec(workload)
    assert spec is not None
    return spec

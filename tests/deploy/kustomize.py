"""A small kustomize renderer for exactly the features deploy/k8s uses, so the tests need no
kustomize binary: `resources` (files and directories), `namespace`, `labels` (metadata only),
`patches` with a `path` to a strategic-merge patch, and `images`. Anything else in a
kustomization is an error, so the manifests cannot drift into features this does not render.

Strategic merge follows Kubernetes' patch strategy for the lists we patch (containers, init
containers, env and volumes by `name`, volume mounts by `mountPath`); other lists are replaced
and maps merge recursively, as kubectl does for those fields.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

SUPPORTED_KEYS = {"apiVersion", "kind", "namespace", "labels", "resources", "patches", "images"}
CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
}
# Kubernetes' `patchMergeKey` for the list fields the overlays patch.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not support, or is inconsistent."""


def load_yaml_documents(path: Path) -> list[Manifest]:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for document in documents:
        if not isinstance(document, dict) or "kind" not in document:
            raise KustomizeError(f"{path}: every document must be a Kubernetes object")
    return documents


def identity(manifest: Manifest) -> tuple[str, str, str]:
    group = str(manifest.get("apiVersion", "")).rpartition("/")[0]
    return group, str(manifest["kind"]), str(manifest["metadata"]["name"])


def render(directory: Path) -> list[Manifest]:
    """The objects `kustomize build <directory>` would print (in resource order)."""
    kustomization_file = directory / "kustomization.yaml"
    if not kustomization_file.is_file():
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    spec = yaml.safe_load(kustomization_file.read_text()) or {}
    unknown = set(spec) - SUPPORTED_KEYS
    if unknown:
        raise KustomizeError(f"{kustomization_file}: unsupported fields {sorted(unknown)}")

    manifests: list[Manifest] = []
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        manifests.extend(render(target) if target.is_dir() else load_yaml_documents(target))
    seen: set[tuple[str, str, str]] = set()
    for manifest in manifests:
        key = identity(manifest)
        if key in seen:
            raise KustomizeError(f"{directory}: {key} is defined twice")
        seen.add(key)

    for patch_entry in spec.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise KustomizeError(f"{kustomization_file}: only `patches: - path:` is supported")
        for patch in load_yaml_documents(directory / patch_entry["path"]):
            apply_patch(manifests, patch, source=directory / patch_entry["path"])
    for manifest in manifests:
        apply_labels(manifest, spec.get("labels", []))
        if "namespace" in spec and manifest["kind"] not in CLUSTER_SCOPED_KINDS:
            manifest["metadata"]["namespace"] = spec["namespace"]
        apply_images(manifest, spec.get("images", []))
    return manifests


def apply_patch(manifests: list[Manifest], patch: Manifest, source: Path) -> None:
    matches = [m for m in manifests if identity(m) == identity(patch)]
    if not matches:
        raise KustomizeError(f"{source}: no resource {identity(patch)} to patch")
    matches[0].update(strategic_merge(matches[0], patch))


def strategic_merge(original: Any, patch: Any, field: str = "") -> Any:
    if isinstance(original, dict) and isinstance(patch, dict):
        merged = dict(original)
        for key, value in patch.items():
            if isinstance(key, str) and key.startswith("$"):
                raise KustomizeError(f"patch directive {key} is not supported")
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(original, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        merged_list = [copy.deepcopy(item) for item in original]
        for item in patch:
            index = next((i for i, old in enumerate(merged_list) if old.get(key) == item[key]), None)
            if index is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[index] = strategic_merge(merged_list[index], item, field)
        return merged_list
    return copy.deepcopy(patch)


def apply_labels(manifest: Manifest, entries: Iterable[dict[str, Any]]) -> None:
    for entry in entries:
        if entry.get("includeSelectors") or entry.get("includeTemplates"):
            raise KustomizeError("labels with includeSelectors/includeTemplates are not supported")
        manifest["metadata"].setdefault("labels", {}).update(entry["pairs"])


def pod_spec(manifest: Manifest) -> dict[str, Any] | None:
    spec = manifest.get("spec", {})
    if manifest["kind"] == "Pod":
        return spec  # type: ignore[no-any-return]
    template = spec.get("jobTemplate", {}).get("spec", spec).get("template")
    return template.get("spec") if isinstance(template, dict) else None


def containers(manifest: Manifest) -> list[dict[str, Any]]:
    spec = pod_spec(manifest) or {}
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def apply_images(manifest: Manifest, entries: Iterable[dict[str, Any]]) -> None:
    for entry in entries:
        if set(entry) - {"name", "newName", "newTag"}:
            raise KustomizeError(f"images entry {entry} uses unsupported fields")
        for container in containers(manifest):
            name, tag = split_image(container["image"])
            if name == entry["name"]:
                container["image"] = f"{entry.get('newName', name)}:{entry.get('newTag', tag)}".rstrip(":")


def split_image(image: str) -> tuple[str, str]:
    """`registry:5000/repo/name:tag` -> (`registry:5000/repo/name`, `tag`)."""
    head, slash, last = image.rpartition("/")
    name, _, tag = last.partition(":")
    return head + slash + name, tag

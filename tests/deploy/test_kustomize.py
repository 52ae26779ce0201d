"""The test renderer itself: it renders what kustomize would for the features it accepts and
refuses the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.deploy.kustomize import KustomizeError, render, split_image, strategic_merge

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {"name": "web", "image": "web", "args": ["a"], "env": [{"name": "A", "value": "1"}]},
                    {"name": "side", "image": "side:1.0"},
                ]
            }
        }
    },
}


def write(directory: Path, files: dict[str, object]) -> Path:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        documents = content if isinstance(content, list) else [content]
        path.write_text(yaml.safe_dump_all(documents))
    return directory


def test_strategic_merge_merges_named_lists_by_key_and_replaces_the_others() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "web", "args": ["b"], "env": [{"name": "B", "value": "2"}]}]}
            }
        }
    }
    merged = strategic_merge(DEPLOYMENT, patch)
    web, side = merged["spec"]["template"]["spec"]["containers"]
    assert web == {
        "name": "web",
        "image": "web",
        "args": ["b"],
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
    }
    assert side == {"name": "side", "image": "side:1.0"}
    assert DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]["args"] == ["a"]  # type: ignore[index]


def test_an_overlay_patches_its_base_then_sets_namespace_labels_and_images(tmp_path: Path) -> None:
    write(tmp_path / "base", {"kustomization.yaml": {"resources": ["web.yaml"]}, "web.yaml": DEPLOYMENT})
    overlay = write(
        tmp_path / "overlay",
        {
            "kustomization.yaml": {
                "resources": ["../base"],
                "namespace": "shop",
                "labels": [{"pairs": {"team": "pay"}}],
                "patches": [{"path": "replicas.yaml"}],
                "images": [{"name": "web", "newName": "registry:5000/web", "newTag": "2"}],
            },
            "replicas.yaml": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {"replicas": 3},
            },
        },
    )
    (web,) = render(overlay)
    assert web["metadata"] == {"name": "web", "namespace": "shop", "labels": {"team": "pay"}}
    assert web["spec"]["replicas"] == 3
    assert [c["image"] for c in web["spec"]["template"]["spec"]["containers"]] == [
        "registry:5000/web:2",
        "side:1.0",
    ]


def test_a_patch_with_nothing_to_patch_is_an_error(tmp_path: Path) -> None:
    directory = write(
        tmp_path,
        {
            "kustomization.yaml": {"patches": [{"path": "p.yaml"}]},
            "p.yaml": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "missing"}},
        },
    )
    with pytest.raises(KustomizeError, match="no resource"):
        render(directory)


@pytest.mark.parametrize(
    "field",
    [
        {"namePrefix": "x-"},
        {"configMapGenerator": []},
        {"labels": [{"pairs": {"a": "b"}, "includeSelectors": True}]},
    ],
)
def test_kustomize_features_the_renderer_does_not_implement_are_refused(
    tmp_path: Path, field: dict[str, object]
) -> None:
    directory = write(
        tmp_path, {"kustomization.yaml": {"resources": ["web.yaml"], **field}, "web.yaml": DEPLOYMENT}
    )
    with pytest.raises(KustomizeError):
        render(directory)


def test_an_image_reference_splits_its_tag_from_a_registry_port() -> None:
    assert split_image("registry:5000/team/web:1.2") == ("registry:5000/team/web", "1.2")
    assert split_image("web") == ("web", "")

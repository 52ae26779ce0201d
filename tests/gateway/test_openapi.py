from __future__ import annotations

import json

import httpx
from starlette.routing import Route

from services.gateway.app import all_routes
from services.gateway.openapi import DOCUMENT

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def served() -> set[tuple[str, str]]:
    pairs = set()
    for route in all_routes():
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                pairs.add((route.path, method.lower()))
    return pairs


def documented() -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_every_served_route_is_documented_and_nothing_else() -> None:
    assert served() == documented()


def test_the_document_is_openapi_3_1_json() -> None:
    text = json.dumps(DOCUMENT)
    assert json.loads(text)["openapi"].startswith("3.1")


def test_every_reference_resolves() -> None:
    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for ref in refs(DOCUMENT):
        target: object = DOCUMENT
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(target, dict) and part in target, ref
            target = target[part]


def test_path_parameters_are_declared_for_every_templated_path() -> None:
    params = DOCUMENT["components"]["parameters"]
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            declared = set()
            for p in operation["parameters"]:
                resolved = params[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
                if resolved["in"] == "path":
                    declared.add(resolved["name"])
            expected = {part[1:-1] for part in path.split("/") if part.startswith("{")}
            assert declared == expected, (path, method)


def test_the_error_schema_and_both_security_schemes_are_described() -> None:
    components = DOCUMENT["components"]
    assert set(components["securitySchemes"]) == {"operatorToken", "apiKey"}
    error = components["schemas"]["Error"]["properties"]["error"]
    assert set(error["required"]) == {"code", "message", "details", "request_id"}


async def test_the_document_is_served_at_openapi_json(offline: httpx.AsyncClient) -> None:
    response = await offline.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(DOCUMENT))

"""GET /v1/admin/metrics: the operator's one page of metrics, the gateway's own and every
service's (CHECKOUT_<SERVICE>_METRICS), merged into one Prometheus text exposition with a
`checkout_service` and an `instance` label, and `checkout_metrics_target_up` saying which
listener answered. For a look or a dev Prometheus; production scrapes each pod itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import Response

from services.gateway.operations import Args, Operation
from services.gateway.state import state_of

SCRAPE_TIMEOUT_SECONDS = 2.0
UP = "checkout_metrics_target_up"


async def _scrape(client: httpx.AsyncClient, address: str) -> str | None:
    try:
        response = await client.get(f"http://{address}/metrics")
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


class _Merged:
    """The families of several processes, each sample labelled with where it came from."""

    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}
        self.up = GaugeMetricFamily(
            UP, "1 if the listener answered this scrape.", labels=["checkout_service", "instance"]
        )

    def add(self, service: str, instance: str, text: str | None) -> None:
        self.up.add_metric([service, instance], 0.0 if text is None else 1.0)
        if text is None:
            return
        extra = {"checkout_service": service, "instance": instance}
        for family in text_string_to_metric_families(text):
            merged = self.families.get(family.name)
            if merged is None:
                merged = self.families[family.name] = Metric(family.name, family.documentation, family.type)
            merged.samples.extend(s._replace(labels={**s.labels, **extra}) for s in family.samples)

    def collect(self) -> Iterable[Metric]:
        yield from self.families.values()
        yield self.up


async def admin_metrics(args: Args[None, None]) -> Response:
    targets = [
        (service, address)
        for service, addresses in sorted(state_of(args.request).config.metrics_targets.items())
        for address in addresses
    ]
    async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT_SECONDS) as client:
        texts = await asyncio.gather(*(_scrape(client, address) for _, address in targets))
    merged = _Merged()
    merged.add("gateway", args.request.url.netloc, generate_latest().decode())
    for (service, address), text in zip(targets, texts, strict=True):
        merged.add(service, address, text)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(merged)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


operations = [
    Operation(
        "GET", "/v1/admin/metrics", admin_metrics, "Every process's Prometheus metrics, merged", "Operator",
        "operator", media_type=CONTENT_TYPE_LATEST,
        description="The gateway's and each service's metrics, labelled `checkout_service` and "
        "`instance`; `checkout_metrics_target_up` is 0 for a listener that did not answer.",
    ),
]  # fmt: skip

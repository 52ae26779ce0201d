"""Tracing as the OTEL_* variables configure it (libs/common/telemetry.py): the exporters and
sampler they name, start-up refusing a value it cannot use (naming the variable), and a process
run under `opentelemetry-instrument` instrumented once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from libs.common import telemetry
from libs.common.config import ConfigError


def test_no_exporter_unless_one_is_named() -> None:
    assert telemetry.span_exporters({}) == []
    assert telemetry.span_exporters({"OTEL_TRACES_EXPORTER": "none"}) == []


@pytest.mark.parametrize(
    ("env", "kinds"),
    [
        ({"OTEL_TRACES_EXPORTER": "console"}, [ConsoleSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, [GrpcExporter]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, [HttpExporter]),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, [GrpcExporter]),
        ({"OTEL_TRACES_EXPORTER": "console,otlp_proto_http"}, [ConsoleSpanExporter, HttpExporter]),
    ],
)
def test_the_exporters_named_are_the_ones_made(env: dict[str, str], kinds: list[type]) -> None:
    made = telemetry.span_exporters(env)
    try:
        assert [type(e) for e in made] == kinds
    finally:
        for exporter in made:
            exporter.shutdown()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger-ish"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
    ],
)
def test_an_exporter_that_cannot_be_made_fails_start_up_naming_the_variable(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        telemetry.span_exporters(env)


def test_the_sampler_is_parent_based_always_on_by_default_and_as_configured_otherwise() -> None:
    assert (
        telemetry.configured_sampler({}).get_description()
        == "ParentBased{root:AlwaysOnSampler,remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}"
    )
    ratio = telemetry.configured_sampler(
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    )
    assert ratio.get_description().startswith("ParentBased{root:TraceIdRatioBased{0.25}")
    for env, variable in (
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "a tenth"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"),
    ):
        with pytest.raises(ConfigError, match=variable):
            telemetry.configured_sampler(env)


UNDER_INSTRUMENT = textwrap.dedent(
    """
    import grpc
    from opentelemetry import trace
    from starlette.applications import Starlette

    from libs.common import telemetry
    from services.gateway.middleware import instrument

    telemetry.setup("probe")
    telemetry.setup("probe")  # idempotent
    app = Starlette()
    instrument(app)
    print("middlewares", [m.cls.__name__ for m in app.user_middleware], flush=True)
    with trace.get_tracer("probe").start_as_current_span("one span"):
        pass
    trace.get_tracer_provider().force_flush()
    """
)


def test_under_opentelemetry_instrument_the_process_is_instrumented_and_exports_once(repo_root: Path) -> None:
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "PYTHONPATH": str(repo_root),
    }
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    ran = subprocess.run(
        [str(instrument), sys.executable, "-c", UNDER_INSTRUMENT],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert "middlewares ['OpenTelemetryMiddleware']" in lines  # Starlette's, not a second of ours
    spans = [json.loads(line) for line in lines if line.startswith("{")]
    assert [s["name"] for s in spans] == ["one span"]
    assert spans[0]["resource"]["attributes"]["service.name"] == "checkout-probe"

# syntax=docker/dockerfile:1
# One image for all five processes (merchant, invoice, customer, analytics, gateway): they share
# libs/common and the generated protos, so one build and one layer cache serve every workload and
# the manifests pick the process with `command: python -m services.<name>`.
#
#   docker build -t checkout-service .               production image (the last stage)
#   docker build --target dev -t checkout-service .  + watchfiles, the restart wrapper Tilt uses

# --- dependencies: from pyproject's [project] dependencies only (no dev tools), built with a
# compiler available (some crypto dependencies ship sdists), into a venv the runtime copies.
FROM python:3.11-slim-bookworm AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Only pyproject.toml, before any source: this layer is rebuilt when dependencies change, not code.
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

# --- the application: code imported from /app (as from the checkout: no package is installed).
FROM python:3.11-slim-bookworm AS app
RUN groupadd --system --gid 10001 checkout \
 && useradd --system --uid 10001 --gid checkout --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin checkout
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/protos \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
COPY libs/ libs/
COPY services/ services/
COPY protos/ protos/
# The root filesystem is read-only at run time, so compile now rather than on every start.
RUN python -m compileall -q libs services protos
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080 50051 50052 50053 50054 9464
CMD ["python", "-m", "services.gateway"]

# --- dev (Tilt): watchfiles restarts a process when live_update syncs changed .py files.
FROM app AS dev
USER root
RUN pip install --no-cache-dir watchfiles==1.1.1
USER 10001:10001

# --- production: the last stage, so a plain `docker build` gives it.
FROM app AS runtime

# syntax=docker/dockerfile:1
# One image for all five processes (merchant, invoice, customer, analytics, gateway): they share
# libs/common and the generated protos, so one build and one layer cache serve every workload and
# the manifests pick the process with `command: [checkout-service, <name>]` or `[checkout-gateway]`.
#
#   docker build -t checkout-service .               production image (the last stage)
#   docker build --target dev -t checkout-service .  + watchfiles, the restart wrapper Tilt uses

# --- dependencies: exactly the runtime lock (pinned, with hashes; no dev tools), built with a
# compiler available (some crypto dependencies ship sdists), into a venv the runtime copies.
FROM python:3.11-slim-bookworm AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Only the lock, before any source: this layer is rebuilt when dependencies change, not code.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes --no-deps -r /tmp/requirements.lock

# --- the package: the code installed into the venv like any other (console scripts included),
# with nothing resolved again (the lock brought every dependency and setuptools).
FROM deps AS build
WORKDIR /src
COPY pyproject.toml ./
COPY libs/ libs/
COPY services/ services/
COPY protos/ protos/
COPY checkout_admin/ checkout_admin/
COPY clients/ clients/
RUN pip install --no-deps --no-build-isolation .

# --- the application: the venv alone (pip compiled every module, so a read-only root is fine).
FROM python:3.11-slim-bookworm AS app
RUN groupadd --system --gid 10001 checkout \
 && useradd --system --uid 10001 --gid checkout --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin checkout
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080 50051 50052 50053 50054 9464
CMD ["checkout-gateway"]

# --- dev (Tilt): the code in /app as an editable install, so files live_update syncs there are
# what runs; watchfiles restarts a process when a synced .py file changes.
FROM app AS dev
USER root
RUN pip install --no-cache-dir watchfiles==1.1.1
WORKDIR /app
# The same sources the build stage installed, now where live_update syncs.
COPY --from=build /src/ /app/
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e . \
 && python -m compileall -q libs services protos checkout_admin clients
USER 10001:10001

# --- production: the last stage, so a plain `docker build` gives it.
FROM app AS runtime

# letta-exporter container image.
#
#   docker build -t letta-exporter:0.1.0 .
#   docker run --rm -p 8284:8284 letta-exporter:0.1.0 demo --listen-address 0.0.0.0
#
# Two stages: the first builds the project's wheel and installs it with its dependencies into a
# virtualenv; the second is the slim Python runtime with only that virtualenv copied in (no
# compilers, no pip, no build tools). It runs as the numeric non-root user 10001 and writes
# nothing outside /var/lib/letta-exporter (for LETTA_EXPORTER_STATE_FILE) and /tmp, so it runs
# with a read-only root filesystem.
#
# BASE_IMAGE pins the Python minor version and Debian release; pin a digest for reproducible
# production builds: --build-arg BASE_IMAGE=python:3.11-slim-bookworm@sha256:<digest>
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what the wheel needs (.dockerignore keeps the rest of the repository out of the context).
COPY . /src

# Build the wheel, then install it and its dependencies (wheels only: nothing is compiled) into a
# virtualenv at the path it keeps in the runtime image; drop pip and setuptools from it afterwards.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
    && python -m venv /opt/letta-exporter \
    && /opt/letta-exporter/bin/pip install --no-cache-dir --only-binary=:all: /dist/*.whl \
    && /opt/letta-exporter/bin/pip uninstall --yes pip setuptools \
    && /opt/letta-exporter/bin/letta-exporter --version

FROM ${BASE_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="letta-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Letta agent runs (Letta Runs API)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric user and group, so Kubernetes' runAsNonRoot can verify them; the state directory
# belongs to it (a named volume mounted there inherits the ownership).
RUN groupadd --system --gid 10001 letta-exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin letta-exporter \
    && mkdir -p /var/lib/letta-exporter \
    && chown 10001:10001 /var/lib/letta-exporter \
    && chmod 0750 /var/lib/letta-exporter

COPY --from=build /opt/letta-exporter /opt/letta-exporter

ENV PATH=/opt/letta-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LETTA_EXPORTER_LISTEN_ADDRESS=0.0.0.0 \
    LETTA_EXPORTER_PORT=8284

WORKDIR /var/lib/letta-exporter
USER 10001:10001
EXPOSE 8284

# /healthz answers (without auth) as long as the process serves HTTP. No curl in a slim image, so
# Python asks; over HTTPS when LETTA_EXPORTER_WEB_CONFIG_FILE turns TLS on (not verified: it is
# the container asking itself). Set the port with LETTA_EXPORTER_PORT, not --port, to keep this right.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request as r; w = os.environ.get('LETTA_EXPORTER_WEB_CONFIG_FILE'); s = 'https' if w and 'tls_server_config' in open(w).read() else 'http'; r.urlopen('%s://127.0.0.1:%s/healthz' % (s, os.environ.get('LETTA_EXPORTER_PORT', '8284')), timeout=4, context=ssl._create_unverified_context())"]

ENTRYPOINT ["letta-exporter"]

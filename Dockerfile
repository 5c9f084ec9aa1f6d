# The operator image: `make image` (needs Docker). Multi-stage: the build stage makes a
# virtual environment with the package and its dependencies; the runtime stage copies
# only that, and runs as an unprivileged user (the chart adds a read-only root
# filesystem and drops every capability).
#
# The base is pinned by digest (python:3.11.10-slim-bookworm as published at the time
# of writing; the tag is there for people, the digest is what Docker pulls). To move
# it: `docker buildx imagetools inspect python:3.11-slim-bookworm`, then set both.
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

FROM ${PYTHON_IMAGE} AS build
# Byte-compiled here: at run time the root filesystem is read-only.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# operator/ai_incident_operator/crds links to ../../crds: both go in, and the wheel
# carries the CRDs (`aiincident validate` reads their schemas).
COPY pyproject.toml README.md MANIFEST.in ./
COPY crds/ crds/
COPY operator/ operator/
RUN python -m venv /opt/aiincident \
 && /opt/aiincident/bin/pip install . \
 && /opt/aiincident/bin/aiincident --version \
 && test -f "$(/opt/aiincident/bin/python -c 'import ai_incident_operator, pathlib; print(pathlib.Path(ai_incident_operator.__file__).parent / "crds" / "aiincident.io_aiincidents.yaml")')"

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ai-incident-operator" \
      org.opencontainers.image.description="Incident response for AI systems on Kubernetes" \
      org.opencontainers.image.source="https://github.com/ai-incident-operator/ai-incident-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 aiincident \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin aiincident
COPY --from=build /opt/aiincident /opt/aiincident
ENV PATH=/opt/aiincident/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# The intake (/api/v1/alerts, /readyz, /metrics) and kopf's liveness (/healthz).
EXPOSE 8080 8081
ENTRYPOINT ["aiincident"]
CMD ["run"]

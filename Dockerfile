# syntax=docker/dockerfile:1
# Build stage: a wheel of mdactors and its dependencies, compiled where needed.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/mdactors
ENV PATH=/opt/mdactors/bin:$PATH
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir .

# Runtime stage: the virtualenv only, run as an unprivileged user.
FROM python:3.11-slim
LABEL org.opencontainers.image.title="mdactors" \
      org.opencontainers.image.description="Shared, realistic, controllable market-data simulator"
# wget: the ecosystem's orchestrator probes with `wget --quiet --tries=1 --spider .../api/v1/health`.
# Unpinned on purpose: the slim base moves with Debian point releases, which drop old revisions.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 mdactors \
 && useradd --system --uid 10001 --gid mdactors --no-create-home mdactors
COPY --from=build /opt/mdactors /opt/mdactors
ENV PATH=/opt/mdactors/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    HTTP_PORT=8080 \
    GRPC_PORT=50051 \
    WS_PORT=8765
USER 10001:10001
WORKDIR /home/mdactors
EXPOSE 8080 50051 8765
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/v1/health' % os.environ.get('HTTP_PORT', '8080'), timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["mdactors"]
CMD ["serve"]

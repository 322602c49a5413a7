# syntax=docker/dockerfile:1.7
# nluserve serving image: ONNX Runtime and the HTTP stack only. PyTorch, the tokenizer
# converters and the rest of the `train` extra never enter it (`uv sync --no-dev` without
# `--extra train`); tests/integration/deploy/test_container.py pins that.
#
#   docker build -t nluserve:0.1.0 .
#   docker run --rm -p 127.0.0.1:8000:8000 nluserve:0.1.0
#
# Everything is configured with NLUSERVE_* variables (src/nluserve/settings.py).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# --- build: resolve exactly uv.lock into /app/.venv -------------------------------------------
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# --- runtime: the virtual environment, a non-root user, nothing else ------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 nluserve \
    && useradd --system --uid 10001 --gid nluserve --no-create-home \
       --home-dir /var/lib/nluserve --shell /usr/sbin/nologin nluserve \
    && install -d -o nluserve -g nluserve -m 0700 /var/lib/nluserve
COPY --from=build /app/.venv /app/.venv
# Inside a container the container network is the boundary, so listen on every interface;
# publish the port on the host's loopback (or only to the proxy's network), never on 0.0.0.0.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NLUSERVE_HOST=0.0.0.0 \
    NLUSERVE_PORT=8000 \
    NLUSERVE_DATA_DIR=/var/lib/nluserve
USER 10001:10001
WORKDIR /var/lib/nluserve
VOLUME ["/var/lib/nluserve"]
EXPOSE 8000
# Liveness only (/healthz): readiness (/readyz) belongs to whoever routes traffic.
HEALTHCHECK --interval=30s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('NLUSERVE_PORT', '8000'), timeout=2)"]
# gunicorn drains on SIGTERM within NLUSERVE_GRACEFUL_TIMEOUT_S: give `docker stop -t` more.
STOPSIGNAL SIGTERM
ENTRYPOINT ["nluserve"]
CMD ["serve"]

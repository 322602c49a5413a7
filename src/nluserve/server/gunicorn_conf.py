"""Gunicorn settings (``gunicorn -c python:nluserve.server.gunicorn_conf nluserve.server.asgi:app``).

Values come from the same NLUSERVE_* settings as everything else.
- preload_app: the app (and its models) is built once in the master before fork, so N workers
  share one copy of the weights (copy-on-write pages that nobody writes); not with
  ``NLUSERVE_DEVICE=cuda``, where each worker opens its own CUDA session after the fork;
- worker_class: uvicorn's ASGI worker (``server/worker.py``: recycled softly, see below);
  inference threads start in each worker's lifespan;
- timeout / graceful_timeout: a stuck worker is replaced; on SIGTERM in-flight calls get
  ``graceful_timeout_s`` to finish while the listening socket is closed;
- max_requests with jitter: workers are recycled one at a time, never all at once; a worker
  due answers ``Connection: close`` for two seconds before it stops, so clients move their
  kept-alive connections to the other workers without a reset (``api/middleware.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nluserve.server.run import KEEPALIVE_S
from nluserve.settings import Settings

_settings = Settings()

bind = (
    [f"{_settings.host}:{_settings.port}"]
    if not _settings.host.startswith("unix:")
    else [_settings.host]
)
workers = _settings.workers
worker_class = "nluserve.server.worker.RecyclingWorker"
preload_app = _settings.preload_models()
timeout = int(_settings.request_timeout_s * 2 + 10)
# The worker's own uvicorn waits graceful_timeout_s for its calls and then answers what is left
# with 503 (server/worker.py); the master kills it only after that has had time to go out.
graceful_timeout = int(_settings.graceful_timeout_s) + 5
keepalive = KEEPALIVE_S
max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests // 10
accesslog = None  # nluserve logs its own access lines (with request ids, without bodies)
errorlog = "-"
loglevel = _settings.log_level
# The master's own lines (starting, booting worker, worker timeout) in the same format and on
# the same stream as everything else, not gunicorn's plain text on stderr. Gunicorn applies
# this after its own set-up; dictConfig drops the handlers it had given its loggers.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "nluserve": {
            "()": "nluserve.observability.logging.formatter",
            "as_json": _settings.log_json,
        }
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "nluserve",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"level": _settings.log_level.upper(), "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": _settings.log_level.upper(), "handlers": [], "propagate": True},
        "gunicorn.access": {"handlers": [], "propagate": True},
    },
}
# Gunicorn 25.1+ opens a control socket in $HOME/.gunicorn for `gunicornc`; nluserve does not
# use it, and a socket that can stop workers is one more thing to protect.
control_socket_disable = True
forwarded_allow_ips = ",".join(_settings.trusted_proxies)
proxy_allow_ips = forwarded_allow_ips


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges and fold its counters into the shared archive."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess

        from nluserve.observability.metrics import archive_dead_worker

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
        archive_dead_worker(worker.pid, Path(directory))

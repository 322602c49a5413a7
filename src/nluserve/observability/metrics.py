"""Prometheus metrics, correct across gunicorn workers via prometheus_client's multiprocess mode.

``nluserve serve`` sets PROMETHEUS_MULTIPROC_DIR before this module is imported when it runs
several workers; each worker then writes its own files and /metrics aggregates them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from nluserve.runtime.batcher import BatchObserver

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter("nluserve_http_requests_total", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram(
    "nluserve_http_request_duration_seconds", "HTTP latency", ["route", "method"], buckets=_LATENCY
)
INFERENCE = Histogram(
    "nluserve_inference_duration_seconds", "Inference time per batch", ["model"], buckets=_LATENCY
)
BATCH_SIZE = Histogram(
    "nluserve_batch_size_texts",
    "Texts per inference batch",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
QUEUE_DEPTH = Gauge(
    "nluserve_queue_depth", "Calls waiting per model", ["model"], multiprocess_mode="livesum"
)
REJECTED = Counter("nluserve_rejected_total", "Calls rejected or dropped, by reason", ["reason"])
MODEL_INFO = Gauge(
    "nluserve_model_info", "Served models", ["model", "version", "task"], multiprocess_mode="max"
)
INFERENCE_RESTARTS = Counter(
    "nluserve_inference_process_restarts_total",
    "Times the shared inference process died and was restarted",
)
INFERENCE_PROCESS_RUN = Histogram(
    "nluserve_inference_process_run_seconds",
    "Graph run time inside the shared inference process (the workers' inference time adds the "
    "round trip and the wait for a free run)",
    ["model"],
    buckets=_LATENCY,
)
INFERENCE_PROCESS_MERGED = Histogram(
    "nluserve_inference_process_batches_per_run",
    "Workers' batches merged into one graph run by the shared inference process",
    ["model"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
)
INFERENCE_PROCESS_FAILURES = Counter(
    "nluserve_inference_process_failures_total",
    "Runs the shared inference process answered with an error",
    ["model"],
)
QUOTA_STORE_ERRORS = Counter(
    "nluserve_quota_store_errors_total", "Quota store failures", ["backend"]
)


class MetricsObserver(BatchObserver):
    """Feeds batch events from the batcher into the histograms above."""

    def __init__(self) -> None:
        self._depth: dict[str, Any] = {}

    def batch(self, model: str, size: int, seconds: float) -> None:
        INFERENCE.labels(model).observe(seconds)
        BATCH_SIZE.labels(model).observe(size)

    def queue(self, model: str, depth: int) -> None:
        # Set by the worker whose queue changed, whenever it changes: set at scrape time by
        # whichever worker answered, the other workers' values went stale in the sum.
        child = self._depth.get(model)
        if child is None:
            child = self._depth[model] = QUEUE_DEPTH.labels(model)
        child.set(depth)


def archive_dead_worker(pid: int, directory: Path) -> None:
    """Fold a dead worker's counters and histograms into one archive file, then drop its files.

    prometheus_client keeps every dead process's files and reads them all on each scrape, so
    they must stay summed in; but gunicorn recycles workers (max_requests), and a file per
    recycle made the directory grow without end and each scrape slower. Counters and
    histogram buckets only ever add up across processes, so their sum is what the collector
    would have reported anyway. The master calls this, one worker at a time.
    """
    from prometheus_client.mmap_dict import MmapedDict

    for kind in ("counter", "histogram"):
        dead = directory / f"{kind}_{pid}.db"
        if not dead.exists():
            continue
        archive = MmapedDict(str(directory / f"{kind}_archive.db"))  # type: ignore[no-untyped-call]
        try:
            for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(dead)):  # type: ignore[no-untyped-call]
                total, _ = archive.read_value(key)  # type: ignore[no-untyped-call]
                archive.write_value(key, total + value, timestamp)  # type: ignore[no-untyped-call]
        finally:
            archive.close()  # type: ignore[no-untyped-call]
        dead.unlink()
    # Gauges: the live ones are gone with the process (mark_process_dead); model info is a max
    # over workers that all serve the same models.
    (directory / f"gauge_max_{pid}.db").unlink(missing_ok=True)


def render() -> tuple[bytes, str]:
    """The exposition text: aggregated over worker processes when running multi-process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

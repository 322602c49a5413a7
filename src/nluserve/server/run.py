"""Starting the service: uvicorn in-process for one worker, gunicorn for several."""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any

from nluserve.settings import Settings

# Idle keep-alive connections stay open longer than the proxies in front keep theirs (nginx's
# upstream keep-alive 60 s, ingress-nginx's 60 s, the rendered Caddyfile's): if the server
# closed first, a proxy could send a POST on a connection as it closes, and answer 502
# without retrying it. uvicorn's default is 5 s.
KEEPALIVE_S = 75

# A graph this large is transformer-size: one run takes tens of milliseconds on a CPU, so the
# inference process's round trip (about 0.6 ms a batch) is lost in it, while its one queue for
# all workers' calls cut the BERT-base half-load p99 from 7.2-7.9x to 4.0-4.3x the single-call
# latency (docs/benchmarks.md). The bundled models (16 MB) pay 5-20 % a batch for it instead.
LARGE_GRAPH_BYTES = 64 << 20


def settle_inference_process(settings: Settings) -> Settings:
    """Decide ``auto``: on with cuda and several workers, or on a CPU with several workers when
    a served graph is transformer-size; off otherwise."""
    if settings.inference_process != "auto":
        return settings
    on = settings.use_inference_process() or (
        settings.device == "cpu"
        and settings.workers > 1
        and _largest_graph(settings.models) >= LARGE_GRAPH_BYTES
    )
    return settings.model_copy(update={"inference_process": "on" if on else "off"})


def _largest_graph(refs: list[str]) -> int:
    from nluserve.models.store import configured

    sizes = [0]
    for entry in configured(refs).values():
        if entry is not None:
            with contextlib.suppress(OSError):  # a missing graph fails the load, with its reason
                sizes.append((entry[0] / entry[1].graph).stat().st_size)
    return max(sizes)


def prepare_metrics_dir(settings: Settings) -> None:
    """Multi-process Prometheus needs a fresh shared directory before prometheus_client loads."""
    path = settings.data_dir.resolve() / "prometheus"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; in-flight calls get the graceful timeout to finish."""
    from nluserve.observability.logging import configure

    configure(settings.log_level, settings.log_json)
    settings = settle_inference_process(settings)
    host = None
    if settings.use_inference_process():
        from nluserve.observability import metrics
        from nluserve.runtime.remote import InferenceHost

        # Before the app is built: the workers' models connect to it (see runtime/host.py).
        threads, slots = settings.inference_layout()
        host = InferenceHost(
            settings.models,
            settings.device,
            threads=threads,
            slots=slots,
            merge=settings.inference_merge,
            max_rows=settings.max_batch_texts,
            batch_tokens=settings.batch_tokens,
            on_restart=metrics.INFERENCE_RESTARTS.inc,
        ).start()
    try:
        _serve(settings)
    finally:
        if host is not None:
            host.stop()


def _serve(settings: Settings) -> None:
    if settings.workers == 1:
        import uvicorn

        from nluserve.api.app import create_app
        from nluserve.server.protocol import http_protocol

        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(settings.graceful_timeout_s),
            timeout_keep_alive=KEEPALIVE_S,
            http=http_protocol(settings.client_timeout_s),
            forwarded_allow_ips=",".join(settings.trusted_proxies),
            proxy_headers=True,
        )
        return
    _gunicorn(settings)


def _gunicorn(settings: Settings) -> None:
    from gunicorn.app.base import BaseApplication

    from nluserve.api.app import create_app
    from nluserve.server import gunicorn_conf

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key in (
                "worker_class",
                "preload_app",
                "timeout",
                "graceful_timeout",
                "keepalive",
                "max_requests",
                "max_requests_jitter",
                "accesslog",
                "errorlog",
                "loglevel",
                "logconfig_dict",
                "forwarded_allow_ips",
                "proxy_allow_ips",
                "child_exit",
                "control_socket_disable",
            ):
                if key in self.cfg.settings:
                    self.cfg.set(key, getattr(gunicorn_conf, key))
            self.cfg.set("workers", settings.workers)
            self.cfg.set("preload_app", settings.preload_models())
            bind = (
                settings.host
                if settings.host.startswith("unix:")
                else f"{settings.host}:{settings.port}"
            )
            self.cfg.set("bind", [bind])

        def load(self) -> Any:
            return create_app(settings)

    Application().run()

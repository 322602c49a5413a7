"""The gunicorn worker: uvicorn's, recycled without dropping requests on kept-alive connections."""

from __future__ import annotations

import fcntl
import os
import sys
from typing import Any, ClassVar

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from nluserve.api.middleware import KeepAliveLimit
from nluserve.server.protocol import http_protocol
from nluserve.settings import Settings


class RecyclingWorker(UvicornWorker):  # type: ignore[misc]
    """Hands gunicorn's max_requests (with this worker's jitter) to the app's drain.

    uvicorn would stop at the limit and close idle keep-alive connections at once, racing the
    requests clients are sending on them. Instead, when the limit is reached this worker stops
    accepting (new connections go to the other workers), KeepAliveLimit answers
    ``Connection: close`` for a moment so clients move theirs, and then the worker stops
    gracefully.

    One worker drains at a time: workers that start together and share the load reach their
    limits within a second of each other, jitter or not, and two draining at once would leave
    nobody accepting. The first takes an exclusive lock on a file in the data directory and
    holds it until it exits (the kernel drops it with the process); the others wait for it.
    """

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        "http": http_protocol(Settings().client_timeout_s),
        # uvicorn_worker leaves it unset (wait for ever), so gunicorn's SIGKILL at its own
        # graceful timeout cut every waiting call off unanswered; this one ends first.
        "timeout_graceful_shutdown": int(Settings().graceful_timeout_s),
        # uvicorn calls callback_notify (below) this often: the heartbeat, and the check that
        # the master still lives.
        "timeout_notify": 1,
    }

    def init_process(self) -> None:
        # After the fork: this worker's own limit, drawn by gunicorn with its jitter.
        if self.max_requests < sys.maxsize:
            KeepAliveLimit.recycle_after = self.max_requests
            lock = Settings().data_dir / "recycle.lock"
            self._recycle_lock = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
            KeepAliveLimit.may_drain = self._take_recycle_lock
        self.config.limit_max_requests = None
        super().init_process()

    def _take_recycle_lock(self) -> bool:
        try:
            fcntl.flock(self._recycle_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    async def callback_notify(self) -> None:
        # gunicorn's own workers stop when their master is gone; uvicorn_worker's do not, so
        # a SIGKILLed master left them serving (and holding the port) for good.
        if os.getppid() != self.ppid:
            self.log.warning("the master process is gone: stopping worker %s", self.pid)
            server = getattr(self, "_server", None)
            if server is not None:
                server.should_exit = True
            return
        self.notify()

    async def _serve(self) -> None:
        # UvicornWorker._serve (uvicorn-worker 0.4), keeping the Server so that the drain can
        # stop its accepting. Closing this worker's listening sockets leaves the master's and
        # the other workers' copies open.
        self.config.app = self.wsgi
        server = Server(config=self.config)
        self._server = server
        self._install_sigquit_handler()

        def stop_accepting() -> None:
            for listening in server.servers:
                listening.close()

        KeepAliveLimit.on_drain = stop_accepting
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

"""The inference service: loaded models, their batchers, and one predict call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from nluserve.errors import InferenceUnavailableError, ModelNotFoundError, NluserveError
from nluserve.runtime.batcher import Batcher, BatchObserver, Slots, keep_labels
from nluserve.runtime.model import Model, load_model
from nluserve.runtime.results import Result
from nluserve.settings import Settings


class WrongTaskError(NluserveError):
    """A shortcut route was pointed at a model of another task."""


@dataclass(frozen=True)
class Prediction:
    """The results of one call with what produced them."""

    model: Model
    results: list[Result]
    seconds: float


PROBE_TIMEOUT_S = 2.0  # a readiness check's answer, or it counts as unreachable


class InferenceService:
    """Owns models for the process lifetime; batchers live between start() and stop()."""

    def __init__(self, models: dict[str, Model], settings: Settings) -> None:
        self.models = models
        self.settings = settings
        self.batchers: dict[str, Batcher] = {}
        # Set once a shutdown has begun: a call cancelled by the server from then on was cut
        # off by the shutdown (503 shutting-down), not by its client.
        self.draining = False

    @classmethod
    def load(cls, settings: Settings) -> InferenceService:
        """Load every configured model. Runs before workers fork, so the weights stay shared.

        Sessions use one intra-op thread: parallelism comes from several runner threads per
        process calling the same session, so no ORT thread pool is lost across fork().
        """
        models = {}
        remote = settings.use_inference_process()
        for ref in settings.models:
            model = load_model(ref, threads=1, device=settings.device, remote=remote)
            models[model.name] = model
        return cls(models, settings)

    def probes(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """Readiness checks for what the models depend on: the inference process, if used."""
        from nluserve.runtime.remote import RemoteBackend

        remote = [m.backend for m in self.models.values() if isinstance(m.backend, RemoteBackend)]
        if not remote:
            return {}
        # One thread of its own, and one check at a time: a frozen process (SIGSTOP, swapped
        # out) used to hold a thread of the shared pool per probe until none was left for the
        # key lookups, and every authenticated call hung with it.
        checker = ThreadPoolExecutor(1, thread_name_prefix="probe-inference")
        last: Future[None] | None = None

        def ping_all() -> None:
            for backend in remote:
                backend.ping(PROBE_TIMEOUT_S)

        async def ping() -> None:
            nonlocal last
            if last is not None and not last.done():
                raise InferenceUnavailableError("the last check is still waiting for an answer")
            last = checker.submit(ping_all)
            await asyncio.wait_for(asyncio.wrap_future(last), PROBE_TIMEOUT_S)

        return {"inference-process": ping}

    def start(self, observer: BatchObserver | None = None) -> None:
        """Create one batcher per model (after fork: it owns threads)."""
        s = self.settings
        runners = s.threads_per_process()
        # In-process, every model's runs share this process's share of the cores; with the
        # inference process, its run queue does that for all models and workers together.
        shared = None if s.use_inference_process() else Slots(runners)
        self.batchers = {
            name: Batcher(
                model,
                runners,
                s.max_batch_texts,
                s.batch_tokens,
                s.max_queue_chars,
                observer,
                slots=shared,
            )
            for name, model in self.models.items()
        }

    async def stop(self, timeout: float) -> None:
        """Finish queued work within ``timeout`` seconds, then release the threads."""
        self.draining = True
        await asyncio.gather(*(b.close(timeout) for b in self.batchers.values()))

    def get(
        self, name: str, task: str | None = None, visible: Callable[[Model], bool] | None = None
    ) -> Model:
        """A served model by name; ``task`` checks it is the right kind. The not-found message
        lists only the models ``visible`` allows: one tenant must not learn of another's."""
        model = self.models.get(name)
        if model is None:
            shown = name if len(name) <= 100 else name[:100] + "…"  # the client's text, bounded
            names = [n for n, m in self.models.items() if visible is None or visible(m)]
            raise ModelNotFoundError(
                f"unknown model {shown!r}; models you may call: {', '.join(names) or 'none'}"
            )
        if task and model.task != task:
            raise WrongTaskError(f"model {name!r} is a {model.task} model, not {task}")
        return model

    async def predict(
        self,
        model: Model,
        texts: Sequence[str],
        labels: Sequence[str] | None,
        request_id: str,
        timeout: float | None = None,
    ) -> Prediction:
        """Validate the schema, queue the texts, wait for this call's own results."""
        codes = model.resolve_labels(labels) if labels else None
        started = time.monotonic()
        deadline = started + (timeout or self.settings.request_timeout_s)
        results = await self.batchers[model.name].submit(texts, deadline, request_id)
        return Prediction(model, keep_labels(results, codes), time.monotonic() - started)

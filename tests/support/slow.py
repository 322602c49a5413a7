"""Backend wrappers for serving tests: record every batch, run slowly, or hold until released.

The recording answers "did this text ever reach inference?"; the gate makes "a batch is running
right now" a fact a test can wait for instead of a sleep it hopes is long enough.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from nluserve.runtime.model import Backend, Model


class SlowBackend:
    """Wraps a backend: records each batch's texts, then waits for the gate and sleeps.

    With ``only``, just the batches holding a text that contains it wait and sleep.
    """

    def __init__(
        self,
        inner: Backend,
        delay: float = 0.0,
        gate: threading.Event | None = None,
        only: str | None = None,
    ) -> None:
        self.inner = inner
        self.delay = delay
        self.gate = gate
        self.only = only
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.holding = threading.Event()
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        texts = [str(t) for t in feeds["texts"]]
        with self._lock:
            self.batches.append(texts)
        self.started.set()
        if self.only is None or any(self.only in t for t in texts):
            if self.gate is not None:
                self.holding.set()
                self.gate.wait(timeout=10)
            if self.delay:
                time.sleep(self.delay)
        out: np.ndarray = self.inner.run(feeds)
        return out

    def saw(self, needle: str) -> bool:
        """Whether any batch so far held a text (or window) containing ``needle``."""
        with self._lock:
            return any(needle in text for batch in self.batches for text in batch)

    def texts(self) -> list[str]:
        """Every text (or window) the backend ran, in order."""
        with self._lock:
            return [text for batch in self.batches for text in batch]

    def batch_sizes(self) -> list[int]:
        """Texts per backend call so far."""
        with self._lock:
            return [len(batch) for batch in self.batches]


def slow_model(
    model: Model,
    delay: float = 0.0,
    gate: threading.Event | None = None,
    only: str | None = None,
) -> tuple[Model, SlowBackend]:
    """The same model behind a :class:`SlowBackend` (returned too, for inspection)."""
    backend = SlowBackend(model.backend, delay, gate, only)
    wrapped = Model(
        model.manifest,
        backend,
        model.encoder,
        path=model.path,
        batch_tokens=model.batch_tokens,
        max_batch=model.max_batch,
        decoder=model.decoder,
    )
    return wrapped, backend

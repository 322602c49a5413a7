"""A real graph, made slower, that records how many of its runs overlap."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np


class OverlapGraph:
    """Wraps a session: each run takes ``delay_s`` longer (as a larger graph would, and long
    enough for other callers' runs to arrive meanwhile); ``most`` is the most runs in progress
    at one time, ``runs`` how many ran."""

    def __init__(self, backend: Any, delay_s: float = 0.02) -> None:
        self.backend = backend
        self.input_names = backend.input_names
        self.delay_s = delay_s
        self.running = 0
        self.most = 0
        self.runs = 0
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with self._lock:
            self.running += 1
            self.runs += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.delay_s)
            return np.asarray(self.backend.run(feeds))
        finally:
            with self._lock:
                self.running -= 1

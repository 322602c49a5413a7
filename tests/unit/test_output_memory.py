"""A long call must not hold every window's raw graph output until its last run: a span
model's output is labels x length x length floats a window, and a 100,000-character call to
`medical` held over a gigabyte that the worker then kept. Each run's output must be gone when
the next run starts (what a run leaves is its decoded spans)."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import pytest

from nluserve import load_model
from nluserve.runtime.model import Model


class _Watched:
    """A session whose outputs are watched: how many earlier ones were alive at each run."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.input_names = backend.input_names
        self.outputs: list[weakref.ref[np.ndarray]] = []
        self.alive_at_run: list[int] = []

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        self.alive_at_run.append(sum(ref() is not None for ref in self.outputs))
        out = np.array(self.backend.run(feeds))  # an array of our own, so weakref works
        self.outputs.append(weakref.ref(out))
        return out


@pytest.mark.parametrize("name", ["medical", "general"])
def test_each_runs_output_is_released_before_the_next_run(name: str) -> None:
    bundled = load_model(name, threads=1)
    watched = _Watched(bundled.backend)
    model = Model(bundled.manifest, watched, bundled.encoder, path=bundled.path)
    text = ("患者自述发热、咳嗽三天，张三陪同前往北京协和医院就诊。" * 300)[:6000]
    got = model.predict([text])
    assert len(watched.alive_at_run) >= 3  # several runs
    assert watched.alive_at_run == [0] * len(watched.alive_at_run)
    assert got == bundled.predict([text])  # and the answer is the same

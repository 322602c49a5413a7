"""A batch of mixed lengths runs in length-sorted runs whose padding stays bounded."""

from __future__ import annotations

import numpy as np

from nluserve.runtime.model import Model, max_padding
from nluserve.runtime.results import NerResult
from tests.support.serving import general


class WidthRecorder:
    """Wraps a backend and records the padded width of every run."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.runs: list[list[int]] = []

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        self.runs.append([len(str(t)) for t in feeds["texts"]])
        out: np.ndarray = self.inner.run(feeds)  # type: ignore[attr-defined]
        return out


def test_runs_never_pad_a_window_past_the_bound_and_answers_stay_in_order() -> None:
    plain = general(max_length=200)
    recorder = WidthRecorder(plain.backend)
    model = Model(plain.manifest, recorder, plain.encoder)
    texts = [("张三在北京" * 40)[:n] for n in (3, 120, 5, 60, 200, 8, 33, 90, 150, 1, 17, 64)]
    results = model.predict(texts)
    assert sum(len(run) for run in recorder.runs) == len(texts)
    for run in recorder.runs:
        assert max(run) <= max_padding(min(run)), run
    assert len(recorder.runs) > 1
    singles = [plain.predict([t])[0] for t in texts]
    for got, want in zip(results, singles, strict=True):
        assert isinstance(got, NerResult) and isinstance(want, NerResult)
        assert [(e.start, e.end, e.label) for e in got.entities] == [
            (e.start, e.end, e.label) for e in want.entities
        ]


def test_short_windows_share_a_run_even_when_their_ratio_is_large() -> None:
    assert max_padding(1) == 17
    assert max_padding(64) == 96

"""Temperature scaling for classifiers (Guo et al. 2017, "On Calibration of Modern Neural Networks").

A classifier mixed from a net trained to near-zero loss and a linear model answers 0.99+ for
almost everything, right or wrong. Dividing its logits by one number T > 1, chosen to minimise
the negative log-likelihood of the validation split, makes the scores mean what they say
without changing the prediction for a text of one window: the argmax of logits / T is the
argmax of the logits. (A text longer than the model's max_length averages its windows'
probabilities, so its prediction can move; the trainer scores validation after fitting T.)

T is fitted through the runtime's own predict path (the manifest's ``temperature``), so what is
measured is what is served. Calibration is reported as NLL and ECE (15 equal-width confidence
bins). The ECE of the fitted T on the split it was fitted on is optimistic, so a two-fold
cross-fit is reported too: T fitted on one half of the validation split, ECE measured on the
other, averaged over both directions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from nluserve.data.readers import Example
from nluserve.runtime.results import ClassResult

# Log-spaced: calibration quality is flat near the optimum, so a grid is as good as a solver.
GRID = tuple(round(float(t), 3) for t in np.geomspace(0.5, 32.0, 49))

Predict = Callable[[float], Sequence[ClassResult]]


def fit(predict: Predict, examples: Sequence[Example]) -> dict[str, float]:
    """The temperature with the lowest validation NLL, and calibration before and after."""
    gold = [e.label or "" for e in examples]
    table = {t: _probs(predict(t), gold) for t in (1.0, *GRID)}
    best = min(GRID, key=lambda t: _nll(table[t]))
    half = len(gold) // 2
    halves = (slice(0, half), slice(half, None))
    cross = []
    for fit_part, test_part in (halves, halves[::-1]):
        t = min(GRID, key=lambda t: _nll(table[t][fit_part]))
        cross.append(_ece(table[t][test_part]))
    return {
        "temperature": best,
        "nll_before": round(_nll(table[1.0]), 4),
        "nll_after": round(_nll(table[best]), 4),
        "ece_before": round(100 * _ece(table[1.0]), 2),
        "ece_after": round(100 * _ece(table[best]), 2),
        "ece_after_cross_fitted": round(100 * float(np.mean(cross)), 2),
    }


def _probs(results: Sequence[ClassResult], gold: list[str]) -> np.ndarray:
    """Rows of (probability of the gold label, confidence of the prediction, correct?)."""
    return np.array(
        [
            (r.scores.get(g, 0.0), r.score, float(r.label == g))
            for r, g in zip(results, gold, strict=True)
        ]
    )


def _nll(rows: np.ndarray) -> float:
    # Scores are served rounded to 4 decimals: 1e-4 is the smallest a wrong answer can get.
    return float(-np.mean(np.log(np.clip(rows[:, 0], 1e-4, 1.0))))


def _ece(rows: np.ndarray, bins: int = 15) -> float:
    conf, correct = rows[:, 1], rows[:, 2]
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(float(correct[mask].mean()) - float(conf[mask].mean()))
    return total

"""Temperature scaling: fitted on overconfident scores, it lowers NLL and ECE, never flips a label."""

from __future__ import annotations

import numpy as np

from nluserve.data.readers import Example
from nluserve.runtime.decode import softmax
from nluserve.runtime.results import ClassResult
from nluserve.train import temperature

LABELS = ("negative", "positive")


def overconfident(n: int, seed: int = 0) -> tuple[list[Example], np.ndarray]:
    """Gold labels and logits 6x sharper than the truth: P(correct) = softmax(z / 6)."""
    rng = np.random.default_rng(seed)
    true_margin = rng.normal(0.0, 2.0, n)
    gold = (rng.random(n) < 1 / (1 + np.exp(-true_margin))).astype(int)
    logits = np.stack([np.zeros(n), 6.0 * true_margin], axis=1)
    return [Example(text=f"t{i}", label=LABELS[g]) for i, g in enumerate(gold)], logits


def classify(logits: np.ndarray, t: float) -> list[ClassResult]:
    out = []
    for row in logits:
        p = softmax(row / t)
        top = int(np.argmax(p))
        scores = {lab: round(float(q), 4) for lab, q in zip(LABELS, p, strict=True)}
        out.append(ClassResult(LABELS[top], round(float(p[top]), 4), scores))
    return out


def test_an_overconfident_classifier_gets_a_temperature_near_the_truth() -> None:
    examples, logits = overconfident(4000)
    found = temperature.fit(lambda t: classify(logits, t), examples)
    assert 4.0 < found["temperature"] < 9.0  # the logits were made 6x too sharp
    assert found["nll_after"] < 0.8 * found["nll_before"]
    assert found["ece_after"] < found["ece_before"] / 2
    assert found["ece_after_cross_fitted"] < found["ece_before"] / 2


def test_scaling_never_changes_a_prediction() -> None:
    _, logits = overconfident(500, seed=1)
    before = [r.label for r in classify(logits, 1.0)]
    for t in temperature.GRID:
        assert [r.label for r in classify(logits, t)] == before


def test_a_calibrated_classifier_keeps_a_temperature_near_one() -> None:
    examples, logits = overconfident(4000, seed=2)
    found = temperature.fit(lambda t: classify(logits / 6.0, t), examples)
    assert 0.7 < found["temperature"] < 1.4

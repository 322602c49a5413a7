"""Strict micro P/R/F1 for NER (exact span and type, nested gold counts) and accuracy/macro-F1."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from nluserve.data.readers import Example
from nluserve.runtime.results import ClassResult, NerResult, Result


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(100 * p, 2), "recall": round(100 * r, 2), "f1": round(100 * f, 2)}


def score_ner(gold: Sequence[Example], predicted: Sequence[Result]) -> dict[str, object]:
    """Percent scores with a per-label table; every gold span counts, nested or not."""
    tp: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    for ex, res in zip(gold, predicted, strict=True):
        if not isinstance(res, NerResult):
            raise TypeError("NER scoring needs NER results")
        g = {(s.start, s.end, s.label) for s in ex.spans}
        p = {(e.start, e.end, e.label) for e in res.entities}
        for _, _, label in g:
            n_gold[label] += 1
        for _, _, label in p:
            n_pred[label] += 1
        for _, _, label in g & p:
            tp[label] += 1
    per_label = {
        label: {**_prf(tp[label], n_pred[label], n_gold[label]), "support": n_gold[label]}
        for label in sorted(set(n_gold) | set(n_pred))
    }
    total = _prf(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    return {**total, "per_label": per_label, "n": len(gold), "n_gold": sum(n_gold.values())}


def score_classification(gold: Sequence[Example], predicted: Sequence[Result]) -> dict[str, object]:
    """Accuracy and macro-F1 in percent."""
    pairs = []
    for ex, res in zip(gold, predicted, strict=True):
        if not isinstance(res, ClassResult):
            raise TypeError("classification scoring needs class results")
        pairs.append((ex.label or "", res.label))
    labels = sorted({g for g, _ in pairs} | {p for _, p in pairs})
    f1s = []
    per_label = {}
    for label in labels:
        tp = sum(1 for g, p in pairs if g == p == label)
        n_pred = sum(1 for _, p in pairs if p == label)
        n_gold = sum(1 for g, _ in pairs if g == label)
        scores = _prf(tp, n_pred, n_gold)
        per_label[label] = {**scores, "support": n_gold}
        f1s.append(scores["f1"])
    correct = sum(1 for g, p in pairs if g == p)
    return {
        "accuracy": round(100 * correct / len(pairs), 2) if pairs else 0.0,
        "macro_f1": round(sum(f1s) / len(f1s), 2) if f1s else 0.0,
        "per_label": per_label,
        "n": len(pairs),
    }

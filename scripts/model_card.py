"""Print a Markdown card for an installed model from its manifest (used for docs/models.md).

Usage: uv run python scripts/model_card.py general medical sentiment
"""

from __future__ import annotations

import sys

from nluserve.models import store


def card(name: str) -> str:
    path = store.resolve(name)
    m = store.read_manifest(path)
    size = sum(p.stat().st_size for p in path.iterdir() if p.is_file()) / 2**20
    val = m.metrics.get("validation", {})
    lines = [
        f"### `{m.name}` {m.version}",
        "",
        f"- task: {m.task}; architecture: {m.architecture}",
        f"- directory size: {size:.1f} MiB; window: {m.max_length} characters; nested: {m.nested}; "
        + (
            f"span threshold: {m.threshold}" if m.task == "ner" else f"temperature: {m.temperature}"
        ),
    ]
    if m.training:
        t = m.training
        lines += [
            f"- data: `{t.data}` ({t.n_train} training / {t.n_validation} validation records, seed {t.seed})",
            f"- {t.notes}",
            f"- retrain: `{t.command}`",
        ]
    keys = ("precision", "recall", "f1") if m.task == "ner" else ("accuracy", "macro_f1")
    lines += [
        "",
        "Validation (held out from the training file, never trained on): "
        + ", ".join(f"{k} **{val.get(k)}**" for k in keys),
        "",
    ]
    cal = val.get("calibration")
    if isinstance(cal, dict):
        lines += [
            "Scores calibrated by temperature scaling on the validation split (train/temperature.py): "
            f"T = {cal['temperature']}; NLL {cal['nll_before']} → {cal['nll_after']}; expected "
            f"calibration error {cal['ece_before']} % → {cal['ece_after']} % "
            f"({cal['ece_after_cross_fitted']} % cross-fitted: T from one half, ECE on the other).",
            "",
        ]
    per = val.get("per_label", {})
    if isinstance(per, dict):
        lines += [
            "| label | 中文 | precision | recall | F1 | support |",
            "|---|---|---|---|---|---|",
        ]
        names = {lab.code: lab.zh for lab in m.labels}
        for label, row in per.items():
            lines.append(
                f"| {label} | {names.get(label, '')} | {row['precision']} | {row['recall']} | "
                f"{row['f1']} | {row['support']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write("\n".join(card(n) for n in sys.argv[1:]))

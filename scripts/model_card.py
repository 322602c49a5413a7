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
    refit = m.metrics.get("refit")
    if m.training and refit:
        t = m.training
        lines += [
            f"- data: `{t.data}`, all {t.n_train} records (a refit; seed {t.seed})",
            f"- {t.notes}",
            f"- the validated run ({refit['validated_version']}): {refit['validated_notes']}",
            "- retrain in two steps: the validated run, "
            f"`{_out(str(refit['validated_command']), '/tmp/validated/' + m.name)}`, "
            f"then the refit, `{t.command}`",
        ]
    elif m.training:
        t = m.training
        lines += [
            f"- data: `{t.data}` ({t.n_train} training / {t.n_validation} validation records, seed {t.seed})",
            f"- {t.notes}",
            f"- retrain: `{t.command}`",
        ]
    keys = ("precision", "recall", "f1") if m.task == "ner" else ("accuracy", "macro_f1")
    heading = (
        f"Validation of the validated run ({refit['validated_n_train']} training / "
        f"{refit['validated_n_validation']} validation records; the shipped weights are that "
        "recipe refit on all records, so these numbers describe the recipe, not a score of "
        "the shipped weights on unseen records)"
        if refit
        else "Validation (held out from the training file, never trained on)"
    )
    lines += ["", heading + ": " + ", ".join(f"{k} **{val.get(k)}**" for k in keys), ""]
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


def _out(command: str, out: str) -> str:
    """The validated run's command with its output directory where the refit reads it from."""
    words = command.split()
    if "--out" in words:
        words[words.index("--out") + 1] = out
    return " ".join(words)


if __name__ == "__main__":
    sys.stdout.write("\n".join(card(n) for n in sys.argv[1:]))

"""The user docs stay consistent: generated pages match their sources, links and anchors resolve."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def slugs(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -N repeats."""
    seen: Counter[str] = Counter()
    found: set[str] = set()
    for line in FENCE.sub("", markdown).splitlines():
        if not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return found


def test_models_page_is_what_its_sources_generate() -> None:
    # scripts/build_models_doc.sh concatenates these; an edit made to models.md alone is lost
    # the next time a model card changes.
    cards = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "model_card.py"),
            "general",
            "medical",
            "sentiment",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout
    head = (REPO / "docs" / "models.head.md").read_text(encoding="utf-8")
    speed = (REPO / "docs" / "models.speed.md").read_text(encoding="utf-8")
    expected = f"{head}\n## The models\n\n{cards}{speed}"
    assert (REPO / "docs" / "models.md").read_text(encoding="utf-8") == expected, (
        "docs/models.md differs from its sources: edit models.head.md / models.speed.md and run "
        "scripts/build_models_doc.sh"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    broken: list[str] = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif (
            anchor
            and dest.suffix == ".md"
            and anchor not in slugs(dest.read_text(encoding="utf-8"))
        ):
            broken.append(f"{target}: no such heading in {dest.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_every_setting_is_documented() -> None:
    from nluserve.settings import Settings

    documented = (REPO / "docs" / "settings.md").read_text(encoding="utf-8")
    missing = [
        f"NLUSERVE_{name.upper()}"
        for name in Settings.model_fields
        if f"`NLUSERVE_{name.upper()}`" not in documented
    ]
    assert not missing, f"docs/settings.md does not describe {missing}"

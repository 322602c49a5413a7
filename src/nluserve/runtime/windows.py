"""Splitting long texts into overlapping windows and merging spans back onto the original text."""

from __future__ import annotations

from dataclasses import dataclass

# Sentence-final punctuation first, then clause punctuation: windows end after one where possible.
_STRONG = set("。！？!?；;\n…")
_WEAK = set("，,、：:）)」』】 \t")


@dataclass(frozen=True)
class Window:
    """A slice ``text[start:end]`` of a longer text."""

    start: int
    end: int


def split(text: str, max_length: int, overlap: int | None = None) -> list[Window]:
    """Cover ``text`` with windows of at most ``max_length`` characters.

    Consecutive windows overlap by ``overlap`` characters (default: half a window, at most 32),
    so every entity shorter than the overlap lies whole inside some window without touching
    its interior edges; the merge drops spans that touch an interior edge (they may be cut).
    """
    n = len(text)
    if n <= max_length:
        return [Window(0, n)]
    if overlap is None:
        overlap = min(32, max_length // 2)
    overlap = max(0, min(overlap, max_length // 2))
    windows: list[Window] = []
    start = 0
    while True:
        hard_end = start + max_length
        if hard_end >= n:
            windows.append(Window(start, n))
            return windows
        end = _best_break(text, start + max_length // 2, hard_end)
        windows.append(Window(start, end))
        start = max(end - overlap, start + 1)


def _best_break(text: str, lo: int, hi: int) -> int:
    """The end position in (lo, hi] just after the last strong (else weak) punctuation, else hi."""
    for marks in (_STRONG, _WEAK):
        for pos in range(hi, lo, -1):
            if text[pos - 1] in marks:
                return pos
    return hi


def touches_interior_edge(start: int, end: int, window: Window, text_length: int) -> bool:
    """True if a span (window-relative) reaches a window edge that is not the text's edge."""
    return (start == 0 and window.start > 0) or (
        end == window.end - window.start and window.end < text_length
    )

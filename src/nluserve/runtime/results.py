"""Result values returned by a model, one per input text."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entity:
    """A recognised entity: ``text == source[start:end]``."""

    text: str
    label: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class NerResult:
    """All entities of one text, ordered by start, end and label."""

    entities: list[Entity] = field(default_factory=list)


@dataclass(frozen=True)
class ClassResult:
    """The predicted class with the probability of every class."""

    label: str
    score: float
    scores: dict[str, float]


Result = NerResult | ClassResult

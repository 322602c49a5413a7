"""``manifest.json``: everything the runtime needs to know about a model directory."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 1


class Label(BaseModel):
    """One output label with the names users may call it by."""

    model_config = ConfigDict(frozen=True)

    code: str
    zh: str
    en: str
    aliases: list[str] = Field(default_factory=list)

    def names(self) -> list[str]:
        """Every string that selects this label in a schema."""
        return [self.code, self.zh, self.en, *self.aliases]


class TrainingInfo(BaseModel):
    """Provenance: what data and command produced the weights."""

    data: str
    data_sha256: str | None = None
    n_train: int | None = None
    n_validation: int | None = None
    seed: int | None = None
    command: str | None = None
    notes: str | None = None


class Manifest(BaseModel):
    """The contents of ``manifest.json``."""

    model_config = ConfigDict(extra="allow")

    format_version: int = FORMAT_VERSION
    name: str
    version: str
    task: Literal["ner", "classification"]
    description: str = ""
    architecture: str = ""
    # Which encoder feeds the graph: our char/bigram/lexicon features or an imported WordPiece model.
    encoder: Literal["char", "wordpiece"] = "char"
    labels: list[Label]
    max_length: int = Field(gt=0)
    nested: bool = False
    threshold: float = Field(
        0.0, description="span logit above which an entity is kept (calibrated on validation)"
    )
    temperature: float = Field(
        1.0,
        gt=0,
        description="classification: logits are divided by it before the softmax "
        "(calibrated on validation: scores change; predictions only where windows are averaged)",
    )
    graph: str = "model.onnx"
    training: TrainingInfo | None = None
    metrics: dict[str, dict[str, object]] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict, description="file name -> sha256")

"""Request and response bodies of the public API (with Chinese examples for /docs)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# JSON can spell a lone surrogate ("\ud800"), which is no Unicode character: it cannot be
# encoded as UTF-8, so a text holding one could never be answered.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _unicode(value: str) -> str:
    if _SURROGATE.search(value):
        raise ValueError(
            "contains an unpaired surrogate (\\ud800 to \\udfff), which is not a Unicode "
            "character; send characters outside the BMP as one code point or as a pair"
        )
    return value


Text = Annotated[str, AfterValidator(_unicode)]


class LabelOut(BaseModel):
    code: str
    name_zh: str
    name_en: str
    aliases: list[str]


class ModelLimits(BaseModel):
    max_length: int = Field(description="window length; longer texts are split with overlap")
    max_text_chars: int
    max_total_chars: int
    max_texts: int


class ModelOut(BaseModel):
    name: str
    version: str
    task: str
    description: str
    nested: bool
    labels: list[LabelOut]
    limits: ModelLimits
    metrics: dict[str, Any] = Field(default_factory=dict, description="validation metrics")


class ModelList(BaseModel):
    models: list[ModelOut]


class PredictIn(BaseModel):
    """Either ``text`` or ``texts``; ``labels`` picks entity types by code, name or alias."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "张三在北京大学读书。"},
                {
                    "texts": ["患者自述发热、咳嗽。", "谷爱凌在北京冬奥会获得金牌"],
                    "labels": ["人物", "地理位置"],
                },
            ]
        },
    )

    text: Text | None = Field(None, description="one text")
    texts: list[Text] | None = Field(None, description="several texts, answered in order")
    # An empty list would ask for no entity type at all: a 422, not every type.
    labels: list[Text] | None = Field(
        None,
        min_length=1,
        description="entity types to keep (codes, 中文名 or aliases); leave out for all",
    )

    @model_validator(mode="after")
    def _one_of(self) -> PredictIn:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of `text` or `texts`")
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class NerIn(PredictIn):
    model: Text | None = Field(None, min_length=1, description="NER model name (default: general)")


class EntityOut(BaseModel):
    text: str
    label: str
    label_name: str
    start: int = Field(description="Python string index, inclusive")
    end: int = Field(description="exclusive: text[start:end] == entity text")
    score: float


class NerResultOut(BaseModel):
    entities: list[EntityOut]


class ClassResultOut(BaseModel):
    label: str
    label_name: str
    score: float
    scores: dict[str, float]


class PredictOut(BaseModel):
    model: str
    version: str
    request_id: str
    results: list[NerResultOut | ClassResultOut]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class CompatNerIn(BaseModel):
    text: Text = Field(examples=["张三在北京大学读书。"])


class CompatEntity(BaseModel):
    text: str
    type: str
    start: int
    end: int


class CompatNerData(BaseModel):
    text: str
    entities: list[CompatEntity]


class CompatNerOut(BaseModel):
    code: int = 0
    message: str = "成功"
    data: CompatNerData | None


class UniNluIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"text": "谷爱凌在北京冬奥会获得金牌", "schema": {"人物": None, "地理位置": None}},
                {"text": "房间干净，服务周到", "schema": {"情感分类": None}},
            ]
        }
    )

    text: Text
    # Values must be null: nested schemas (relations, events) ask for what no model here does.
    schema_: dict[Text, None] = Field(
        alias="schema", description="entity types (or 情感分类) as keys, each with null"
    )


class UniNluOut(BaseModel):
    text: str
    result: dict[str, list[str]]

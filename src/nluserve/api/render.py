"""Turning service results into response bodies."""

from __future__ import annotations

from nluserve.api.schemas import (
    ClassResultOut,
    EntityOut,
    LabelOut,
    ModelLimits,
    ModelOut,
    NerResultOut,
    PredictOut,
)
from nluserve.runtime.model import Model
from nluserve.runtime.results import ClassResult, NerResult
from nluserve.services.inference import Prediction
from nluserve.settings import Settings


def model_out(model: Model, settings: Settings) -> ModelOut:
    m = model.manifest
    return ModelOut(
        name=m.name,
        version=m.version,
        task=m.task,
        description=m.description,
        nested=m.nested,
        labels=[
            LabelOut(code=lab.code, name_zh=lab.zh, name_en=lab.en, aliases=lab.aliases)
            for lab in m.labels
        ],
        limits=ModelLimits(
            max_length=m.max_length,
            max_text_chars=settings.max_text_chars,
            max_total_chars=settings.max_total_chars,
            max_texts=settings.max_texts,
        ),
        metrics=m.metrics,
    )


def prediction_out(pred: Prediction, request_id: str) -> PredictOut:
    names = {lab.code: lab.zh for lab in pred.model.labels}
    results: list[NerResultOut | ClassResultOut] = []
    for res in pred.results:
        if isinstance(res, NerResult):
            results.append(
                NerResultOut(
                    entities=[
                        EntityOut(
                            text=e.text,
                            label=e.label,
                            label_name=names[e.label],
                            start=e.start,
                            end=e.end,
                            score=e.score,
                        )
                        for e in res.entities
                    ]
                )
            )
        elif isinstance(res, ClassResult):
            results.append(
                ClassResultOut(
                    label=res.label, label_name=names[res.label], score=res.score, scores=res.scores
                )
            )
    return PredictOut(
        model=pred.model.name,
        version=pred.model.manifest.version,
        request_id=request_id,
        results=results,
    )

"""The FastAPI + ONNX Runtime tutorial server, as such tutorials write it.

An ``async def`` endpoint calls ``session.run`` for each request on the event loop; every
gunicorn worker imports this module and loads its own session (no preload). The session keeps
ONNX Runtime's default threads unless ``BENCH_ORT_THREADS`` is set (the "tuned" variant sets 1).

    BENCH_MODEL_DIR=/path/to/model gunicorn -w 3 -k uvicorn_worker.UvicornWorker \\
        --chdir bench/baselines tutorial_app:app
"""

from __future__ import annotations

from typing import Any

from common import Predictor
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
predictor = Predictor()


class Item(BaseModel):
    text: str


@app.post("/predict")
async def predict(item: Item) -> dict[str, Any]:
    return predictor.predict([item.text])[0]


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}

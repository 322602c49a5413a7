"""What the baseline servers share: one ONNX session over the benchmark model, texts in, JSON out.

The model comes from the environment so the same app file serves either model:

- ``BENCH_MODEL_DIR``: an nluserve model directory (char encoder), encoded with nluserve's own
  encoder and decoded with its span decoder, so the work per text equals nluserve's;
- ``BENCH_BERT_ONNX``: the BERT-base graph of ``bench/bertbase.py``, encoded with
  ``bertbase.encode``; the answer is the argmax tag of every character.

``BENCH_ORT_PROVIDER``: ``cuda`` runs the session on onnxruntime-gpu's CUDA provider (default cpu).

``BENCH_ORT_THREADS``: intra-op threads of the session; unset or 0 keeps ONNX Runtime's defaults
(all physical cores, spinning on), which is what the tutorials do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

BENCH = Path(__file__).resolve().parent.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


def session_options() -> ort.SessionOptions | None:
    """None (ORT defaults) unless BENCH_ORT_THREADS asks for a fixed thread count."""
    threads = int(os.environ.get("BENCH_ORT_THREADS") or 0)
    if threads <= 0:
        return None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return opts


def providers() -> list[str]:
    if os.environ.get("BENCH_ORT_PROVIDER") == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class Predictor:
    """One session; ``predict(texts)`` -> one JSON-able dict per text."""

    def __init__(self) -> None:
        model_dir = os.environ.get("BENCH_MODEL_DIR")
        bert = os.environ.get("BENCH_BERT_ONNX")
        if bool(model_dir) == bool(bert):
            raise SystemExit("set exactly one of BENCH_MODEL_DIR and BENCH_BERT_ONNX")
        opts = session_options()
        if bert:
            import bertbase

            self.session = ort.InferenceSession(bert, opts, providers=providers())
            self.encode = bertbase.encode
            self.max_chars = bertbase.MAX_TOKENS - 2
            self._post = self._tags
        else:
            from nluserve.models.store import read_manifest
            from nluserve.runtime.decoders import decoder_for
            from nluserve.runtime.encoders import encoder_for

            path = Path(str(model_dir))
            manifest = read_manifest(path)
            graph = str(path / manifest.graph)
            self.session = ort.InferenceSession(graph, opts, providers=providers())
            self.encode = encoder_for(manifest, path)
            self.max_chars = manifest.max_length
            self.decoder = decoder_for(manifest)
            self.codes = [label.code for label in manifest.labels]
            self.nested = manifest.nested
            self._post = self._spans
        self.inputs = [i.name for i in self.session.get_inputs()]

    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Texts longer than the model's window are cut (nluserve would window them instead)."""
        texts = [t[: self.max_chars] for t in texts]
        feeds = self.encode(texts)
        out = self.session.run(None, {k: feeds[k] for k in self.inputs})[0]
        return [self._post(out[row], feeds, row, text) for row, text in enumerate(texts)]

    def _tags(
        self, logits: np.ndarray, feeds: dict[str, np.ndarray], row: int, text: str
    ) -> dict[str, Any]:
        return {"tags": logits[1 : len(text) + 1].argmax(-1).tolist()}

    def _spans(
        self, logits: np.ndarray, feeds: dict[str, np.ndarray], row: int, text: str
    ) -> dict[str, Any]:
        inputs = {name: array[row] for name, array in feeds.items()}
        spans = self.decoder(logits, inputs, len(text))
        if not self.nested:
            from nluserve.runtime.decode import select_flat

            spans = select_flat(spans)
        return {
            "entities": [
                {"start": s.start, "end": s.end, "label": self.codes[s.label], "score": s.score}
                for s in spans
            ]
        }

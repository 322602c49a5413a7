"""LitServe serving the benchmark model with its dynamic batching on, as its docs show.

``setup`` loads one ONNX Runtime session (default threads) in LitServe's inference worker;
``max_batch_size=8`` with a small ``batch_timeout`` lets it gather concurrent requests into one
``session.run``. The model comes from ``BENCH_MODEL_DIR`` or ``BENCH_BERT_ONNX`` (see common.py).

    BENCH_MODEL_DIR=/path/to/model python bench/baselines/litserve_app.py --port 8000
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import litserve as ls
from common import Predictor


class NerAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.predictor = Predictor()

    # No annotation on ``request``: LitServe builds the route from it, and a string annotation
    # (``from __future__ import annotations``) would make FastAPI read a query parameter.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return str(request["text"])

    def batch(self, inputs: list[str]) -> list[str]:
        return inputs

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        return self.predictor.predict(texts)

    def unbatch(self, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return output

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=8)
    default_timeout = float(os.environ.get("BENCH_BATCH_TIMEOUT", "0.005"))
    parser.add_argument("--batch-timeout", type=float, default=default_timeout, help="seconds")
    args = parser.parse_args()
    api = NerAPI(max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu")
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()

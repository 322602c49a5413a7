"""A BERT-base-size token classifier with random weights, exported to ONNX for benchmarks.

The weights are random on purpose: the benchmark measures what a BERT-base graph costs in
speed and memory on the serving path, not what it predicts. Only torch/transformers/onnx are
needed to build the graph; ``encode`` needs numpy alone, so a machine holding the cached
``model.onnx`` (a GPU box with onnxruntime-gpu, say) can run it without the training extra.

    .venv/bin/python bench/bertbase.py [--out DIR] [--int8]
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / "bench" / "out" / "bertbase"
FP32_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"

VOCAB_SIZE = 21128  # bert-base-chinese
NUM_LABELS = 19  # BIO over 9 entity types: 9 * 2 + 1
MAX_TOKENS = 128
CLS_ID, SEP_ID, PAD_ID = 101, 102, 0
FIRST_CHAR_ID = 1000  # ids below this hold [PAD]/[UNK]/[CLS]/... in the real vocabulary
SEED = 20240601
OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def char_id(ch: str) -> int:
    """Stable id for one character.

    ``ord`` rather than ``hash``: str hashes are salted per process (PYTHONHASHSEED), so the
    fp32 and int8 runs of two different processes would not see the same inputs.
    """
    return ord(ch) % (VOCAB_SIZE - FIRST_CHAR_ID) + FIRST_CHAR_ID


def encode(texts: Sequence[str], max_tokens: int = MAX_TOKENS) -> dict[str, np.ndarray]:
    """[CLS] chars [SEP], truncated to ``max_tokens`` and padded to the batch's longest."""
    rows = [[CLS_ID, *(char_id(c) for c in t[: max_tokens - 2]), SEP_ID] for t in texts]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def build(out_dir: Path = DEFAULT_DIR) -> Path:
    """Export the fp32 graph to ``out_dir/model.onnx`` unless it is already there."""
    target = Path(out_dir) / FP32_NAME
    if target.is_file():
        return target
    import torch
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        num_labels=NUM_LABELS,
    )
    # Eager attention traces into plain MatMul/Softmax, which ORT's fusions recognise.
    config._attn_implementation = "eager"
    model = BertForTokenClassification(config).eval()

    class Logits(torch.nn.Module):
        """Plain-tensor output: the exporter cannot name fields of a ModelOutput."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).logits

    sample = encode(["患者三天前出现发热咳嗽", "头痛"])
    args = tuple(torch.from_numpy(sample[name]) for name in INPUT_NAMES)
    axes = {0: "batch", 1: "sequence"}
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter is asked for by name; its deprecation and tracer notes are noise.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Logits(model),
            args,
            str(partial),
            input_names=list(INPUT_NAMES),
            output_names=["output"],
            dynamic_axes={**{name: axes for name in INPUT_NAMES}, "output": axes},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    partial.replace(target)  # a crash mid-export leaves no file that looks finished
    return target


def build_int8(out_dir: Path = DEFAULT_DIR) -> Path:
    """Write a dynamic-int8 copy (int8 weights, activations quantised per call) if missing."""
    target = Path(out_dir) / INT8_NAME
    if target.is_file():
        return target
    fp32 = build(out_dir)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    partial = target.with_suffix(".partial")
    root = logging.getLogger()
    level = root.level
    # quantize_dynamic logs a root WARNING suggesting shape pre-processing; symbolic shape
    # inference fails on this graph and fusing first (QAttention) measured no faster here.
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(fp32, partial, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    partial.replace(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="cache directory")
    parser.add_argument("--int8", action="store_true", help="also write the dynamic int8 copy")
    args = parser.parse_args()
    for step in (build, build_int8) if args.int8 else (build,):
        start = time.perf_counter()
        path = step(args.out)
        size = path.stat().st_size / 2**20
        print(f"{path}  {size:.0f} MiB  ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()

"""Exporting a trained network to a verified model directory."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from nluserve.models.manifest import Manifest
from nluserve.models.outdir import fresh_partial, swap_in
from nluserve.models.store import write_manifest
from nluserve.runtime.lexicon import Lexicon
from nluserve.runtime.tokenizer import Vocab
from nluserve.train.net import TrainedNet

INPUTS = ["chars", "bigrams", "lexicon", "lengths"]


def export_onnx(net: TrainedNet, path: Path) -> None:
    """Trace the network with dynamic batch and length axes."""
    net.eval()
    b, length = 2, 7
    example: tuple[torch.Tensor, ...] = (
        torch.ones((b, length), dtype=torch.int64),
        torch.ones((b, length), dtype=torch.int64),
        torch.zeros((b, length, net.cfg.lex_features), dtype=torch.float32),
        torch.tensor([length, length - 2], dtype=torch.int64),
    )
    inputs = list(INPUTS)
    if net.cfg.linear:
        example = (*example, torch.ones((b, 5), dtype=torch.int64))
        inputs.append("ngrams")
    axes = {
        "chars": {0: "batch", 1: "length"},
        "bigrams": {0: "batch", 1: "length"},
        "lexicon": {0: "batch", 1: "length"},
        "lengths": {0: "batch"},
        "output": {0: "batch"} if net.cfg.task != "ner" else {0: "batch", 2: "length", 3: "length"},
    }
    if net.cfg.linear:
        axes["ngrams"] = {0: "batch", 1: "n_ngrams"}
    # The TorchScript exporter is deprecated but maps our per-direction LSTMs to ONNX LSTM ops
    # with dynamic batch and length; the torch.export path needs shape guards for that.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        # torch ignores its own tracer warnings with a filter added at import; a warnings=error
        # context entered after that import (pytest's, per test) would otherwise override it.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            net,
            example,
            str(path),
            input_names=inputs,
            output_names=["output"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def export_model_dir(
    net: TrainedNet,
    manifest: Manifest,
    vocab: Vocab,
    lexicon: Lexicon,
    out: Path,
    extra: dict[str, str] | None = None,
    compact: bool = False,
) -> Manifest:
    """Write graph, vocabulary, lexicon, extras and a checksummed manifest into ``out``."""
    tmp = fresh_partial(out)
    export_onnx(net, tmp / manifest.graph)
    if compact:
        from nluserve.train.compact import compact as compact_graph

        compact_graph(tmp / manifest.graph)
    vocab.save(tmp / "vocab.json")
    if lexicon.words:
        lexicon.save(tmp / "lexicon.txt")
    for name, content in (extra or {}).items():
        (tmp / name).write_text(content, encoding="utf-8")
    done = write_manifest(tmp, manifest)
    swap_in(tmp, out)
    return done

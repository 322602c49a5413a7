"""Wrap the BERT-base-size benchmark graph into an nluserve model directory.

``bench/bertbase.py`` exports a random-weight BERT-base token classifier (vocabulary 21128, 19
BIO tags). This adds what ``nluserve serve --models DIR`` needs to serve it through the
``wordpiece`` encoder of imported Hugging Face models: a ``vocab.txt`` of 21128 entries laid out
like bert-base-chinese's (special tokens, ASCII, CJK punctuation, CJK characters, filler) and a
checksummed ``manifest.json`` (task ner, labels from the BIO tags, max_length 126 so a window is
at most 128 tokens with [CLS]/[SEP]). The graph is hard-linked, not copied, where it can be.

    .venv/bin/python bench/bertbase_modeldir.py [--out DIR]
    .venv/bin/python -m nluserve serve --models bench/out/bertbase/modeldir

The weights are random, so the entities it returns are noise; it is for speed and memory only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import bertbase

DEFAULT_DIR = bertbase.DEFAULT_DIR / "modeldir"
NAME = "bertbase"
MAX_LENGTH = bertbase.MAX_TOKENS - 2  # characters per window; +[CLS]/[SEP] = 128 positions
# CMeEE-V2's nine entity types: 9 x (B, I) + O = bertbase.NUM_LABELS tags.
ENTITY_TYPES = ("dis", "sym", "pro", "equ", "dru", "ite", "bod", "dep", "mic")
TAGS = ["O", *(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I"))]
# Full-width and CJK punctuation common in Chinese clinical text.
CJK_PUNCT = "，。、；：？！“”‘’（）《》【】「」『』〔〕…—～·％＋－／＝＜＞"


def vocab_tokens() -> list[str]:
    """21128 tokens: bert-base-chinese's special ids ([PAD] 0, [UNK] 100, [CLS] 101, ...)."""
    tokens = ["[PAD]", *(f"[unused{i}]" for i in range(1, 100))]
    tokens += ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "<S>", "<T>"]
    ascii_chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]  # lowercased text
    tokens += ascii_chars
    tokens += [f"##{c}" for c in ascii_chars if c.isalnum()]
    tokens += list(CJK_PUNCT)
    seen = set(tokens)
    cjk = (chr(c) for c in range(0x4E00, 0xA000))
    tokens += [ch for ch in cjk if ch not in seen][: bertbase.VOCAB_SIZE - len(tokens)]
    tokens += [f"[filler{i}]" for i in range(bertbase.VOCAB_SIZE - len(tokens))]
    assert len(tokens) == bertbase.VOCAB_SIZE and len(set(tokens)) == len(tokens)
    return tokens


def build(out_dir: Path = DEFAULT_DIR, graph: Path | None = None) -> Path:
    """Write the model directory (unless a complete one is there) and return it."""
    from nluserve.models.manifest import Manifest, TrainingInfo
    from nluserve.models.store import MANIFEST, write_manifest
    from nluserve.runtime.wordpiece import WordPieceSettings
    from nluserve.train.catalog import label_for

    out_dir = Path(out_dir)
    if (out_dir / MANIFEST).is_file():
        return out_dir
    graph = graph or bertbase.build()
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        os.link(graph, tmp / "model.onnx")
    except OSError:  # another filesystem: copy instead
        shutil.copyfile(graph, tmp / "model.onnx")
    (tmp / "vocab.txt").write_text("".join(t + "\n" for t in vocab_tokens()), encoding="utf-8")
    manifest = Manifest(
        name=NAME,
        version="0.0.0",
        task="ner",
        description="BERT-base-size token classifier with RANDOM weights, for benchmarks only",
        architecture="BERT-base (12 x 768), token classification, random weights",
        encoder="wordpiece",
        labels=[label_for(t) for t in ENTITY_TYPES],
        max_length=MAX_LENGTH,
        nested=False,
        training=TrainingInfo(data="none", notes="random weights from bench/bertbase.py"),
        wordpiece=WordPieceSettings().model_dump(),
        tags=TAGS,
    )
    write_manifest(tmp, manifest)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="model directory to write")
    args = parser.parse_args()
    start = time.perf_counter()
    path = build(args.out)
    print(f"{path}  ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()

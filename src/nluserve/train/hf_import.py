"""Importing a Hugging Face BERT-style classification checkpoint as an nluserve model directory.

Reading and checking the checkpoint needs only the standard library, so the CLI can say what is
wrong with a directory before it needs the train extra; torch and transformers are imported only
by :func:`convert`.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nluserve.errors import CheckpointError
from nluserve.models.manifest import Manifest, TrainingInfo
from nluserve.models.outdir import fresh_partial, swap_in
from nluserve.models.store import write_manifest
from nluserve.runtime.decoders import entity_types
from nluserve.runtime.wordpiece import WordPieceSettings
from nluserve.train.catalog import label_for

REQUIRED_MODULES = ("torch", "transformers", "onnx")
WEIGHTS = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
# Tokenizer classes that are BERT's basic tokenizer + WordPiece under another name.
BERT_TOKENIZERS = {
    "BertTokenizer",
    "DistilBertTokenizer",
    "ElectraTokenizer",
    "MobileBertTokenizer",
    "ConvBertTokenizer",
    "SqueezeBertTokenizer",
    "LayoutLMTokenizer",
}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TOLERANCE = 1e-3


@dataclass(frozen=True)
class Checkpoint:
    """What nluserve needs from a checkpoint directory, read and checked."""

    path: Path
    task: Literal["ner", "classification"]
    architecture: str
    tags: list[str]  # config.id2label in id order: BIO tags (ner) or class names
    max_positions: int
    vocab: list[str]  # token by id
    wordpiece: WordPieceSettings
    tokenizer_json: Path | None


def missing_modules() -> list[str]:
    """The train-extra modules conversion needs that are not installed."""
    return [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]


def read_checkpoint(src: Path) -> Checkpoint:
    """Check ``src`` is a convertible checkpoint; raises CheckpointError saying why not."""
    if not src.is_dir():
        raise CheckpointError(
            f"{src}: " + ("not a directory" if src.exists() else "no such directory")
        )
    config = _read_json(
        src / "config.json", f"{src}: no config.json, not a Hugging Face checkpoint"
    )
    if not any((src / w).is_file() for w in WEIGHTS):
        raise CheckpointError(f"{src}: no weights ({' or '.join(WEIGHTS[:2])})")
    architecture = next(iter(config.get("architectures") or []), "")
    if architecture.endswith("ForTokenClassification"):
        task: Literal["ner", "classification"] = "ner"
    elif architecture.endswith("ForSequenceClassification"):
        task = "classification"
    else:
        raise CheckpointError(
            f"{src}: architecture {architecture or 'unknown'!s} is not a token or sequence "
            "classification model (…ForTokenClassification / …ForSequenceClassification)"
        )
    if task == "classification" and config.get("problem_type") in (
        "multi_label_classification",
        "regression",
    ):
        raise CheckpointError(f"{src}: {config['problem_type']} models are not supported")
    tags = _tags(src, config)
    if task == "ner" and not entity_types(tags):
        raise CheckpointError(f"{src}: id2label {tags} has no entity tags")
    vocab, settings, tokenizer_json = _tokenizer(src)
    if len(vocab) > int(config.get("vocab_size", len(vocab))):
        raise CheckpointError(
            f"{src}: tokenizer has {len(vocab)} tokens, the model {config['vocab_size']}"
        )
    return Checkpoint(
        path=src,
        task=task,
        architecture=architecture,
        tags=tags,
        max_positions=int(config.get("max_position_embeddings", 512)),
        vocab=vocab,
        wordpiece=settings,
        tokenizer_json=tokenizer_json,
    )


def convert(
    ckpt: Checkpoint, out: Path, name: str, version: str = "1.0.0", command: str | None = None
) -> Manifest:
    """Write the ONNX graph, vocabulary and a checksummed manifest into ``out``."""
    tmp = fresh_partial(out)
    try:
        export_onnx(ckpt, tmp / "model.onnx")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / "vocab.txt").write_text("".join(t + "\n" for t in ckpt.vocab), encoding="utf-8")
    if ckpt.tokenizer_json is not None:
        shutil.copyfile(ckpt.tokenizer_json, tmp / "tokenizer.json")
    shutil.copyfile(ckpt.path / "config.json", tmp / "config.json")
    codes = entity_types(ckpt.tags) if ckpt.task == "ner" else ckpt.tags
    extra: dict[str, Any] = {"wordpiece": ckpt.wordpiece.model_dump()}
    if ckpt.task == "ner":
        extra["tags"] = ckpt.tags
    manifest = Manifest(
        name=name,
        version=version,
        task=ckpt.task,
        description=f"Imported Hugging Face checkpoint {ckpt.path.resolve().name}",
        architecture=ckpt.architecture,
        encoder="wordpiece",
        labels=[label_for(code) for code in codes],
        # Characters per window: a WordPiece token covers at least one character (bar rare
        # expansions the encoder truncates), so this many characters fit the position table.
        max_length=min(ckpt.max_positions, 512) - 2,
        nested=False,
        training=TrainingInfo(
            data=str(ckpt.path.resolve()),
            command=command,
            notes="imported from Hugging Face; not trained by nluserve",
        ),
        **extra,
    )
    done = write_manifest(tmp, manifest)
    swap_in(tmp, out)
    return done


def export_onnx(ckpt: Checkpoint, path: Path) -> None:
    """Trace the model to ONNX (opset 17, dynamic batch and sequence) and check it against torch."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    auto = (
        AutoModelForTokenClassification
        if ckpt.task == "ner"
        else AutoModelForSequenceClassification
    )
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        # Eager attention: the SDPA path picks kernels with Python branches the tracer would freeze.
        model = auto.from_pretrained(ckpt.path, attn_implementation="eager", dtype=torch.float32)
    except Exception as exc:  # corrupt or foreign weights fail in many library-specific ways
        raise CheckpointError(f"{ckpt.path}: cannot load the model: {_first_line(exc)}") from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    names = [n for n in INPUTS if n in inspect.signature(model.forward).parameters]

    class Logits(torch.nn.Module):
        """The model with positional inputs and its logits as the only output."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            return self.model(**dict(zip(names, inputs, strict=True))).logits

    # eval() on the wrapper itself: export restores the wrapper's mode afterwards, recursively.
    wrapper = Logits().eval()
    # A padded row in the example: transformers drops an all-ones attention mask with a Python
    # branch, which tracing would freeze into a graph that ignores padding.
    ids, mask = _example(len(ckpt.vocab))
    example = tuple(torch.from_numpy(a) for a in _feeds(names, ids, mask).values())
    out_axes = {0: "batch", 1: "sequence"} if ckpt.task == "ner" else {0: "batch"}
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"output": out_axes}
    with warnings.catch_warnings():
        # Deprecation and tracer warnings of the TorchScript exporter; the check below is what
        # tells whether the graph is right.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            input_names=names,
            output_names=["output"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    _check(wrapper, path, names, ckpt.task)


def _check(wrapper: Any, path: Path, names: list[str], task: str) -> None:
    """Compare ONNX Runtime with PyTorch on a batch of another shape than the traced one."""
    import onnxruntime as ort
    import torch

    ids, mask = _example(int(wrapper.model.config.vocab_size), batch=3, length=11)
    feeds = _feeds(names, ids, mask)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, feeds)[0]
    with torch.no_grad():
        want = wrapper(*(torch.from_numpy(a) for a in feeds.values())).numpy()
    if task == "ner":
        got, want = got[mask == 1], want[mask == 1]
    diff = float(np.abs(got - want).max())
    if diff > TOLERANCE:
        raise CheckpointError(f"the exported graph disagrees with PyTorch (max |diff| {diff:.2e})")


def _example(vocab_size: int, batch: int = 2, length: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, max(vocab_size, 1), size=(batch, length), dtype=np.int64)
    mask = np.ones((batch, length), dtype=np.int64)
    for row in range(1, batch):
        mask[row, length - 1 - (row * 3) % (length - 1) :] = 0
    return ids, mask


def _feeds(names: list[str], ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {n: arrays[n] for n in names}


def _tags(src: Path, config: dict[str, Any]) -> list[str]:
    raw = config.get("id2label")
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(f"{src}: config.json has no id2label")
    try:
        by_id = {int(k): str(v) for k, v in raw.items()}
    except ValueError as exc:
        raise CheckpointError(f"{src}: id2label keys are not integers") from exc
    if sorted(by_id) != list(range(len(by_id))):
        raise CheckpointError(f"{src}: id2label ids are not 0..{len(by_id) - 1}")
    tags = [by_id[i] for i in range(len(by_id))]
    if len(set(tags)) != len(tags):
        raise CheckpointError(f"{src}: id2label repeats a label")
    return tags


def _tokenizer(src: Path) -> tuple[list[str], WordPieceSettings, Path | None]:
    """Vocabulary and settings from tokenizer.json (what transformers loads first) or vocab.txt."""
    cfg = (
        _read_json(src / "tokenizer_config.json", None)
        if (src / "tokenizer_config.json").is_file()
        else {}
    )
    specials = {
        k: _content(cfg.get(k), d)
        for k, d in (
            ("unk_token", "[UNK]"),
            ("cls_token", "[CLS]"),
            ("sep_token", "[SEP]"),
            ("pad_token", "[PAD]"),
            ("mask_token", "[MASK]"),
        )
    }
    if (src / "tokenizer.json").is_file():
        vocab, settings = _from_tokenizer_json(src / "tokenizer.json", specials)
        tokenizer_json: Path | None = src / "tokenizer.json"
    elif (src / "vocab.txt").is_file():
        vocab, settings = _from_vocab_txt(src, cfg, specials)
        tokenizer_json = None
    else:
        raise CheckpointError(f"{src}: no tokenizer (tokenizer.json or vocab.txt)")
    present = set(vocab)
    for token in (settings.unk_token, settings.cls_token, settings.sep_token, settings.pad_token):
        if token not in present:
            raise CheckpointError(f"{src}: special token {token!r} is not in the vocabulary")
    return vocab, settings, tokenizer_json


def _from_tokenizer_json(
    path: Path, specials: dict[str, str]
) -> tuple[list[str], WordPieceSettings]:
    spec = _read_json(path, None)
    model = spec.get("model") or {}
    if model.get("type") != "WordPiece":
        raise CheckpointError(
            f"{path}: a {model.get('type', 'unknown')} tokenizer; only WordPiece (BERT) is supported"
        )
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") != "BertPreTokenizer":
        raise CheckpointError(f"{path}: pre-tokenizer {pre.get('type')} is not BertPreTokenizer")
    norm = spec.get("normalizer")
    if norm is None:
        flags: dict[str, Any] = {
            "lowercase": False,
            "strip_accents": False,
            "clean_text": False,
            "chinese_chars": False,
        }
    elif norm.get("type") == "BertNormalizer":
        flags = {
            "lowercase": norm.get("lowercase", True),
            "strip_accents": norm.get("strip_accents"),
            "clean_text": norm.get("clean_text", True),
            "chinese_chars": norm.get("handle_chinese_chars", True),
        }
    else:
        raise CheckpointError(f"{path}: normalizer {norm.get('type')} is not BertNormalizer")
    by_id: dict[int, str] = {int(i): t for t, i in model.get("vocab", {}).items()}
    added = spec.get("added_tokens") or []
    for tok in added:
        by_id.setdefault(int(tok["id"]), tok["content"])
    if sorted(by_id) != list(range(len(by_id))):
        raise CheckpointError(f"{path}: token ids are not contiguous from 0")
    cls, sep = _template_specials(spec.get("post_processor") or {}, specials)
    settings = WordPieceSettings(
        **flags,
        unk_token=model.get("unk_token", specials["unk_token"]),
        cls_token=cls,
        sep_token=sep,
        pad_token=specials["pad_token"],
        prefix=model.get("continuing_subword_prefix") or "##",
        max_chars_per_word=int(model.get("max_input_chars_per_word", 100)),
        added_tokens=[tok["content"] for tok in added],
    )
    return [by_id[i] for i in range(len(by_id))], settings


def _template_specials(post: dict[str, Any], specials: dict[str, str]) -> tuple[str, str]:
    """[CLS] and [SEP] as the post-processor names them (BertProcessing or a template)."""
    if post.get("type") == "BertProcessing":
        return str(post["cls"][0]), str(post["sep"][0])
    if post.get("type") == "TemplateProcessing":
        single = [p["SpecialToken"]["id"] for p in post.get("single", []) if "SpecialToken" in p]
        if len(single) == 2:
            return str(single[0]), str(single[1])
    return specials["cls_token"], specials["sep_token"]


def _from_vocab_txt(
    src: Path, cfg: dict[str, Any], specials: dict[str, str]
) -> tuple[list[str], WordPieceSettings]:
    cls_name = str(cfg.get("tokenizer_class") or "BertTokenizer").removesuffix("Fast")
    if cls_name not in BERT_TOKENIZERS:
        raise CheckpointError(f"{src}: tokenizer {cls_name} is not a BERT WordPiece tokenizer")
    if cfg.get("do_basic_tokenize") is False:
        raise CheckpointError(f"{src}: do_basic_tokenize=false is not supported")
    lines = (src / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    present = set(lines)
    extra = [_content(t, "") for t in cfg.get("additional_special_tokens") or []]
    settings = WordPieceSettings(
        lowercase=bool(cfg.get("do_lower_case", True)),
        strip_accents=cfg.get("strip_accents"),
        chinese_chars=bool(cfg.get("tokenize_chinese_chars", True)),
        unk_token=specials["unk_token"],
        cls_token=specials["cls_token"],
        sep_token=specials["sep_token"],
        pad_token=specials["pad_token"],
        added_tokens=[t for t in [*specials.values(), *extra] if t in present],
    )
    return lines, settings


def _content(value: Any, default: str) -> str:
    """A special token as tokenizer_config.json stores it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        return str(value.get("content", default))
    return default if value is None else str(value)


def _read_json(path: Path, missing: str | None) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(missing or f"{path}: missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

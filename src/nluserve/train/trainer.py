"""Training loop: seeded split, length-bucketed batches, early stopping on our validation split."""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from nluserve.data.readers import Example, GoldSpan, read_examples
from nluserve.evaluation.metrics import score_classification, score_ner
from nluserve.models.manifest import Manifest
from nluserve.runtime import windows
from nluserve.runtime.features import encode_batch
from nluserve.runtime.lexicon import KINDS, Lexicon
from nluserve.runtime.model import Backend, Model
from nluserve.runtime.ngrams import FILE as NGRAMS_FILE
from nluserve.runtime.ngrams import NgramIndex
from nluserve.runtime.results import ClassResult
from nluserve.runtime.tokenizer import Vocab
from nluserve.train.adversarial import adversarial_backward
from nluserve.train.catalog import SENTIMENT_CODES, label_for
from nluserve.train.lexicon_build import jieba_lexicon
from nluserve.train.net import Encoder, Ensemble, Net, NetConfig, TrainedNet, span_loss
from nluserve.train.pretrain import PretrainConfig, load_texts, mask_inputs, pretrain
from nluserve.train.refit import (
    RECIPE_FIELDS,
    Reference,
    RefitError,
    check_network,
    check_recipe,
    load_reference,
)


@dataclass
class TrainConfig:
    task: str  # "ner" | "classification"
    data: Path
    out: Path
    name: str
    version: str = "1.0.0"
    seed: int = 13
    val_fraction: float = 0.1
    max_length: int = 128
    epochs: int = 30
    patience: int = 4
    batch_size: int = 32
    lr: float = 2e-3
    max_minutes: float = 55.0
    limit: int | None = None  # first N examples only (smoke runs)
    nested: bool = False
    hidden: int = 192
    layers: int = 1
    dropout: float = 0.3
    wide: bool = False
    linear: bool = False
    swa_from: int | None = None  # average the weights of this epoch and every later one
    members: int = 1  # networks (seeds seed, seed+1, ...) whose logits are averaged in one graph
    compact: bool = False  # store large weights as float16 / int8 rows (train/compact.py)
    augment: int = 0  # entity-replacement copies per training sentence (NER)
    augment_fresh: bool = False  # draw the copies' replacements again for every epoch
    augment_nested: bool = False  # copy nested sentences too, keeping overlapping groups as is
    # (label code, lexicon kind): half of that label's replacements are jieba's words of the kind
    augment_kinds: tuple[tuple[str, str], ...] = ()
    adversarial: float = 0.0  # FGM step on the embedding tables (train/adversarial.py); 0: off
    char_dropout: float = 0.0  # share of characters hidden from every input in each batch
    calibrate: bool = True
    pretrain_epochs: int = 0  # masked-character pretraining of the encoder (train/pretrain.py)
    pretrain_data: tuple[Path, ...] = ()  # extra unlabelled text; the training split is always used
    pretrain_minutes: float = 30.0
    # A validated run's directory: train on every record with that run's choices (train/refit.py).
    refit_from: Path | None = None
    lexicon: Path | None = None
    threads: int | None = None
    description: str = ""
    command: str = ""


class TorchBackend:
    """Runs the network in eval mode so validation uses the runtime's exact decode path."""

    def __init__(self, net: TrainedNet) -> None:
        self.net = net

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        names = ("chars", "bigrams", "lexicon", "lengths", "ngrams")
        with torch.no_grad():
            out = self.net(*(torch.from_numpy(feeds[k]) for k in names if k in feeds))
        return out.numpy()


def examples_for(task: str, path: Path) -> tuple[str, list[Example]]:
    """A corpus file's examples as training sees them (sentiment labels named, no empty texts)."""
    fmt, examples = read_examples(path)
    if not examples:
        raise TrainingError(f"{path} holds no records")
    if task == "classification":
        if fmt != "csv":
            raise TrainingError(f"{path} is {fmt} (NER) data; classification trains on a CSV")
        raw = {ex.label or "" for ex in examples}
        if raw & set(SENTIMENT_CODES) and not raw <= set(SENTIMENT_CODES):
            # 0/1 sentiment codes beside other values ("2", "1.0"): a typo, not a new class.
            raise TrainingError(
                f"{path}: labels {sorted(raw - set(SENTIMENT_CODES))} beside 0/1; sentiment "
                "labels are 0 (negative) and 1 (positive)"
            )
        for ex in examples:
            ex.label = SENTIMENT_CODES.get(ex.label or "", ex.label)
        if len(raw) < 2:
            raise TrainingError(f"{path}: only one class ({sorted(raw)}); a classifier needs two")
        # The reader refuses empty reviews, so nothing is dropped here.
    elif fmt == "csv":
        raise TrainingError(f"{path} is a CSV (classification) file; NER trains on CLUENER/CMeEE")
    elif not any(ex.spans for ex in examples):
        raise TrainingError(f"{path} holds no entities: nothing to learn")
    return fmt, examples


def binary_reviews(path: Path, max_length: int = 256) -> tuple[list[str], np.ndarray]:
    """A sentiment file's reviews cut to one window, and 1 for positive: what the linear
    part's cross-validation scripts fit."""
    _, examples = examples_for("classification", path)
    texts = [e.text[:max_length] for e in examples]
    return texts, np.array([int(e.label == "positive") for e in examples])


def split(
    examples: list[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """A seeded shuffle split: (train, validation)."""
    idx = list(range(len(examples)))
    random.Random(seed).shuffle(idx)
    n_val = max(1, round(len(idx) * fraction))
    val = {i for i in idx[:n_val]}
    return [e for i, e in enumerate(examples) if i not in val], [examples[i] for i in sorted(val)]


def training_windows(examples: list[Example], max_length: int) -> list[Example]:
    """Long texts become windows; each keeps the gold spans it fully contains."""
    out: list[Example] = []
    for ex in examples:
        for w in windows.split(ex.text, max_length):
            spans = [
                GoldSpan(s.start - w.start, s.end - w.start, s.label)
                for s in ex.spans
                if s.start >= w.start and s.end <= w.end
            ]
            out.append(Example(ex.text[w.start : w.end], spans, ex.label))
    return out


def served_window(items: Sequence[Example], max_length: int) -> int:
    """The window the model serves: the longest it trained on, at most ``max_length``.

    A recurrent network reads a longer window worse than any it has seen: ``general``
    (CLUENER sentences are at most 50 characters) fell from 75.6 to 69.9 F1 on validation
    sentences joined three at a time when it served 128-character windows (74.9 at 50).
    Long texts are split into windows of this length instead."""
    return min(max_length, max((len(e.text) for e in items), default=max_length))


class TrainingError(ValueError):
    """A training option that does not fit the data."""


def _gazetteer(cfg: TrainConfig, codes: list[str]) -> dict[str, list[str]]:
    """Per label, jieba's words of the kind ``augment_kinds`` maps it to."""
    if not cfg.augment_kinds:
        return {}
    unknown = sorted({label for label, _ in cfg.augment_kinds} - set(codes))
    if unknown:
        raise TrainingError(
            f"--augment-kind names labels the data does not have: {', '.join(unknown)} "
            f"(labels: {', '.join(codes)})"
        )
    kinds = jieba_lexicon(typed=True).kinds
    return {
        label: sorted(w for w, k in kinds.items() if k == KINDS.index(kind))
        for label, kind in cfg.augment_kinds
    }


def augment(
    examples: list[Example],
    copies: int,
    seed: int,
    gazetteer: dict[str, list[str]] | None = None,
    keep_overlaps: bool = False,
) -> list[Example]:
    """Entity replacement: copies of sentences whose entities are swapped for other training
    mentions of the same type. Only sentences without overlapping spans are used, unless
    ``keep_overlaps``: then a group of overlapping spans (a nested entity and what contains
    it) is kept as it is and every other entity is replaced, so nested sentences are copied
    too. A sentence with no entity outside such a group is not copied.

    For a label in ``gazetteer``, half of the replacements are drawn from its words instead,
    so the network meets many more names than training shows it."""
    if copies <= 0:
        return []
    gazetteer = gazetteer or {}
    rng = random.Random(seed + 1)
    mentions: dict[str, list[str]] = {}
    for ex in examples:
        for sp in ex.spans:
            mentions.setdefault(sp.label, []).append(ex.text[sp.start : sp.end])
    out: list[Example] = []
    for ex in examples:
        groups = _overlap_groups(ex.spans)
        if all(len(g) > 1 for g in groups) or (not keep_overlaps and len(groups) < len(ex.spans)):
            continue
        for _ in range(copies):
            pieces, new_spans, pos, cursor = [], [], 0, 0
            for group in groups:
                start = group[0].start
                pieces.append(ex.text[cursor:start])
                pos += start - cursor
                if len(group) > 1:
                    end = max(sp.end for sp in group)
                    pieces.append(ex.text[start:end])
                    new_spans += [
                        GoldSpan(pos + sp.start - start, pos + sp.end - start, sp.label)
                        for sp in group
                    ]
                    pos += end - start
                    cursor = end
                    continue
                sp = group[0]
                words = gazetteer.get(sp.label)
                if words and rng.random() < 0.5:
                    mention = rng.choice(words)
                else:
                    mention = rng.choice(mentions[sp.label])
                new_spans.append(GoldSpan(pos, pos + len(mention), sp.label))
                pieces.append(mention)
                pos += len(mention)
                cursor = sp.end
            pieces.append(ex.text[cursor:])
            out.append(Example("".join(pieces), new_spans))
    return out


def _overlap_groups(spans: list[GoldSpan]) -> list[list[GoldSpan]]:
    """Spans in text order, gathered into groups that overlap (chains included)."""
    groups: list[list[GoldSpan]] = []
    end = -1
    for sp in sorted(spans, key=lambda sp: (sp.start, -sp.end)):
        if groups and sp.start < end:
            groups[-1].append(sp)
            end = max(end, sp.end)
        else:
            groups.append([sp])
            end = sp.end
    return groups


def epoch_copies(
    cfg: TrainConfig, examples: list[Example], gazetteer: dict[str, list[str]], epoch: int
) -> list[Example]:
    """The augmented windows an epoch trains on: one draw for every epoch, unless
    --augment-fresh draws again per epoch (epoch 1 draws what a run without it draws)."""
    # A prime stride keeps an epoch's draw away from the draws of runs with nearby seeds.
    seed = cfg.seed + (epoch - 1) * 7919 if cfg.augment_fresh else cfg.seed
    copies = augment(examples, cfg.augment, seed, gazetteer, keep_overlaps=cfg.augment_nested)
    return training_windows(copies, cfg.max_length)


def _batches(n_items: int, lengths: list[int], size: int, rng: random.Random) -> list[list[int]]:
    idx = list(range(n_items))
    rng.shuffle(idx)
    chunks = [idx[i : i + size * 50] for i in range(0, n_items, size * 50)]
    batches = []
    for chunk in chunks:
        chunk.sort(key=lambda k: lengths[k])
        batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches


def train(cfg: TrainConfig) -> Manifest:
    """Train, keep the best epoch on validation, export the model directory, return its manifest."""
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    fmt, examples = examples_for(cfg.task, cfg.data)
    if cfg.limit:
        examples = examples[: cfg.limit]
    reference = load_reference(cfg.refit_from) if cfg.refit_from else None
    if reference is not None:
        train_ex, val_ex = examples, []
    else:
        train_ex, val_ex = split(examples, cfg.val_fraction, cfg.seed)
    if not train_ex:
        raise TrainingError(
            f"no training records left: {len(examples)} record(s), {len(val_ex)} held out for "
            "validation (more data, or a smaller --val-fraction)"
        )
    if cfg.task == "ner":
        codes = sorted({s.label for e in examples for s in e.spans})
    else:
        codes = sorted({e.label or "" for e in examples}, key=lambda c: (c != "negative", c))
    if reference is not None:
        _check_reference(cfg, reference, codes)
    labels = [label_for(c) for c in codes]
    index = {c: i for i, c in enumerate(codes)}
    lexicon = Lexicon.load(cfg.lexicon) if cfg.lexicon else Lexicon(set())
    vocab = Vocab.build(e.text for e in train_ex)
    fresh: Callable[[int], list[Example]] | None = None
    n_fixed = 0
    if cfg.task == "ner":
        copies = partial(epoch_copies, cfg, train_ex, _gazetteer(cfg, codes))
        train_items = training_windows(train_ex, cfg.max_length)
        n_fixed = len(train_items)
        train_items += copies(1)
        fresh = copies if cfg.augment_fresh and cfg.augment else None
    else:
        train_items = [Example(e.text[: cfg.max_length], [], e.label) for e in train_ex]
    ngrams = (
        NgramIndex.build(e.text for e in train_items)
        if cfg.task == "classification" and cfg.linear
        else None
    )
    net_cfg = NetConfig(
        n_chars=len(vocab.chars),
        n_bigrams=len(vocab.bigrams),
        n_labels=len(codes),
        task=cfg.task,
        hidden=cfg.hidden,
        layers=cfg.layers,
        dropout=cfg.dropout,
        wide=cfg.wide,
        linear=cfg.linear,
        n_ngrams=len(ngrams) if ngrams else 0,
        lex_features=lexicon.n_features,
    )
    if reference is not None:
        check_network(reference, net_cfg.to_dict())
    manifest = Manifest(
        name=cfg.name,
        version=cfg.version,
        task=cfg.task,  # type: ignore[arg-type]
        labels=labels,
        max_length=served_window(train_items[: n_fixed or len(train_items)], cfg.max_length),
        nested=cfg.nested,
        description=cfg.description,
        architecture="char+bigram+lexicon BiLSTM"
        + (f" ({cfg.layers} layers), " if cfg.layers > 1 else ", ")
        + ("GlobalPointer span head" if cfg.task == "ner" else "max/mean pooling head"),
    )
    encoder = _encoder(vocab, lexicon, ngrams)

    def encode(text: str) -> dict[str, np.ndarray]:
        return encode_batch([text], vocab, lexicon)

    feats = [encode(e.text) for e in tqdm(train_items, desc="features", file=sys.stderr)]
    lengths = [len(e.text) for e in train_items]
    pretrained, pretrain_note = _pretrain(cfg, net_cfg, train_ex, val_ex, vocab, lexicon)
    trained = []
    for member in range(cfg.members):
        seed = cfg.seed + member
        torch.manual_seed(seed)
        member_cfg = replace(net_cfg, linear=False) if cfg.members > 1 else net_cfg
        member_net = Net(member_cfg)
        if pretrained is not None:
            member_net.encoder.load_state_dict(pretrained)
        trained.append(
            _fit_net(
                cfg,
                member_net,
                Model(manifest, TorchBackend(member_net), encoder),
                EpochData(
                    train_items,
                    feats,
                    lengths,
                    val_ex,
                    index,
                    fresh=fresh,
                    n_fixed=n_fixed,
                    encode=encode,
                ),
                seed,
                label=f"member {member + 1}/{cfg.members}: " if cfg.members > 1 else "",
                replay=reference.schedule(seed) if reference else None,
            )
        )
    net: TrainedNet = trained[0][0]
    history = [h for t in trained for h in t[1]]
    best_epoch = trained[-1][2]
    ensemble_note = ""
    if cfg.members > 1:
        net = Ensemble(net_cfg, [t[0] for t in trained])
    if cfg.members > 1 and val_ex:
        # Each member's own validation score and the average's, before the linear part: the
        # evidence for (or against) shipping several networks instead of one.
        alone = [_score(cfg, Model(manifest, TorchBackend(t[0]), encoder), val_ex) for t in trained]
        averaged = _score(cfg, Model(manifest, TorchBackend(net), encoder), val_ex)
        ensemble_note = (
            f"{cfg.members} networks (seeds {cfg.seed}-{cfg.seed + cfg.members - 1}), logits "
            f"averaged; validation alone {alone}, averaged {averaged:.2f}"
            + (" before the linear part; " if cfg.linear else "; ")
        )
        tqdm.write(ensemble_note, file=sys.stderr)
    evaluator = Model(manifest, TorchBackend(net), encoder)
    net.eval()
    linear_info: dict[str, float] = {}
    if ngrams is not None:
        from nluserve.train.linear import attach

        def val_accuracy() -> float:
            return float(evaluate(evaluator, val_ex)["accuracy"])  # type: ignore[arg-type]

        linear_info = attach(
            net,
            ngrams,
            train_items,
            val_ex,
            index,
            val_accuracy,
            reference.linear if reference else None,
        )
    fitted = _Fitted(net, net_cfg, manifest, vocab, lexicon, ngrams)
    if reference is not None:
        return _export_refit(cfg, reference, fitted, examples, fmt, history)
    if cfg.task == "ner" and cfg.calibrate:
        manifest = _calibrate(manifest, net, encoder, val_ex)
        evaluator = Model(manifest, TorchBackend(net), encoder)
    calibration: dict[str, float] = {}
    if cfg.task == "classification" and cfg.calibrate:
        manifest, calibration = _calibrate_temperature(manifest, net, encoder, val_ex)
        evaluator = Model(manifest, TorchBackend(net), encoder)
    final = evaluate(evaluator, val_ex)
    if calibration:
        final["calibration"] = calibration
    from nluserve.models.manifest import TrainingInfo

    notes = (
        pretrain_note
        + ensemble_note
        + (f"linear part {linear_info}; " if linear_info else "")
        + _epoch_note(cfg, best_epoch, len(trained[-1][1]))
        + f"; validation = seeded {cfg.val_fraction:.0%} of the training file, never trained on"
    )
    training = _provenance(cfg, fmt) | {
        "n_train": len(train_ex),
        "n_validation": len(val_ex),
        "notes": notes,
    }
    manifest = manifest.model_copy(
        update={
            "training": TrainingInfo.model_validate(training),
            "metrics": {"validation": final},
        }
    )
    return _export(cfg, replace(fitted, manifest=manifest), history)


def _check_reference(cfg: TrainConfig, reference: Reference, codes: list[str]) -> None:
    """Refuse a refit whose recipe cannot match the validated run's."""
    ref = reference.manifest
    if ref.task != cfg.task or [lab.code for lab in ref.labels] != [
        label_for(c).code for c in codes
    ]:
        raise RefitError(f"{reference.path} was trained for other labels or another task")
    if cfg.swa_from != reference.swa_from:
        raise RefitError(
            f"{reference.path} averaged weights from epoch {reference.swa_from}; "
            f"pass --swa-from {reference.swa_from}"
        )
    if cfg.linear != bool(reference.linear):
        raise RefitError(f"{reference.path} {'had' if reference.linear else 'had no'} linear part")
    if len(reference.epochs) != cfg.members:
        raise RefitError(f"{reference.path} trained {len(reference.epochs)} network(s)")
    chosen = {name: getattr(cfg, name) for name in RECIPE_FIELDS}
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.name in chosen}
    check_recipe(reference, chosen, defaults)


@dataclass
class _Fitted:
    """A trained network and everything its model directory ships with it."""

    net: TrainedNet
    net_cfg: NetConfig
    manifest: Manifest
    vocab: Vocab
    lexicon: Lexicon
    ngrams: NgramIndex | None


def _export_refit(
    cfg: TrainConfig,
    reference: Reference,
    fitted: _Fitted,
    examples: list[Example],
    fmt: str,
    history: list[dict[str, float | None]],
) -> Manifest:
    from nluserve.train.refit import refit_manifest

    ref = reference.manifest
    calibrated = fitted.manifest.model_copy(
        update={"threshold": ref.threshold, "temperature": ref.temperature}
    )
    evaluator = Model(
        calibrated, TorchBackend(fitted.net), _encoder(fitted.vocab, fitted.lexicon, fitted.ngrams)
    )
    fraction, seed = reference.former_split(len(examples))
    former = split(examples, fraction, seed)[1]
    fit = {k: v for k, v in evaluate(evaluator, former).items() if k != "per_label"}
    tqdm.write(f"fit on the former validation records (seen in training): {fit}", file=sys.stderr)
    manifest = refit_manifest(
        calibrated,
        reference,
        len(examples),
        _provenance(cfg, fmt),
        fit,
    )
    return _export(cfg, replace(fitted, manifest=manifest), history)


def _provenance(cfg: TrainConfig, fmt: str) -> dict[str, object]:
    """What data and command produced the weights (the manifest's ``training`` fields)."""
    from nluserve.models.store import sha256_file

    return {
        "data": f"{cfg.data.parent.name}/{cfg.data.name} ({fmt})",
        "data_sha256": sha256_file(cfg.data),
        "seed": cfg.seed,
        "command": cfg.command,
    }


def _export(
    cfg: TrainConfig, fitted: _Fitted, history: Sequence[dict[str, float | None]]
) -> Manifest:
    """Write the model directory: graph, manifest, vocabulary, lexicon and training files."""
    from nluserve.train.export import export_model_dir

    extra = {
        "net_config.json": json.dumps(fitted.net_cfg.to_dict(), indent=2),
        "history.json": json.dumps(list(history), indent=2),
    }
    if fitted.ngrams is not None:
        extra[NGRAMS_FILE] = json.dumps(list(fitted.ngrams.ids), ensure_ascii=False)
    return export_model_dir(
        fitted.net,
        fitted.manifest,
        fitted.vocab,
        fitted.lexicon,
        cfg.out,
        extra,
        compact=cfg.compact,
    )


def _pretrain(
    cfg: TrainConfig,
    net_cfg: NetConfig,
    train_ex: list[Example],
    val_ex: list[Example],
    vocab: Vocab,
    lexicon: Lexicon,
) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The pretrained encoder's weights (or None) and a note for the manifest."""
    if cfg.pretrain_epochs <= 0:
        return None, ""
    # Validation sentences stay unseen, even unlabelled: an extra corpus may be the training
    # file itself, or hold the same sentences.
    held_out = {e.text for e in val_ex}
    extra = [t for t in load_texts(cfg.pretrain_data) if t not in held_out]
    texts = [e.text for e in train_ex] + extra
    torch.manual_seed(cfg.seed)
    encoder = Encoder(net_cfg)
    history = pretrain(
        encoder,
        texts,
        vocab,
        lexicon,
        PretrainConfig(
            epochs=cfg.pretrain_epochs,
            max_length=cfg.max_length,
            max_minutes=cfg.pretrain_minutes,
            seed=cfg.seed,
        ),
        _collate,
    )
    last = history[-1]
    note = (
        f"encoder pretrained on masked characters: {len(texts)} texts "
        f"({sum(map(len, texts))} characters, validation excluded), {last['epoch']} epochs, "
        f"masked accuracy {last['masked_accuracy']}; "
    )
    return {k: v.detach().clone() for k, v in encoder.state_dict().items()}, note


@dataclass
class EpochData:
    items: list[Example]
    feats: list[dict[str, np.ndarray]]
    lengths: list[int]
    val: list[Example]
    index: dict[str, int]
    # --augment-fresh: an epoch's augmented copies, which follow the first n_fixed items.
    fresh: Callable[[int], list[Example]] | None = None
    n_fixed: int = 0
    encode: Callable[[str], dict[str, np.ndarray]] | None = None  # one text's features
    epoch: int = 1

    def __post_init__(self) -> None:
        # Own lists: for_epoch swaps copies in place, and each ensemble member starts at epoch 1.
        self.items, self.feats, self.lengths = (
            list(self.items),
            list(self.feats),
            list(self.lengths),
        )

    def for_epoch(self, epoch: int) -> None:
        """With --augment-fresh, swap in that epoch's copies (a fresh draw of replacements)."""
        if self.fresh is None or epoch == self.epoch:
            return
        assert self.encode is not None
        copies = self.fresh(epoch)
        self.items[self.n_fixed :] = copies
        self.feats[self.n_fixed :] = [self.encode(e.text) for e in copies]
        self.lengths[self.n_fixed :] = [len(e.text) for e in copies]
        self.epoch = epoch


def _fit_net(
    cfg: TrainConfig,
    net: TrainedNet,
    evaluator: Model,
    data: EpochData,
    seed: int,
    label: str = "",
    replay: list[float] | None = None,
) -> tuple[Net, list[dict[str, float | None]], int]:
    """One network's epochs: (the averaged or best weights loaded, history, last/best epoch).

    With ``replay`` (a refit: no validation records) the epochs are the replayed run's and its
    validation scores drive the step-size schedule, so it halves at the same epochs."""
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    # Halve the step size whenever validation stalls: late epochs refine instead of overfitting.
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=1)
    rng = random.Random(seed)
    hiding = torch.Generator().manual_seed(seed)
    best_score, best_state, best_epoch, stale = -1.0, None, 0, 0
    # Weight averaging (SWA, Izmailov et al. 2018): on a few thousand reviews validation accuracy
    # swings by two points from one epoch to the next, so picking the best epoch picks noise.
    averaged = AveragedModel(net) if cfg.swa_from else None
    started = time.monotonic()
    history: list[dict[str, float | None]] = []
    for epoch in range(1, (len(replay) if replay is not None else cfg.epochs) + 1):
        net.train()
        data.for_epoch(epoch)
        batches = _batches(len(data.items), data.lengths, cfg.batch_size, rng)
        bar = tqdm(batches, desc=f"{label}epoch {epoch}", file=sys.stderr, mininterval=2.0)
        running = 0.0
        for step, batch in enumerate(bar, 1):
            inputs = _collate([data.feats[k] for k in batch])
            if cfg.char_dropout:
                # Word dropout (Lample et al. 2016) on characters: the network must also read
                # an entity from its context, as it must for names it never saw.
                inputs[:4] = mask_inputs(inputs[:4], cfg.char_dropout, hiding)[0]
            out = net(*inputs)
            target = _target(cfg, data, batch, out.shape)
            loss = _loss(cfg, out, target)
            opt.zero_grad()
            loss.backward()
            if cfg.adversarial:
                adversarial_backward(
                    net,
                    lambda: _loss(cfg, net(*inputs), target),  # noqa: B023  (runs right here)
                    cfg.adversarial,
                )
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
            bar.set_postfix(loss=f"{running:.4f}", best=f"{best_score:.2f}")
        net.eval()
        measured = _score(cfg, evaluator, data.val) if replay is None else None
        score = measured if measured is not None else replay[epoch - 1]  # type: ignore[index]
        elapsed = (time.monotonic() - started) / 60
        history.append(
            {"epoch": epoch, "loss": round(running, 4), "val": measured}
            | {"lr": opt.param_groups[0]["lr"], "minutes": round(elapsed, 1)}
            | ({"seed": seed} if cfg.members > 1 else {})
        )
        shown = f"validation {score:.2f}" if measured is not None else "refit"
        tqdm.write(
            f"{label}epoch {epoch}: loss {running:.4f} {shown} ({elapsed:.1f} min)",
            file=sys.stderr,
        )
        if averaged is not None and cfg.swa_from and epoch >= cfg.swa_from:
            # A constant step size while averaging, as SWA does; no early stop on validation.
            averaged.update_parameters(net)
            best_epoch = epoch
            if replay is None and elapsed >= cfg.max_minutes / cfg.members:
                break
            continue
        sched.step(score)
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
        if stale >= cfg.patience or elapsed >= cfg.max_minutes / cfg.members:
            break
    if averaged is not None and averaged.n_averaged.item() > 0:
        net.load_state_dict(averaged.module.state_dict())
    else:
        assert best_state is not None
        net.load_state_dict(best_state)
    net.eval()
    return net, history, best_epoch


def _target(cfg: TrainConfig, data: EpochData, batch: list[int], shape: torch.Size) -> torch.Tensor:
    if cfg.task == "ner":
        return _span_target([data.items[k] for k in batch], data.index, shape)
    return torch.tensor([data.index[data.items[k].label or ""] for k in batch])


def _loss(cfg: TrainConfig, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if cfg.task == "ner":
        return span_loss(out, target)
    return torch.nn.functional.cross_entropy(out, target)


def _epoch_note(cfg: TrainConfig, best_epoch: int, n_epochs: int) -> str:
    if cfg.swa_from and best_epoch >= cfg.swa_from:
        return f"weights averaged over epochs {cfg.swa_from}-{best_epoch} of {n_epochs}"
    return f"best epoch {best_epoch} of {n_epochs}"


class CachingBackend:
    """Runs each distinct batch once: calibration re-decodes the same outputs many times."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.cache: dict[bytes, np.ndarray] = {}

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        key = feeds["chars"].tobytes() + feeds["lengths"].tobytes()
        if key not in self.cache:
            self.cache[key] = self.inner.run(feeds)
        return self.cache[key]


def _calibrate(manifest: Manifest, net: TrainedNet, encoder, val_ex: list[Example]) -> Manifest:  # type: ignore[no-untyped-def]
    """Choose the span threshold with the best validation F1 (model selection, like the epoch)."""
    backend = CachingBackend(TorchBackend(net))
    best_t, best_f = 0.0, -1.0
    for t in (0.0, -0.25, -0.5, -0.75, -1.0, -1.5, -2.0, 0.25, 0.5, 1.0):
        f1 = float(
            evaluate(Model(manifest.model_copy(update={"threshold": t}), backend, encoder), val_ex)[
                "f1"
            ]
        )  # type: ignore[arg-type]
        tqdm.write(f"threshold {t:+.2f}: validation F1 {f1:.2f}", file=sys.stderr)
        if f1 > best_f + 1e-9:
            best_t, best_f = t, f1
    return manifest.model_copy(update={"threshold": best_t})


def _calibrate_temperature(  # type: ignore[no-untyped-def]
    manifest: Manifest, net: TrainedNet, encoder, val_ex: list[Example]
) -> tuple[Manifest, dict[str, float]]:
    """Choose the logit temperature with the best validation NLL (train/temperature.py)."""
    from nluserve.train import temperature

    backend = CachingBackend(TorchBackend(net))
    texts = [e.text for e in val_ex]

    def predict(t: float) -> list[ClassResult]:
        model = Model(manifest.model_copy(update={"temperature": t}), backend, encoder)
        return [r for r in model.predict(texts) if isinstance(r, ClassResult)]

    found = temperature.fit(predict, val_ex)
    tqdm.write(f"temperature: {found}", file=sys.stderr)
    return manifest.model_copy(update={"temperature": found["temperature"]}), found


def _score(cfg: TrainConfig, model: Model, examples: Sequence[Example]) -> float:
    return float(evaluate(model, examples)["f1" if cfg.task == "ner" else "accuracy"])  # type: ignore[arg-type]


def evaluate(model: Model, examples: Sequence[Example]) -> dict[str, object]:
    """Validation metrics through the runtime's own predict path."""
    texts = [e.text for e in examples]
    preds = model.predict(texts)
    if model.task == "ner":
        return score_ner(examples, preds)
    return score_classification(examples, preds)


def _encoder(vocab: Vocab, lexicon: Lexicon, ngrams: NgramIndex | None = None):  # type: ignore[no-untyped-def]
    from nluserve.runtime.encoders import CharEncoder

    return CharEncoder(vocab, lexicon, ngrams)


def _collate(items: list[dict[str, np.ndarray]]) -> list[torch.Tensor]:
    width = max(int(it["lengths"][0]) for it in items)
    n = len(items)
    chars = np.zeros((n, width), dtype=np.int64)
    bigrams = np.zeros((n, width), dtype=np.int64)
    lex = np.zeros((n, width, items[0]["lexicon"].shape[-1]), dtype=np.float32)
    lengths = np.zeros((n,), dtype=np.int64)
    for row, it in enumerate(items):
        m = it["chars"].shape[1]
        chars[row, :m] = it["chars"][0]
        bigrams[row, :m] = it["bigrams"][0]
        lex[row, :m] = it["lexicon"][0]
        lengths[row] = it["lengths"][0]
    return [torch.from_numpy(a) for a in (chars, bigrams, lex, lengths)]


def _span_target(items: list[Example], index: dict[str, int], shape: torch.Size) -> torch.Tensor:
    target = torch.zeros(shape)
    for row, ex in enumerate(items):
        for s in ex.spans:
            target[row, index[s.label], s.start, s.end - 1] = 1.0
    return target

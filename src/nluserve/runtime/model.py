"""A loaded model: text in, entities or class scores out, for any number and length of texts."""

from __future__ import annotations

import os
import threading
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from nluserve.errors import ModelIntegrityError, UnknownLabelError
from nluserve.models import store
from nluserve.models.manifest import Label, Manifest
from nluserve.runtime import windows
from nluserve.runtime.decode import Span, select_flat, softmax
from nluserve.runtime.decoders import SpanDecoder, decoder_for
from nluserve.runtime.results import ClassResult, Entity, NerResult, Result


class Backend(Protocol):
    """Whatever runs the graph: ONNX Runtime in production, PyTorch during training."""

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Outputs of one padded batch."""
        ...


class Encoder(Protocol):
    """Turns texts (each at most max_length code points) into graph inputs.

    It may add arrays the graph does not declare (token offsets) for the span decoder to read.
    """

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Padded input arrays for one batch."""
        ...


@dataclass(frozen=True)
class _Piece:
    """One window of one input text."""

    text_index: int
    window: windows.Window


@dataclass(frozen=True)
class _Output:
    """What one window's run left: its class logits, or its entity spans, decoded as the run
    ends. A span model's output is labels x length x length floats a window; kept until a
    call's last run, a 100,000-character call held over a gigabyte, and the worker kept it."""

    logits: np.ndarray | None
    spans: list[Span] | None


class Model:
    """Runs a model directory's graph; thread-safe, holds no per-call state."""

    def __init__(
        self,
        manifest: Manifest,
        backend: Backend,
        encoder: Encoder,
        path: Path | None = None,
        batch_tokens: int = 4096,
        max_batch: int = 32,
        decoder: SpanDecoder | None = None,
    ) -> None:
        self.manifest = manifest
        self.backend = backend
        self.encoder = encoder
        if decoder is None and manifest.task == "ner":
            decoder = decoder_for(manifest)
        self.decoder = decoder
        self.path = path
        self.batch_tokens = batch_tokens
        self.max_batch = max_batch
        self._by_name: dict[str, str] = {}
        for label in manifest.labels:
            for name in label.names():
                self._by_name.setdefault(name.lower(), label.code)

    @property
    def name(self) -> str:
        """The model's name from its manifest."""
        return self.manifest.name

    @property
    def task(self) -> str:
        """``ner`` or ``classification``."""
        return self.manifest.task

    @property
    def labels(self) -> list[Label]:
        """The model's labels with display names."""
        return self.manifest.labels

    def resolve_labels(self, names: Sequence[str]) -> set[str]:
        """Map codes, display names or aliases to label codes; unknown names raise."""
        codes, unknown = set(), []
        for name in names:
            code = self._by_name.get(name.strip().lower())
            if code is None:
                unknown.append(name)
            else:
                codes.add(code)
        if unknown:
            valid = list(dict.fromkeys(n for lab in self.labels for n in (lab.code, lab.zh)))
            raise UnknownLabelError(unknown, valid)
        return codes

    def predict(
        self,
        texts: Sequence[str],
        labels: Sequence[str] | None = None,
        pool: Executor | None = None,
        ways: int = 1,
        yield_to: Callable[[], bool] | None = None,
        released: Callable[[], None] | None = None,
    ) -> list[Result]:
        """One result per text, in order. ``labels`` keeps only those entity types.

        ``ways`` > 1: this call's runs go side by side, on the calling thread and ``ways - 1``
        of ``pool``'s (the batcher lends idle runners: runtime/batcher.py). A lent runner
        stops taking runs once ``yield_to()`` is true, and calls ``released()`` as it leaves.
        """
        # A bare string is a sequence of one-character texts: almost surely not what was meant.
        if isinstance(texts, str) or isinstance(labels, str):
            raise TypeError(
                "texts and labels are lists of strings, not one string: predict([text])"
            )
        if not all(isinstance(t, str) for t in texts):
            bad = next(t for t in texts if not isinstance(t, str))
            raise TypeError(f"texts must be strings, not {type(bad).__name__}")
        keep = self.resolve_labels(labels) if labels else None
        pieces = [
            _Piece(i, w)
            for i, text in enumerate(texts)
            for w in windows.split(text, self.manifest.max_length)
        ]
        outputs = self._run_pieces(texts, pieces, pool, ways, yield_to, released)
        if self.task == "ner":
            return self._merge_entities(texts, pieces, outputs, keep)
        return self._merge_classes(texts, pieces, outputs)

    def _run_pieces(
        self,
        texts: Sequence[str],
        pieces: list[_Piece],
        pool: Executor | None = None,
        ways: int = 1,
        yield_to: Callable[[], bool] | None = None,
        released: Callable[[], None] | None = None,
    ) -> list[_Output]:
        """Run windows in length-sorted batches bounded by count, tokens and padding.

        A run pads every window to its longest, so one long window in a run of short ones
        multiplies their cost (quadratically for span models, whose output is length x length).
        A new run starts when a window would be padded past ``max_padding(shortest)``: measured
        on the bundled char model, a mixed batch of 32 texts ran about 1.6x faster split this way.
        """
        order = sorted(
            range(len(pieces)), key=lambda k: pieces[k].window.end - pieces[k].window.start
        )
        batches: list[list[int]] = []
        batch: list[int] = []
        limit = 0
        for k in order:
            width = max(1, pieces[k].window.end - pieces[k].window.start)
            if batch and (
                len(batch) + 1 > self.max_batch
                or (len(batch) + 1) * width > self.batch_tokens
                or width > limit
            ):
                batches.append(batch)
                batch = []
            if not batch:
                limit = max_padding(width)
            batch.append(k)
        if batch:
            batches.append(batch)
        results: list[_Output | None] = [None] * len(pieces)
        run_many = getattr(self.backend, "run_many", None)
        if run_many is not None and len(batches) > 1:
            # The inference process runs them side by side on its idle slots, where one
            # after the other they would keep one core busy and the rest idle.
            all_feeds = [self.encoder(self._chunk(texts, pieces, b)) for b in batches]
            for b, feeds, out in zip(batches, all_feeds, run_many(all_feeds), strict=True):
                self._keep(b, feeds, out, results, pieces)
        elif pool is not None and ways > 1:
            self._side_by_side(
                texts, pieces, _spread(batches, ways), results, pool, ways, yield_to, released
            )
        else:
            for b in batches:
                feeds = self.encoder(self._chunk(texts, pieces, b))
                self._keep(b, feeds, self.backend.run(feeds), results, pieces)
        return [r for r in results if r is not None]

    def _side_by_side(
        self,
        texts: Sequence[str],
        pieces: list[_Piece],
        batches: list[list[int]],
        results: list[_Output | None],
        pool: Executor,
        ways: int,
        yield_to: Callable[[], bool] | None = None,
        released: Callable[[], None] | None = None,
    ) -> None:
        """Run ``batches`` on this thread and ``ways - 1`` of the pool's, each taking the next;
        a lent thread leaves once ``yield_to()`` says others wait (this thread finishes)."""
        todo = iter(batches)
        lock = threading.Lock()

        def work(lent: bool = False) -> None:
            try:
                while not (lent and yield_to is not None and yield_to()):
                    with lock:
                        batch = next(todo, None)
                    if batch is None:
                        return
                    feeds = self.encoder(self._chunk(texts, pieces, batch))
                    self._keep(batch, feeds, self.backend.run(feeds), results, pieces)
            finally:
                if lent and released is not None:
                    released()

        helpers = [pool.submit(work, True) for _ in range(min(ways, len(batches)) - 1)]
        try:
            work()
        finally:
            # Even when this thread's run failed: the borrowed runners are handed back only
            # once none of their runs is still on the session.
            wait(helpers)
        for helper in helpers:
            helper.result()

    @staticmethod
    def _chunk(texts: Sequence[str], pieces: list[_Piece], batch: list[int]) -> list[str]:
        return [
            texts[pieces[k].text_index][pieces[k].window.start : pieces[k].window.end]
            for k in batch
        ]

    def _keep(
        self,
        batch: list[int],
        feeds: dict[str, np.ndarray],
        out: np.ndarray,
        results: list[_Output | None],
        pieces: list[_Piece],
    ) -> None:
        for row, k in enumerate(batch):
            if self.decoder is None:
                results[k] = _Output(out[row].copy(), None)  # a row, not the batch's array
                continue
            w = pieces[k].window
            inputs = {name: array[row] for name, array in feeds.items()}
            results[k] = _Output(None, self.decoder(out[row], inputs, w.end - w.start))

    def _merge_entities(
        self,
        texts: Sequence[str],
        pieces: list[_Piece],
        outputs: list[_Output],
        keep: set[str] | None,
    ) -> list[Result]:
        assert self.decoder is not None  # __init__ sets one for every NER model
        best: list[dict[tuple[int, int, int], float]] = [{} for _ in texts]
        for piece, output in zip(pieces, outputs, strict=True):
            w = piece.window
            total = len(texts[piece.text_index])
            for span in output.spans or ():
                if windows.touches_interior_edge(span.start, span.end, w, total):
                    continue
                key = (w.start + span.start, w.start + span.end, span.label)
                found = best[piece.text_index]
                found[key] = max(found.get(key, 0.0), span.score)
        results: list[Result] = []
        for text, found in zip(texts, best, strict=True):
            spans = [(s, e, c, score) for (s, e, c), score in found.items()]
            if not self.manifest.nested:
                spans = _flat(spans)
            trimmed: dict[tuple[int, int, int], float] = {}
            for s, e, c, score in spans:
                s, e = _trim(text, s, e)
                if s < e and (keep is None or self.labels[c].code in keep):
                    trimmed[(s, e, c)] = max(score, trimmed.get((s, e, c), 0.0))
            ents = [
                Entity(text[s:e], self.labels[c].code, s, e, round(score, 4))
                for (s, e, c), score in sorted(trimmed.items())
            ]
            results.append(NerResult(ents))
        return results

    def _merge_classes(
        self, texts: Sequence[str], pieces: list[_Piece], outputs: list[_Output]
    ) -> list[Result]:
        n_labels = len(self.labels)
        sums = np.zeros((len(texts), n_labels))
        weights = np.zeros(len(texts))
        temperature = self.manifest.temperature
        for piece, output in zip(pieces, outputs, strict=True):
            weight = max(1, piece.window.end - piece.window.start)
            assert output.logits is not None  # a classification model has no decoder
            logits = output.logits.astype(np.float64) / temperature
            sums[piece.text_index] += weight * softmax(logits)
            weights[piece.text_index] += weight
        results: list[Result] = []
        for row in range(len(texts)):
            probs = sums[row] / weights[row]
            top = int(np.argmax(probs))
            scores = {
                lab.code: round(float(p), 4) for lab, p in zip(self.labels, probs, strict=True)
            }
            results.append(ClassResult(self.labels[top].code, round(float(probs[top]), 4), scores))
        return results


def _spread(batches: list[list[int]], ways: int) -> list[list[int]]:
    """Halve the largest batches until there are ``ways`` of them (or all are single windows)."""
    batches = list(batches)
    while len(batches) < ways:
        largest = max(range(len(batches)), key=lambda k: len(batches[k]), default=None)
        if largest is None or len(batches[largest]) < 2:
            break
        batch = batches.pop(largest)
        half = len(batch) // 2
        batches[largest:largest] = [batch[:half], batch[half:]]
    return batches


# The shortest expected run worth spreading over idle threads (the batcher's lent runners,
# the inference process's cut batches): below it, the hand-off to another thread and a run's
# own set-up cost more than running beside it gains. On 2 cores the bundled NER model ran two
# texts in 3.3 ms whole and 4.3 ms spread, eight in 9.3 and 8.1 ms; two BERT-base-size texts
# in 419 and 235 ms (bench/lone_call.py).
SPREAD_MIN_S = 0.005


def max_padding(shortest: int) -> int:
    """The longest window a run whose shortest window is ``shortest`` may pad to."""
    return max(shortest * 3 // 2, shortest + 16)


def _blank(ch: str) -> bool:
    """Whitespace, control and format characters (U+3000, NUL, ZWSP, BOM): never an
    entity's first or last character, though a model can reach into them from one."""
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf")


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and _blank(text[start]):
        start += 1
    while end > start and _blank(text[end - 1]):
        end -= 1
    return start, end


def _flat(spans: list[tuple[int, int, int, float]]) -> list[tuple[int, int, int, float]]:
    """Overlaps can reappear when windows are merged; keep the best-scoring ones."""
    chosen = select_flat([Span(s, e, c, score) for s, e, c, score in spans])
    return [(sp.start, sp.end, sp.label, sp.score) for sp in chosen]


def load_model(
    name_or_path: str | os.PathLike[str],
    threads: int | None = None,
    verify: bool = True,
    device: str = "cpu",
    remote: bool = False,
) -> Model:
    """Load a bundled model by name (``general``, ``medical``, ``sentiment``) or a model directory.

    ``device`` is ``cpu`` or ``cuda`` (onnxruntime-gpu's CUDA provider). ``remote``: the graph
    runs in the shared inference process (runtime/remote.py), which loads and verifies it;
    this process keeps only the vocabulary, lexicon and decoder.
    """
    from nluserve.runtime.encoders import encoder_for

    path = store.resolve(name_or_path)
    manifest = store.read_manifest(path)
    backend: Backend
    if remote:
        from nluserve.runtime.remote import RemoteBackend

        backend = RemoteBackend.from_env(manifest.name)
    else:
        from nluserve.runtime.session import OnnxBackend, providers_for

        if verify:
            store.verify(path, manifest)
        backend = OnnxBackend(
            path / manifest.graph, threads=threads, providers=providers_for(device)
        )
    encoder = encoder_for(manifest, path)
    lexicon = getattr(encoder, "lexicon", None)
    input_width = getattr(backend, "input_width", None)
    width = input_width("lexicon") if input_width else None
    # A lexicon file of another width than the graph's (typed against untyped) would fail
    # every request; fail the load instead, naming both.
    if lexicon is not None and width is not None and width != lexicon.n_features:
        raise ModelIntegrityError(
            f"{path}: lexicon.txt gives {lexicon.n_features} features per character, "
            f"the graph takes {width}"
        )
    return Model(manifest, backend, encoder, path=path)

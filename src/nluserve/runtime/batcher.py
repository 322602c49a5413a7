"""Dynamic batching: concurrent calls for one model share inference runs, off the event loop.

- Work-conserving (as Triton and TEI): when a runner is idle, a batch starts at once with
  whatever is queued; there is no wait timer adding latency at low load.
- Bounded by texts and by a token budget (widest window x windows, as TEI, counting every
  window a long text is cut into); an input bigger than the budget runs alone instead of
  joining, or blocking, the calls behind it.
- ``Slots``: the runs one process has going at once, shared by every model's batcher, so that
  three models do not mean three times the runs the cores can take. A freed slot goes to the
  model whose oldest queued call is oldest.
- The queue is bounded (in characters); beyond it ``Overloaded`` (503). A call whose deadline
  passes while queued is answered ``DeadlineExceeded`` (504) and never run (one that started
  runs to its end and is answered: it was run); a cancelled call (client gone) is dropped
  before inference.
- ``runners`` threads run batches concurrently on the one shared session: on a CPU, keeping
  every core busy with little padding beats large batches.
- A lone batch of several texts that starts while other runners idle borrows them: its runs
  (the model cuts it into runs of similar length, or into parts) go side by side instead of one
  after the other on one core. Only when its expected time, from recent batches, is at least
  ``SPREAD_MIN_S``; the borrowed runners take no other work meanwhile, so the session never
  runs more graphs at once than ``runners``. A borrowed runner goes back as soon as a call
  is queued (after its current run), so a long call never holds the cores against later
  ones. With the inference process the model's backend does this itself
  (runtime/runqueue.py), and the batcher borrows nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from nluserve.errors import NluserveError
from nluserve.runtime.model import SPREAD_MIN_S, Model
from nluserve.runtime.results import NerResult, Result


class Overloaded(NluserveError):
    """The queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__("the model queue is full; retry later")


class DeadlineExceeded(NluserveError):
    """The call waited longer than its deadline and was not run."""


class ShuttingDown(NluserveError):
    """The batcher no longer takes work."""


@dataclass(eq=False)
class Pending:
    """One queued call."""

    texts: list[str]
    future: asyncio.Future[list[Result]]
    deadline: float
    request_id: str
    chars: int
    longest: int
    windows: int  # runs of the model's window width it is cut into (at least one per text)
    queued_at: float = 0.0
    cancelled: bool = False
    started: bool = False


@dataclass(eq=False)
class _Running:
    """One batch handed to a runner thread."""

    items: list[Pending]
    work: Future[None] | None = None
    borrowed: int = 0  # idle runners lent to this batch's runs


class Slots:
    """Runs going at once in this process, shared by its batchers (all on one event loop)."""

    def __init__(self, total: int) -> None:
        self.idle = max(1, total)
        self.batchers: list[Batcher] = []

    def queued(self) -> bool:
        """Whether any model has a call waiting (read from runner threads too: a snapshot)."""
        return any(b._queue for b in self.batchers)

    def dispatch(self) -> None:
        """Give idle slots to queued work, the model with the oldest waiting call first."""
        while self.idle:
            ready = [b for b in self.batchers if b._queue and not b._stopped]
            if not ready:
                return
            ready.sort(key=lambda b: b._queue[0].queued_at)
            if not any(b._start_one() for b in ready):
                return


class Batcher:
    """Queues calls for one model and runs them in work-conserving batches."""

    def __init__(
        self,
        model: Model,
        runners: int,
        max_batch_texts: int,
        batch_tokens: int,
        max_queue_chars: int,
        observer: BatchObserver | None = None,
        slots: Slots | None = None,
    ) -> None:
        self.model = model
        self.runners = max(1, runners)
        self.max_batch_texts = max_batch_texts
        self.batch_tokens = batch_tokens
        self.max_queue_chars = max_queue_chars
        self.observer = observer
        self._queue: deque[Pending] = deque()
        self._queued_chars = 0
        # Shared with the other models' batchers, at most this batcher's own thread count.
        self.slots = slots or Slots(self.runners)
        self.slots.batchers.append(self)
        self._busy: set[_Running] = set()
        self._pool = ThreadPoolExecutor(self.runners, thread_name_prefix=f"infer-{model.name}")
        # Threads for borrowed runners: a separate pool, so a batch never waits on its own pool.
        self._helpers: ThreadPoolExecutor | None = None
        # Not on a GPU, where a batch runs about as fast whole as in parts, nor with the
        # inference process (run_many), which spreads a call over its own slots.
        on_cpu = (
            getattr(model.backend, "provider", "CPUExecutionProvider") == "CPUExecutionProvider"
        )
        if self.runners > 1 and on_cpu and not hasattr(model.backend, "run_many"):
            self._helpers = ThreadPoolExecutor(
                self.runners - 1, thread_name_prefix=f"spread-{model.name}"
            )
        self._window_s = 0.0  # recent seconds of run time per window, on one thread
        self._closed = False
        self._stopped = False  # the threads are gone: nothing more can start
        self._last_batch_s = 0.05

    @property
    def depth(self) -> int:
        """Calls waiting in the queue."""
        return len(self._queue)

    async def submit(self, texts: Sequence[str], deadline: float, request_id: str) -> list[Result]:
        """Queue ``texts``; resolves with one result per text once its batch has run."""
        if self._closed:
            raise ShuttingDown("the server is shutting down")
        chars = sum(len(t) for t in texts)
        if self._queue and self._queued_chars + chars > self.max_queue_chars:
            raise Overloaded(self._retry_after())
        loop = asyncio.get_running_loop()
        item = Pending(
            list(texts),
            loop.create_future(),
            deadline,
            request_id,
            chars,
            max((len(t) for t in texts), default=1),
            self._windows(texts),
            time.monotonic(),
        )
        self._queue.append(item)
        self._queued_chars += chars
        self._depth_changed()
        self._dispatch()
        # A timer and a plain await instead of wait_for(shield(...)): two fewer futures and
        # event-loop turns per call. A cancelled caller cancels the item's future, which every
        # step below already skips.
        timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._expire, item)
        try:
            return await item.future
        except asyncio.CancelledError:
            item.cancelled = True  # the client went away: drop the work before inference
            self._unqueue(item)
            raise
        finally:
            timer.cancel()

    def _expire(self, item: Pending) -> None:
        if item.started:
            return  # it runs now: its answer comes when the run ends, and it is no 504
        item.cancelled = True
        self._unqueue(item)
        if not item.future.done():
            item.future.set_exception(
                DeadlineExceeded("the call waited past its deadline and was not run")
            )

    def _unqueue(self, item: Pending) -> None:
        """Out of the queue's counts at once, not when a runner next looks: a queue full of
        calls nobody waits for would refuse new ones with 503."""
        if item.started:
            return
        with contextlib.suppress(ValueError):
            self._queue.remove(item)
            self._queued_chars -= item.chars
            self._depth_changed()

    def _depth_changed(self) -> None:
        if self.observer:
            self.observer.queue(self.model.name, len(self._queue))

    def _retry_after(self) -> int:
        waves = self._queued_chars / max(1, self.batch_tokens * self.runners)
        return max(1, round(waves * self._last_batch_s + 0.5))

    def _dispatch(self) -> None:
        """Start batches while a slot is idle and work is queued (for any model)."""
        self.slots.dispatch()

    def _start_one(self) -> bool:
        """Start one batch on an idle slot; False when nothing live is queued or every one of
        this batcher's runner threads is busy."""
        if self._stopped or len(self._busy) >= self.runners:
            return False
        batch = self._take()
        if not batch:
            return False
        self.slots.idle -= 1
        running = _Running(batch, borrowed=self._borrow(batch))
        self._busy.add(running)
        running.work = self._pool.submit(self._run, running, asyncio.get_running_loop())
        return True

    def _borrow(self, batch: list[Pending]) -> int:
        """Idle slots this batch may use beside its own (none while calls are queued)."""
        if self._helpers is None or self.slots.queued() or not self.slots.idle:
            return 0
        runs = sum(item.windows for item in batch)
        if runs < 2 or self._window_s * runs < SPREAD_MIN_S:
            return 0
        borrowed = min(self.slots.idle, runs - 1, self.runners - 1)
        self.slots.idle -= borrowed
        return borrowed

    def _give_back(self, running: _Running) -> None:
        """A borrowed runner left its batch early (a call was queued): its slot is free."""
        if running in self._busy and running.borrowed:
            running.borrowed -= 1
            self.slots.idle += 1
            self._dispatch()

    def _windows(self, texts: Sequence[str]) -> int:
        """About how many windows the model cuts these texts into (at least one each)."""
        size = self.model.manifest.max_length
        return sum(max(1, -(-len(t) // size)) for t in texts)

    def _take(self) -> list[Pending]:
        """Oldest live calls first, up to the text count and the padded-token budget."""
        depth = len(self._queue)
        batch = self._fill()
        if len(self._queue) != depth:
            self._depth_changed()
        return batch

    def _fill(self) -> list[Pending]:
        batch: list[Pending] = []
        n_texts = n_windows = 0
        longest = 0
        now = time.monotonic()
        while self._queue:
            item = self._queue[0]
            if item.cancelled or item.deadline <= now:
                self._queue.popleft()
                self._queued_chars -= item.chars
                self._drop(item)
                continue
            width = max(longest, min(item.longest, self.model.manifest.max_length))
            count = n_texts + len(item.texts)
            runs = n_windows + item.windows
            if batch and (count > self.max_batch_texts or width * runs > self.batch_tokens):
                break
            self._queue.popleft()
            self._queued_chars -= item.chars
            item.started = True
            batch.append(item)
            n_texts, n_windows, longest = count, runs, width
            if width * runs > self.batch_tokens:
                break  # over the budget alone: nothing joins it
        return batch

    def _drop(self, item: Pending) -> None:
        # Not counted here: the HTTP layer counts every rejection once, by its reason.
        if not item.future.done():
            item.future.set_exception(DeadlineExceeded("deadline passed while queued"))
            item.future.exception()  # mark retrieved: nobody may be awaiting a cancelled call

    def _run(self, running: _Running, loop: asyncio.AbstractEventLoop) -> None:
        """In a runner thread: one inference run, its outcome handed back to the event loop."""
        results: list[Result] | None = None
        error: BaseException | None = None
        try:
            results = self._infer(running.items, 1 + running.borrowed, running, loop)
        except BaseException as exc:  # every waiting call gets it, as with a future
            error = exc
        # RuntimeError: the event loop is closed, nobody is waiting for these answers any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._finished, running, results, error)

    def _infer(
        self,
        batch: list[Pending],
        ways: int = 1,
        running: _Running | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> list[Result]:
        texts = [t for item in batch for t in item.texts]
        started = time.perf_counter()
        if ways > 1 and self._helpers is not None:

            def released() -> None:  # in the borrowed runner's thread
                if running is not None and loop is not None:
                    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                        loop.call_soon_threadsafe(self._give_back, running)

            results = self.model.predict(
                texts, pool=self._helpers, ways=ways, yield_to=self.slots.queued, released=released
            )
        else:
            results = self.model.predict(texts)
        elapsed = time.perf_counter() - started
        if self._helpers is not None:  # only a batcher that can lend runners needs the estimate
            window_s = elapsed * ways / self._windows(texts)
            self._window_s = 0.8 * self._window_s + 0.2 * window_s if self._window_s else window_s
        self._last_batch_s = 0.8 * self._last_batch_s + 0.2 * elapsed
        if self.observer:
            self.observer.batch(self.model.name, len(texts), elapsed)
        return results

    def _finished(
        self, running: _Running, results: list[Result] | None, exc: BaseException | None
    ) -> None:
        if running not in self._busy:
            return  # already answered by close()
        self._busy.discard(running)
        self.slots.idle += 1 + running.borrowed
        offset = 0
        for item in running.items:
            start, offset = offset, offset + len(item.texts)
            if item.future.done():
                continue
            if exc is not None or results is None:
                item.future.set_exception(exc or ShuttingDown("stopped"))
                if item.cancelled:
                    item.future.exception()  # nobody awaits it any more
            else:
                item.future.set_result(results[start:offset])
        if not self._closed or self._queue:
            self._dispatch()

    async def close(self, timeout: float) -> None:
        """Stop taking work, let queued and running batches finish, then stop the threads."""
        self._closed = True
        end = time.monotonic() + timeout
        while (self._queue or self._busy) and time.monotonic() < end:
            await asyncio.sleep(0.01)
        self._stopped = True
        while self._queue:  # what the time did not let run: told so, never left waiting
            item = self._queue.popleft()
            self._queued_chars -= item.chars
            if not item.future.done():
                item.future.set_exception(ShuttingDown("the server is shutting down"))
                if item.cancelled:
                    item.future.exception()
        self._depth_changed()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._helpers is not None:
            self._helpers.shutdown(wait=False, cancel_futures=True)
        for running in list(self._busy):
            if running.work is not None and running.work.cancelled():
                self._finished(running, None, ShuttingDown("stopped"))


class BatchObserver:
    """Receives batch events (the metrics layer implements this)."""

    def batch(self, model: str, size: int, seconds: float) -> None:
        """A batch of ``size`` texts ran in ``seconds``."""

    def queue(self, model: str, depth: int) -> None:
        """``depth`` calls now wait for ``model``."""


def keep_labels(results: list[Result], codes: set[str] | None) -> list[Result]:
    """Apply a per-call schema to NER results computed for a shared batch."""
    if codes is None:
        return results
    return [
        NerResult([e for e in r.entities if e.label in codes]) if isinstance(r, NerResult) else r
        for r in results
    ]

"""Dynamic batching: concurrent calls for one model share inference runs, off the event loop.

- Work-conserving (as Triton and TEI): when a runner is idle, a batch starts at once with
  whatever is queued; there is no wait timer adding latency at low load.
- Bounded by texts and by a token budget (longest text x count, as TEI); an input bigger than
  the budget runs alone instead of blocking the queue.
- The queue is bounded (in characters); beyond it ``Overloaded`` (503). A call whose deadline
  passes while queued is answered ``DeadlineExceeded`` (504) and never run; a cancelled call
  (client gone) is dropped before inference.
- ``runners`` threads run batches concurrently on the one shared session: on a CPU, keeping
  every core busy with little padding beats large batches.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from nluserve.errors import NluserveError
from nluserve.runtime.model import Model
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
    cancelled: bool = False
    started: bool = False


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
    ) -> None:
        self.model = model
        self.runners = max(1, runners)
        self.max_batch_texts = max_batch_texts
        self.batch_tokens = batch_tokens
        self.max_queue_chars = max_queue_chars
        self.observer = observer
        self._queue: deque[Pending] = deque()
        self._queued_chars = 0
        self._idle = self.runners
        self._busy: set[asyncio.Future[list[Result]]] = set()
        self._pool = ThreadPoolExecutor(self.runners, thread_name_prefix=f"infer-{model.name}")
        self._closed = False
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
        )
        self._queue.append(item)
        self._queued_chars += chars
        self._dispatch()
        try:
            return await asyncio.wait_for(
                asyncio.shield(item.future), max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            item.cancelled = True
            if (
                item.future.done()
                and not item.future.cancelled()
                and item.future.exception() is None
            ):
                return item.future.result()
            raise DeadlineExceeded("the call waited past its deadline and was not run") from None
        except asyncio.CancelledError:
            item.cancelled = True  # the client went away: drop the work before inference
            raise

    def _retry_after(self) -> int:
        waves = self._queued_chars / max(1, self.batch_tokens * self.runners)
        return max(1, round(waves * self._last_batch_s + 0.5))

    def _dispatch(self) -> None:
        """Start batches while a runner is idle and work is queued."""
        while self._idle and self._queue:
            batch = self._take()
            if not batch:
                return
            self._idle -= 1
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._pool, self._run, batch)
            self._busy.add(fut)
            fut.add_done_callback(functools.partial(self._finished, batch=batch))

    def _take(self) -> list[Pending]:
        """Oldest live calls first, up to the text count and the padded-token budget."""
        batch: list[Pending] = []
        n_texts = 0
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
            if batch and (count > self.max_batch_texts or width * count > self.batch_tokens):
                break
            self._queue.popleft()
            self._queued_chars -= item.chars
            item.started = True
            batch.append(item)
            n_texts, longest = count, width
        return batch

    def _drop(self, item: Pending) -> None:
        # Not counted here: the HTTP layer counts every rejection once, by its reason.
        if not item.future.done():
            item.future.set_exception(DeadlineExceeded("deadline passed while queued"))
            item.future.exception()  # mark retrieved: nobody may be awaiting a cancelled call

    def _run(self, batch: list[Pending]) -> list[Result]:
        texts = [t for item in batch for t in item.texts]
        started = time.perf_counter()
        results = self.model.predict(texts)
        elapsed = time.perf_counter() - started
        self._last_batch_s = 0.8 * self._last_batch_s + 0.2 * elapsed
        if self.observer:
            self.observer.batch(self.model.name, len(texts), elapsed)
        return results

    def _finished(self, fut: asyncio.Future[list[Result]], batch: list[Pending]) -> None:
        self._busy.discard(fut)
        self._idle += 1
        exc: BaseException | None = ShuttingDown("stopped") if fut.cancelled() else fut.exception()
        offset = 0
        for item in batch:
            start, offset = offset, offset + len(item.texts)
            if item.future.done():
                continue
            if exc is not None:
                item.future.set_exception(exc)
                if item.cancelled:
                    item.future.exception()  # nobody awaits it any more
            else:
                item.future.set_result(fut.result()[start:offset])
        if not self._closed or self._queue:
            self._dispatch()

    async def close(self, timeout: float) -> None:
        """Stop taking work, let queued and running batches finish, then stop the threads."""
        self._closed = True
        end = time.monotonic() + timeout
        while (self._queue or self._busy) and time.monotonic() < end:
            await asyncio.sleep(0.01)
        self._pool.shutdown(wait=False, cancel_futures=True)


class BatchObserver:
    """Receives batch events (the metrics layer implements this)."""

    def batch(self, model: str, size: int, seconds: float) -> None:
        """A batch of ``size`` texts ran in ``seconds``."""


def keep_labels(results: list[Result], codes: set[str] | None) -> list[Result]:
    """Apply a per-call schema to NER results computed for a shared batch."""
    if codes is None:
        return results
    return [
        NerResult([e for e in r.entities if e.label in codes]) if isinstance(r, NerResult) else r
        for r in results
    ]

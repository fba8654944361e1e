"""Dynamic micro-batching: requests that arrive together share one call of the model.

A `MicroBatcher` owns a queue and one worker task per model. The worker takes the first waiting item, waits
for more while they keep coming (each arrival gives `max_wait_ms` more, up to 8x `max_wait_ms` in all; a full
`max_batch` goes at once; no wait at all when the previous batch was a single item: at low load a lone request
should not pay it), and runs `fn(items)` in the model's own
thread, one batch at a time by default (the next batch gathers meanwhile); `parallel=N` keeps up to N batches in
flight in N threads (waiting items shared out between free threads), for models whose one call leaves cores
idle. Items carry a group key (e.g. the generation options of a chat request): only items of one group share a
call. When a batch fails, its items are retried one by one, so a bad input fails only its own request.

    batcher = MicroBatcher("minilm", embedder.embed, max_batch=32, max_wait_ms=5)
    vectors = await batcher.submit_many(["a", "b"])          # from request handlers, on the event loop
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["BatchStats", "MicroBatcher", "OverloadedError"]

In = TypeVar("In")
Out = TypeVar("Out")


log = logging.getLogger(__name__)

MAX_WAIT_FACTOR = 8
"""A batch waits at most this many times `max_wait_ms` in all while items keep arriving."""


class OverloadedError(RuntimeError):
    """The model's queue is full: the server answers 503 with `retry-after`."""


@dataclass
class BatchStats:
    """Counters for metrics and tests."""

    batches: int = 0
    items: int = 0
    sizes: list[int] = field(default_factory=list)

    def record(self, size: int) -> None:
        self.batches += 1
        self.items += size
        if len(self.sizes) < 10_000:
            self.sizes.append(size)


@dataclass
class _Item:
    value: Any
    group: Hashable
    future: asyncio.Future[Any]


class MicroBatcher(Generic[In, Out]):
    """Gathers single items into batches for `fn(list[In]) -> list[Out]`.

    Args:
        name: the model's name (thread name, metrics label).
        fn: the batched call, e.g. `embedder.embed` or `classifier.batch`; it runs in a dedicated thread.
        max_batch: the most items per call.
        max_wait_ms: how long the first item waits for company (with `parallel` batches: while fewer items wait
            than a fair share of the work, waiting plus running, per batch).
        max_queue: the most items waiting; beyond it `submit` raises `OverloadedError`.
        on_batch: called with the size of each batch and the queue depth left (metrics).
        inline: call `fn` on the event loop instead of the model's thread (for non-blocking models only).
        parallel: batches in flight at once, each in its own thread (1: one at a time). Worth it when one call
            cannot keep the cores busy (a small model's Python dispatch runs on one core between its kernels).
    """

    def __init__(
        self,
        name: str,
        fn: Callable[[list[In]], Sequence[Out]],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 4096,
        on_batch: Callable[[int, int], None] | None = None,
        inline: bool = False,
        parallel: int = 1,
    ) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {parallel}")
        self.name = name
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.inline = inline
        self.parallel = parallel
        self.stats = BatchStats()
        self._queue: deque[_Item] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = self._new_executor()
        self._closing = False
        self._running: set[asyncio.Task[None]] = set()
        self._in_flight = 0  # items in running batches
        self._last_size = 0  # a lone request after a lone request does not wait for company

    # ----------------------------------------------------------------------------------------- submitting
    @property
    def depth(self) -> int:
        """Items waiting (not yet in a running batch)."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """Whether a batch is running now or items wait."""
        return bool(self._running) or bool(self._queue)

    def _new_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(self.parallel, thread_name_prefix=f"yulian-batch-{self.name}")

    async def submit(self, value: In, group: Hashable = None) -> Out:
        """The result of `fn` for `value`, computed in a batch with other items of the same `group`."""
        return (await self.submit_many([value], group))[0]

    async def submit_many(self, values: Sequence[In], group: Hashable = None) -> list[Out]:
        """Results for several items of one request (they may be split over batches, and share them with others)."""
        if self._closing:
            raise OverloadedError(f"{self.name} is shutting down")
        if len(self._queue) + len(values) > self.max_queue:
            raise OverloadedError(f"{self.name}: {len(self._queue)} items are waiting (queue limit {self.max_queue})")
        loop = asyncio.get_running_loop()
        self._ensure_worker()
        items = [_Item(v, group, loop.create_future()) for v in values]
        self._queue.extend(items)
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        except asyncio.CancelledError:
            for item in items:  # the client left: drop what has not started
                item.future.cancel()
            raise

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:  # a new event loop needs its own worker
            self._loop = loop
            self._running, self._in_flight = set(), 0  # batches of an earlier loop are not this one's
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run(), name=f"yulian-batcher-{self.name}")

    # ----------------------------------------------------------------------------------------- worker
    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if len(self._running) >= self.parallel:  # every slot busy: the queue grows meanwhile
                await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
                continue
            if not self._queue:
                if self._closing:
                    if self._running:
                        await asyncio.wait(self._running)
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            first = self._queue[0]
            if len(self._queue) < self._target() and self.max_wait > 0 and self._last_size > 1:
                # gather while items keep coming: each arrival extends the wait by max_wait (a quiet gap of
                # max_wait ends it), up to MAX_WAIT_FACTOR x max_wait in all; a full batch goes at once
                start = time.monotonic()
                deadline = start + self.max_wait
                while len(self._queue) < self._target() and (left := deadline - time.monotonic()) > 0:
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), left)
                    except TimeoutError:
                        break
                    deadline = min(time.monotonic() + self.max_wait, start + MAX_WAIT_FACTOR * self.max_wait)
            batch = self._take(first.group, self._target())
            if not batch:
                continue
            task = loop.create_task(self._execute(loop, batch))
            self._running.add(task)
            self._in_flight += len(batch)
            task.add_done_callback(functools.partial(self._finished, items=len(batch)))

    def _target(self) -> int:
        """How many items the next batch takes: `max_batch`, or with parallel batches an equal share of the work
        (waiting + running items) per thread: at 32 clients and two threads, batches of 16 alternate, and the next
        one goes as soon as it matches the one running instead of waiting out `max_wait_ms` for a full 32."""
        if self.parallel == 1:
            return self.max_batch
        demand = len(self._queue) + self._in_flight
        return min(self.max_batch, max(1, -(-demand // self.parallel)))

    def _finished(self, task: asyncio.Task[None], items: int) -> None:
        self._running.discard(task)
        self._in_flight -= items
        if self._wakeup is not None:  # a slot is free and the share per batch changed: gather again
            self._wakeup.set()

    def _take(self, group: Hashable, size: int) -> list[_Item]:
        """Up to `size` live items of `group`, in arrival order; other groups keep their places."""
        batch: list[_Item] = []
        rest: deque[_Item] = deque()
        while self._queue and len(batch) < size:
            item = self._queue.popleft()
            if item.future.cancelled():
                continue
            (batch if item.group == group else rest).append(item)
        rest.extend(self._queue)
        self._queue = rest
        return batch

    async def _execute(self, loop: asyncio.AbstractEventLoop, batch: list[_Item]) -> None:
        try:
            await self._execute_batch(loop, batch)
        except Exception as error:  # outside the model call (a metrics callback...): the batch's requests fail
            log.error("%s: a batch failed outside the model: %s: %s", self.name, type(error).__name__, error)
            for item in batch:
                _settle(item.future, error=error)
        finally:  # cancelled at shutdown: no request waits forever
            for item in batch:
                _settle(item.future, error=OverloadedError(f"{self.name}: the batch of this request did not finish"))

    async def _execute_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Item]) -> None:
        self.stats.record(len(batch))
        self._last_size = len(batch)
        if self.on_batch is not None:
            self.on_batch(len(batch), len(self._queue))
        values = [item.value for item in batch]
        try:
            if self.inline:  # a non-blocking model (fakes, cheap functions): no thread hand-off
                results = self._call(values)
            else:
                results = await loop.run_in_executor(self._executor, self._call, values)
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0].future, error=error)
                return
            for item in batch:  # find the bad input: retry one by one
                try:
                    (result,) = await loop.run_in_executor(self._executor, self._call, [item.value])
                except Exception as single:
                    _settle(item.future, error=single)
                else:
                    _settle(item.future, result=result)
            return
        for item, result in zip(batch, results, strict=True):
            _settle(item.future, result=result)

    def _call(self, values: list[Any]) -> list[Any]:
        results = list(self.fn(values))
        if len(results) != len(values):
            raise RuntimeError(
                f"{self.name}: the batched call returned {len(results)} results for {len(values)} inputs"
            )
        return results

    # ----------------------------------------------------------------------------------------- shutdown
    def reopen(self) -> None:
        """Take items again after `drain` (an app started again, as test clients do)."""
        self._closing = False
        if self._executor._shutdown:
            self._executor = self._new_executor()

    async def drain(self, grace_s: float = 30.0) -> None:
        """Stop taking items, finish the queued ones (up to `grace_s` seconds), then stop the worker."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace_s)
            except TimeoutError:
                self._task.cancel()
                for running in list(self._running):  # their requests get 503 (`_execute` settles them)
                    running.cancel()
        for item in self._queue:
            _settle(item.future, error=OverloadedError(f"{self.name} shut down before this request ran"))
        self._queue.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _settle(future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)

"""Micro-batching: the requests of concurrent callers, handled in one
database call and one commit.

Under light load a batch holds one caller's request and leaves at once; under
heavy load the callers that arrive while a batch is in flight form the next
one, so throughput grows with load instead of lock contention.

A batch whose call fails for a reason that belongs to one request (bad data,
not a lost connection) is split in halves until the bad request is alone:
it alone gets the error, everyone else their real answer (``isolate_faults``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Request = TypeVar("Request")
Answer = TypeVar("Answer")

#: Handles a batch: one answer per request, in order; an exception in the
#: list is raised to that request's caller alone.
Handler = Callable[[list[Request]], Awaitable[Sequence[Answer | Exception]]]


def never(_: Exception) -> bool:
    return False


async def isolate_faults(
    handle: Handler[Request, Answer],
    requests: list[Request],
    *,
    is_item_fault: Callable[[Exception], bool],
    on_item_fault: Callable[[Exception], Exception] = lambda error: error,
) -> list[Answer | Exception]:
    """``handle(requests)``; if it raises an item fault, the halves are
    handled again one after the other (in order, so the requests keep their
    relative order) until the faulty request is alone, and it alone gets
    ``on_item_fault(error)``. Any other exception propagates: it is the
    batch's, not a request's.

    One bad request among n costs about 2 log2(n) more calls; a batch
    without one costs nothing more.
    """
    try:
        answers = list(await handle(requests))
    except Exception as error:
        if not is_item_fault(error):
            raise
        if len(requests) == 1:
            return [on_item_fault(error)]
        middle = len(requests) // 2
        first = await isolate_faults(
            handle, requests[:middle], is_item_fault=is_item_fault, on_item_fault=on_item_fault
        )
        second = await isolate_faults(
            handle, requests[middle:], is_item_fault=is_item_fault, on_item_fault=on_item_fault
        )
        return first + second
    if len(answers) != len(requests):
        raise RuntimeError(f"{len(answers)} answers for {len(requests)} requests")
    return answers


class MicroBatcher(Generic[Request, Answer]):
    """Queues requests and hands them to ``handle`` in batches of at most
    ``max_batch`` units (``size`` tells a request's units; a request is never
    split). Up to ``max_in_flight`` batches run at once: while one commits,
    the next is already being worked on.

    If ``handle`` raises an error for which ``is_item_fault`` is true, the
    batch is split until the faulty request is alone (``isolate_faults``),
    which gets ``on_item_fault(error)``; any other error gives every caller
    of the batch ``on_failure(error)``.
    """

    def __init__(
        self,
        handle: Handler[Request, Answer],
        *,
        name: str,
        max_batch: int,
        max_in_flight: int = 2,
        size: Callable[[Request], int] = lambda _: 1,
        on_failure: Callable[[Exception], Exception] = lambda error: error,
        on_closed: Callable[[], Exception] = lambda: RuntimeError("the batcher is closed"),
        is_item_fault: Callable[[Exception], bool] = never,
        on_item_fault: Callable[[Exception], Exception] = lambda error: error,
    ) -> None:
        self._handle = handle
        self._is_item_fault = is_item_fault
        self._on_item_fault = on_item_fault
        self._name = name
        self._max_batch = max_batch
        self._size = size
        self._on_failure = on_failure
        self._on_closed = on_closed
        self._queue: deque[tuple[Request, asyncio.Future[Answer]]] = deque()
        self._wake = asyncio.Event()
        self._max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Units waiting in the queue.
        self._queued = 0

    async def submit(self, request: Request) -> Answer:
        if self._closed:
            raise self._on_closed()
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        self._queued += self._size(request)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)
        return await future

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        # Let the queued callers have their answers before stopping.
        waiting = [future for _, future in self._queue]
        if waiting and self._task is not None and not self._task.done():
            await asyncio.wait(waiting)
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _take_batch(self, limit: int) -> list[tuple[Request, asyncio.Future[Answer]]]:
        batch: list[tuple[Request, asyncio.Future[Answer]]] = []
        size = 0
        while self._queue:
            request, future = self._queue[0]
            units = self._size(request)
            if batch and size + units > limit:
                break
            self._queue.popleft()
            self._queued -= units
            if future.cancelled():
                continue
            batch.append((request, future))
            size += units
        return batch

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._slots.acquire()
                # Share what is queued between the free slots, so that the
                # database works on one batch while this process answers the
                # callers of the previous one: the two overlap.
                free = max(1, self._max_in_flight - len(self._in_flight))
                limit = min(self._max_batch, max(1, -(-self._queued // free)))
                batch = self._take_batch(limit)
                if not batch:
                    self._slots.release()
                    continue
                task = asyncio.create_task(self._run_batch(batch))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

    async def _run_batch(self, batch: list[tuple[Request, asyncio.Future[Answer]]]) -> None:
        try:
            answers = await isolate_faults(
                self._handle,
                [request for request, _ in batch],
                is_item_fault=self._is_item_fault,
                on_item_fault=self._on_item_fault,
            )
            for (_, future), answer in zip(batch, answers, strict=True):
                if future.done():
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
        except Exception as error:
            failure = self._on_failure(error)
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
        finally:
            self._slots.release()
            # Whatever ended the batch (a cancellation too), no caller is
            # left waiting for ever.
            for _, future in batch:
                if not future.done():
                    future.set_exception(self._on_failure(RuntimeError("the batch was cancelled")))

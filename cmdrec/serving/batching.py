"""Dynamic batching: concurrent requests share one forward pass.

Requests wait in a bounded queue; a free worker takes everything waiting (up to `max_batch`), waits
at most `max_wait_ms` for more while the batch is not full, and scores the batch in a thread of its
own, so the event loop keeps accepting requests meanwhile. A lone request is scored at once; under load
each forward pass takes all that arrived during the previous one. A full queue refuses at once
(`QueueFull`, answered 503 with Retry-After) instead of growing without limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


class QueueFull(Exception):
    pass


@dataclass
class _Job:
    prepared: object
    k: int
    exclude_seen: bool
    future: asyncio.Future = field(default=None)


class DynamicBatcher:
    def __init__(
        self,
        score: Callable[[list, int, bool], list],
        max_batch: int = 64,
        max_wait_ms: float = 1.0,
        queue_size: int = 1024,
        on_batch: Callable[[int], None] = lambda size: None,
        workers: int = 1,
    ):
        self.score, self.max_batch, self.max_wait = score, max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        self.on_batch = on_batch
        self.n_workers = workers
        self.executor: ThreadPoolExecutor | None = None
        self.workers: list[asyncio.Task] = []

    def start(self) -> None:
        # each worker scores one batch at a time in its own thread; torch releases the GIL inside its
        # operations, so several workers use several cores when batches are large
        self.executor = ThreadPoolExecutor(max_workers=self.n_workers, thread_name_prefix="cmdrec-model")
        loop = asyncio.get_running_loop()
        self.workers = [loop.create_task(self._run()) for _ in range(self.n_workers)]

    async def stop(self) -> None:
        """Score what is queued, then stop."""
        await self.queue.join()
        for worker in self.workers:
            worker.cancel()
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    async def submit(self, prepared: list, k: int, exclude_seen: bool) -> list:
        """Suggestions for prepared histories, scored together with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        jobs = [_Job(p, k, exclude_seen, loop.create_future()) for p in prepared]
        if self.queue.maxsize and self.queue.qsize() + len(jobs) > self.queue.maxsize:
            raise QueueFull
        for job in jobs:
            self.queue.put_nowait(job)
        return list(await asyncio.gather(*(job.future for job in jobs)))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = time.perf_counter() + self.max_wait
            while len(batch) < self.max_batch:
                if not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                    continue
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            try:
                self.on_batch(len(batch))
                await loop.run_in_executor(self.executor, self._score_batch, batch)
            except Exception as error:  # noqa: BLE001 - the worker must outlive any one batch
                for job in batch:
                    _settle(job.future, None, error)
            finally:
                for _ in batch:
                    self.queue.task_done()

    def _score_batch(self, batch: list[_Job]) -> None:
        # one forward pass per exclude_seen setting; each job keeps its own k
        for exclude in {job.exclude_seen for job in batch}:
            group = [job for job in batch if job.exclude_seen == exclude]
            try:
                answers = self.score([job.prepared for job in group], max(job.k for job in group), exclude)
            except Exception as error:  # noqa: BLE001 - handed to each waiting request
                for job in group:
                    job.future.get_loop().call_soon_threadsafe(_settle, job.future, None, error)
                continue
            for job, answer in zip(group, answers, strict=True):
                job.future.get_loop().call_soon_threadsafe(_settle, job.future, (answer, job.k), None)


def _settle(future: asyncio.Future, result, error) -> None:
    if future.done():  # the request was cancelled (its client went away)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)

"""The load: warmup, then a closed loop of `concurrency` workers or Poisson arrivals capped at it.

Arrivals follow `vllm bench serve`: with `--request-rate R` the gaps are exponential (seeded) and,
for a fixed request count, rescaled so the last arrival lands at count/R; without a rate every
request is due at once and the concurrency cap alone shapes the load. With `--duration` requests
start until the time is up and the run ends when the last one finishes. The measured duration
runs from the first arrival to the last completion, excluding warmup.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from tierkit.smoke.http import ConnectionPool
from tierkit.smoke.sse import StreamCounters
from tierkit.smoke.stream import RequestResult, StreamSink


@dataclass(frozen=True)
class LoadShape:
    concurrency: int
    requests: int | None  # None: run for duration_s
    duration_s: float | None
    request_rate: float  # requests/s; inf: all due at once
    warmup: int
    seed: int


@dataclass(frozen=True)
class Prepared:
    """A ready-to-send request and the prompt tokens it carries."""

    request: bytes
    prompt_len: int


@dataclass
class LoadOutcome:
    results: list[RequestResult]
    warmup: list[RequestResult]
    duration_s: float
    cpu_s: float  # this process's CPU time over the measured run
    counters: StreamCounters


async def send_one(pool: ConnectionPool, item: Prepared, chat: bool, counters: StreamCounters) -> RequestResult:
    sink = StreamSink(time.perf_counter(), item.prompt_len, chat, counters)
    return sink.finish(await pool.exchange(item.request, sink))


async def arrivals(shape: LoadShape, start: float) -> AsyncIterator[int]:
    """Request indices at their arrival times."""
    deadline = None if shape.duration_s is None else start + shape.duration_s
    due = _schedule(shape)
    index = 0
    while shape.requests is None or index < shape.requests:
        at = start + next(due)
        now = time.perf_counter()
        if deadline is not None and max(at, now) >= deadline:
            return
        wait = at - now
        if wait > 0:
            await asyncio.sleep(wait)
        yield index
        index += 1


def _schedule(shape: LoadShape) -> Iterator[float]:
    """Arrival times, in seconds after the start."""
    if math.isinf(shape.request_rate):
        while True:
            yield 0.0
    rng = random.Random(shape.seed)
    rate = shape.request_rate
    if shape.requests is None:
        at = 0.0
        while True:
            at += rng.expovariate(rate)
            yield at
    cumulative, at = [], 0.0
    for _ in range(shape.requests):
        at += rng.expovariate(rate)
        cumulative.append(at)
    scale = (shape.requests / rate) / cumulative[-1]
    yield from (t * scale for t in cumulative)


async def _drive(
    pool: ConnectionPool,
    items: list[Prepared],
    chat: bool,
    shape: LoadShape,
    counters: StreamCounters,
    on_result: Callable[[RequestResult], None] | None,
) -> list[RequestResult]:
    results: list[RequestResult] = []
    queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=1 if math.isinf(shape.request_rate) else 0)
    start = time.perf_counter()
    deadline = math.inf if shape.duration_s is None else start + shape.duration_s

    async def dispatch() -> None:
        async for index in arrivals(shape, start):
            await queue.put(index)
        for _ in range(shape.concurrency):
            await queue.put(None)

    async def work() -> None:
        while (index := await queue.get()) is not None:
            if time.perf_counter() >= deadline:
                continue
            result = await send_one(pool, items[index % len(items)], chat, counters)
            results.append(result)
            if on_result is not None:
                on_result(result)

    await asyncio.gather(dispatch(), *(work() for _ in range(shape.concurrency)))
    return results


async def run_load(
    pool: ConnectionPool,
    items: list[Prepared],
    chat: bool,
    shape: LoadShape,
    on_result: Callable[[RequestResult], None] | None = None,
) -> LoadOutcome:
    """Warm up on the last `shape.warmup` items, then measure on the others (cycled if needed)."""
    measured = items[: len(items) - shape.warmup] if shape.warmup else items
    warm = items[len(items) - shape.warmup :] if shape.warmup else []
    counters = StreamCounters()
    warm_results: list[RequestResult] = []
    if warm:
        warm_shape = LoadShape(min(shape.concurrency, len(warm)), len(warm), None, math.inf, 0, shape.seed)
        warm_results = await _drive(pool, warm, chat, warm_shape, StreamCounters(), None)
    cpu0, t0 = time.process_time(), time.perf_counter()
    results = await _drive(pool, measured, chat, shape, counters, on_result)
    duration, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return LoadOutcome(results, warm_results, duration, cpu, counters)

"""How long one attempt of a fallback chain may take, and its hedged second attempt.

A fixed per-attempt deadline must fit the largest request, so a small request whose replica was
lost waits as long as a 2,000-document one may take. Here a local model's attempt is bounded by
the work it carries: the pairs ahead of it and its own at the model's rate, with room for a slow
moment, never under the route's floor nor over its ceiling.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from rerank_core.admission import ModelQueue
from rerank_core.config import RouteSettings
from rerank_core.errors import BackendError, BackendRateLimited

_T = TypeVar("_T")


def attempt_timeout(route: RouteSettings, n_pairs: int, queue: ModelQueue | None = None) -> float:
    """Seconds one attempt of a request of ``n_pairs`` pairs may take before the chain gives it up.

    With a model ``queue`` whose rate is configured (``serving.pairs_per_s``):
    ``route.attempt_slack`` times the expected time (the queue's expected wait, plus ``n_pairs``
    and one batch of company at the slower of its measured and assumed rates: a request is
    answered when its batch ends, and requests sent after it share that batch), within
    [``route.min_timeout_s``, ``route.timeout_s``]. Otherwise ``route.timeout_s``. While the
    model is stalled (``ModelQueue.stalled``) the pairs ahead are not counted: they are not
    being answered, and an attempt is owed only the time its own work takes.
    """
    # Opt-in by the model's ``serving.pairs_per_s``: without it, a rate measured in a quiet
    # moment would bound the attempts of a busy one.
    if queue is None or queue.assumed_pairs_per_s is None:
        return route.timeout_s
    rate = queue.slowest_pairs_per_s()
    if rate is None:
        return route.timeout_s
    ahead = 0.0 if queue.stalled else queue.expected_wait_s()
    expected = ahead + (n_pairs + queue.batch_pairs) / rate
    return min(route.timeout_s, max(route.min_timeout_s, route.attempt_slack * expected))


@dataclass
class AttemptDeadline:
    """A chain member's attempt deadline and hedge, from its route and (for a local model) the
    queue the caller keeps of it."""

    route: RouteSettings
    queue: ModelQueue | None = None

    def timeout_s(self, n_pairs: int) -> float:
        """The deadline of one attempt of ``n_pairs`` pairs (``attempt_timeout``)."""
        return attempt_timeout(self.route, n_pairs, self.queue)

    async def run(self, call: Awaitable[_T], n_pairs: int, timeout_s: float | None = None) -> _T:
        """``call``'s result within this attempt's deadline, ``timeout_s`` where the caller has
        worked it out already (``TimeoutError`` past it; the call is cancelled). If the model
        stalls meanwhile, the deadline is cut to what the attempt's own work is owed, counted
        from its start: attempts sent while the pairs ahead looked like work do not wait for a
        replica that is gone. A failure of the call or its time-out is told to the queue
        (``ModelQueue.record_failure``)."""
        loop = asyncio.get_running_loop()
        started, queue_started = loop.time(), self.queue.now() if self.queue else 0.0
        end = started + (self.timeout_s(n_pairs) if timeout_s is None else timeout_s)
        task = asyncio.ensure_future(call)
        stall = None
        if self.queue is not None and not self.queue.stalled:
            stall = asyncio.ensure_future(self.queue.stall_event().wait())
        try:
            while True:
                waiting = {task} if stall is None else {task, stall}
                done, _ = await asyncio.wait(
                    waiting, timeout=max(0.0, end - loop.time()), return_when=asyncio.FIRST_COMPLETED
                )
                if task in done:
                    return task.result()
                if stall is None or stall not in done:
                    raise TimeoutError
                end = min(end, started + self.timeout_s(n_pairs))
                stall = None
        except (TimeoutError, BackendError) as exc:
            # A time-out or a replica gone, not a refusal for overload nor a request the model
            # cannot take: those say nothing of whether it answers.
            failed = isinstance(exc, TimeoutError) or (
                exc.retryable and not isinstance(exc, BackendRateLimited)
            )
            if self.queue is not None and failed:
                self.queue.record_failure(queue_started)
            raise
        finally:
            for pending in (task, stall):
                if pending is not None and not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pending

    def hedge_after_s(self, timeout_s: float) -> float | None:
        """Seconds into an attempt with this deadline after which a hedge is sent; None: never."""
        hedge = self.route.hedge_after
        return None if hedge is None else hedge * timeout_s


async def hedged(call: Callable[[], Awaitable[_T]], hedge_after_s: float | None) -> _T:
    """``call()``'s answer; if it has not come after ``hedge_after_s``, a second ``call()`` runs
    beside it and the first answer of the two wins (the other is cancelled).

    A hedge refused for overload is dropped and the first call awaited alone: a hedge is worth
    sending only to a model with room. An error of one call is raised only once the other has
    failed too (the later error), so one lost replica does not fail a hedged attempt.
    """
    first = asyncio.ensure_future(call())
    if hedge_after_s is None:
        return await first
    tasks = [first]
    try:
        done, _ = await asyncio.wait(tasks, timeout=hedge_after_s)
        if not done:
            tasks.append(asyncio.ensure_future(call()))
        pending = set(tasks)
        error: BaseException | None = None
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is None:
                    return task.result()
                # A hedge the model refused leaves the first call to answer alone.
                if task is not first and isinstance(exc, BackendRateLimited) and pending:
                    continue
                error = exc
        assert error is not None
        raise error
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

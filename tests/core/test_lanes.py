"""The bulk gate (rerank_core.lanes) in front of a stand-in batch queue: one FIFO that runs one unit
a step, when the test says, so the order the model sees is the gate's doing alone."""

from __future__ import annotations

import asyncio

from rerank_core.lanes import BulkGate


class SteppedQueue:
    """A batch queue: units run in arrival order, one each ``step``."""

    def __init__(self) -> None:
        self.queued: list[tuple[str, asyncio.Future[str]]] = []
        self.order: list[str] = []

    async def score(self, name: str) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.queued.append((name, future))
        return await future

    async def step(self) -> None:
        # A cancelled unit is dropped, as @serve.batch drops it.
        self.queued = [(n, f) for n, f in self.queued if not f.cancelled()]
        name, future = self.queued.pop(0)
        self.order.append(name)
        future.set_result(name)
        await settle()


async def settle() -> None:
    """Let every task that can run go as far as it can."""
    for _ in range(10):
        await asyncio.sleep(0)


class Replica:
    def __init__(self, gate: BulkGate) -> None:
        self.gate = gate
        self.model = SteppedQueue()

    def bulk(self, name: str) -> asyncio.Task[str]:
        async def chunk() -> str:
            async with self.gate.bulk():
                return await self.model.score(name)

        return asyncio.create_task(chunk())

    def interactive(self, name: str) -> asyncio.Task[str]:
        async def unit() -> str:
            with self.gate.interactive():
                return await self.model.score(name)

        return asyncio.create_task(unit())


async def test_interactive_work_overtakes_bulk_waiting_at_the_gate() -> None:
    replica = Replica(BulkGate(beside_interactive=1, alone=4, window_s=60))
    replica.interactive("i0")
    await settle()
    for n in range(3):
        replica.bulk(f"b{n}")
    await settle()
    assert (replica.gate.inside, replica.gate.waiting) == (1, 2)
    replica.interactive("i1")  # after the bulk chunks, ahead of the two still at the gate
    await settle()
    for _ in range(5):
        await replica.model.step()
    assert replica.model.order == ["i0", "b0", "i1", "b1", "b2"]
    assert (replica.gate.inside, replica.gate.waiting) == (0, 0)


async def test_bulk_alone_fills_its_slots_in_arrival_order() -> None:
    replica = Replica(BulkGate(beside_interactive=1, alone=3, window_s=60))
    for n in range(5):
        replica.bulk(f"b{n}")
    await settle()
    assert (replica.gate.inside, replica.gate.waiting) == (3, 2)
    for _ in range(5):
        await replica.model.step()
    assert replica.model.order == [f"b{n}" for n in range(5)]


async def test_the_slots_reopen_when_the_interactive_window_ends() -> None:
    replica = Replica(BulkGate(beside_interactive=1, alone=3, window_s=0.05))
    replica.interactive("i0")
    await settle()
    await replica.model.step()  # the interactive unit leaves; its window starts
    for n in range(3):
        replica.bulk(f"b{n}")
    await settle()
    assert replica.gate.interactive_present and replica.gate.inside == 1
    await asyncio.sleep(0.1)  # a timer, not a poll, lets the waiting chunks in
    assert not replica.gate.interactive_present and replica.gate.inside == 3


async def test_bulk_is_never_starved_under_continuous_interactive_load() -> None:
    replica = Replica(BulkGate(beside_interactive=1, alone=4, window_s=60))
    replica.interactive("i0")
    await settle()
    bulk = [replica.bulk(f"b{n}") for n in range(3)]
    for n in range(1, 13):
        replica.interactive(f"i{n}")  # a new interactive unit before every pass
        await settle()
        await replica.model.step()
        assert replica.gate.interactive_in_flight > 0
    # Its one slot kept: each bulk chunk ran after the interactive units ahead of it at its turn.
    assert all(task.done() for task in bulk)
    assert [name for name in replica.model.order if name.startswith("b")] == ["b0", "b1", "b2"]


async def test_a_cancelled_chunk_frees_its_place_in_line_or_its_slot() -> None:
    replica = Replica(BulkGate(beside_interactive=1, alone=1, window_s=60))
    inside, in_line, last = (replica.bulk(name) for name in ("b0", "b1", "b2"))
    await settle()
    assert (replica.gate.inside, replica.gate.waiting) == (1, 2)
    in_line.cancel()  # its client went away while it waited
    await settle()
    assert (replica.gate.inside, replica.gate.waiting) == (1, 1)
    inside.cancel()  # its attempt's deadline passed while it was in the queue
    await settle()
    assert (replica.gate.inside, replica.gate.waiting) == (1, 0)
    await replica.model.step()
    assert replica.model.order == ["b2"] and await last == "b2"
    assert replica.gate.inside == 0


async def test_a_chunk_cancelled_as_its_turn_comes_hands_the_slot_on() -> None:
    gate = BulkGate(beside_interactive=1, alone=1, window_s=60)
    replica = Replica(gate)
    first, second, third = (replica.bulk(name) for name in ("b0", "b1", "b2"))
    await settle()
    await replica.model.step()  # b0 done: its slot goes to b1 ...
    second.cancel()  # ... which is cancelled before it runs
    await settle()
    assert second.cancelled() and (gate.inside, gate.waiting) == (1, 0)
    await replica.model.step()
    assert replica.model.order == ["b0", "b2"] and await first == "b0" and await third == "b2"

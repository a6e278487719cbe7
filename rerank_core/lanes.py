"""The gate between a model replica's bulk work and its batch queue: interactive work first, bulk
never starved.

A batch cannot be preempted, and the batch queue (Serve's ``@serve.batch``) is one FIFO: what is in
it runs before whatever arrives after. So the order is decided before work enters it, as vLLM's
scheduler decides before a batch starts. Interactive units enter at once; bulk units (short chunks,
about one forward pass each) wait here and enter through a few slots, FIFO:

- while interactive work is present (a unit in flight, or one seen within ``window_s``), bulk holds
  ``beside_interactive`` slots: an interactive unit that arrives finds at most that many short
  bulk chunks ahead of it;
- while none is, bulk holds ``alone`` slots, enough to keep every batch full, as if no gate stood.

Bulk keeps its ``beside_interactive`` slots whatever the interactive load: its share is at least
that many chunks in the queue at all times, so it is never starved, only slowed to what the model
does beside interactive work. Plain asyncio: no Ray, no polling; a timer reopens the slots when the
window of the last interactive unit ends.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager


class BulkGate:
    """Admits bulk chunks into a batch queue behind interactive work (see the module's docstring).

    Use ``with gate.interactive():`` around an interactive request's time in the replica, and
    ``async with gate.bulk():`` around a bulk chunk's time in the batch queue (entering it and
    awaiting its scores). A chunk cancelled while it waits leaves the line; one cancelled inside
    gives its slot to the next. Single event loop, like the replica that holds it.
    """

    def __init__(self, beside_interactive: int, alone: int, window_s: float) -> None:
        #: Bulk chunks in the queue at once while interactive work is present (bulk's share).
        self.beside_interactive = beside_interactive
        #: Bulk chunks in the queue at once while none is.
        self.alone = alone
        #: How long interactive work counts as present after its last unit left.
        self.window_s = window_s
        #: Bulk chunks in the batch queue now.
        self.inside = 0
        #: Interactive units in the replica now.
        self.interactive_in_flight = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        #: Runs out ``window_s`` after the last interactive unit left (None: no window open).
        self._window: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        """Bulk chunks waiting to enter."""
        return len(self._waiting)

    @property
    def interactive_present(self) -> bool:
        """Interactive work is in the replica, or left it less than ``window_s`` ago."""
        return self.interactive_in_flight > 0 or self._window is not None

    @property
    def slots(self) -> int:
        """Bulk chunks allowed in the queue now."""
        return self.beside_interactive if self.interactive_present else self.alone

    def set_slots(self, beside_interactive: int, alone: int) -> None:
        """Change the slots (a live reconfiguration); chunks waiting enter if there is room now."""
        self.beside_interactive, self.alone = beside_interactive, alone
        self._admit_waiting()

    @contextmanager
    def interactive(self) -> Iterator[None]:
        """Count an interactive unit as present while the block runs, and ``window_s`` after."""
        self.interactive_in_flight += 1
        if self._window is not None:
            self._window.cancel()
            self._window = None
        try:
            yield
        finally:
            self.interactive_in_flight -= 1
            if not self.interactive_in_flight:
                self._window = asyncio.get_running_loop().call_later(
                    self.window_s, self._window_ended
                )

    @asynccontextmanager
    async def bulk(self) -> AsyncIterator[None]:
        """Hold a bulk slot while the block runs: at once if one is free and no chunk waits
        before this one, else in turn."""
        await self._enter()
        try:
            yield
        finally:
            self._leave()

    async def _enter(self) -> None:
        if not self._waiting and self.inside < self.slots:
            self.inside += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if not turn.cancelled():
                self._leave()  # given a slot as it was cancelled: the next chunk takes it
            elif turn in self._waiting:
                self._waiting.remove(turn)
            raise

    def _leave(self) -> None:
        self.inside -= 1
        self._admit_waiting()

    def _admit_waiting(self) -> None:
        while self._waiting and self.inside < self.slots:
            turn = self._waiting.popleft()
            if not turn.cancelled():  # a chunk cancelled in line is passed over
                self.inside += 1
                turn.set_result(None)

    def _window_ended(self) -> None:
        self._window = None
        self._admit_waiting()

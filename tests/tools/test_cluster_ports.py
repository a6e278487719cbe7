"""Port choice of the local test cluster: worker port blocks never meet ``free_port()`` answers."""

from __future__ import annotations

import socket

from rerank_tools.cluster import _ephemeral_range, free_port, free_port_block


def test_worker_port_blocks_lie_outside_the_ephemeral_range_and_are_free() -> None:
    low, high = _ephemeral_range()
    taken: set[int] = set()
    for _ in range(5):
        base = free_port_block(100, taken=frozenset(taken))
        assert base not in taken
        assert base + 99 < low or base > high
        taken.add(base)
        with socket.socket() as s:  # the block's ends are bindable now
            s.bind(("127.0.0.1", base))
        with socket.socket() as s:
            s.bind(("127.0.0.1", base + 99))
    # the ports other components get can never fall inside a block
    for _ in range(50):
        port = free_port()
        assert all(not (b <= port < b + 100) for b in taken)

"""Admission by expected waiting time (rerank_core.admission), without Ray: a fake clock drives the
measured rate, and a request is refused when the work ahead of it would outlast its deadline."""

from __future__ import annotations

import pytest

from rerank_core.admission import DEADLINE_SHARE, RATE_WINDOW_S, ModelQueue, model_queues
from rerank_core.config import load_config
from rerank_core.errors import BackendRateLimited


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def answer(queue: ModelQueue, clock: FakeClock, pairs: int, seconds: float) -> None:
    """One request of ``pairs`` pairs answered ``seconds`` after it was sent."""
    with queue.outstanding(pairs):
        clock.now += seconds


def test_nothing_is_refused_without_a_rate() -> None:
    queue = ModelQueue("m", None, deadline_s=1.0, clock=FakeClock())
    queue.pairs_ahead = 10_000
    queue.admit(2000)
    assert queue.expected_wait_s() == 0.0


def test_refused_past_the_deadline_with_the_time_to_come_back() -> None:
    queue = ModelQueue("m", 100.0, deadline_s=12.5, clock=FakeClock())
    queue.pairs_ahead = 900
    queue.admit(100)  # 1,000 pairs at 100/s: 10 s, exactly DEADLINE_SHARE (0.8) of the deadline
    assert DEADLINE_SHARE * 12.5 == 10.0
    with pytest.raises(BackendRateLimited) as refused:
        queue.admit(300)  # 12 s of work, past 10 s
    assert refused.value.retry_after_s == 2
    assert refused.value.retryable and refused.value.backend == "m"
    assert "deadline" in refused.value.message


def test_a_request_alone_is_admitted_whatever_its_size() -> None:
    queue = ModelQueue("m", 1.0, deadline_s=1.0, clock=FakeClock())
    queue.admit(2000)


def test_the_rate_is_measured_from_answers_while_busy() -> None:
    clock = FakeClock()
    queue = ModelQueue("m", 10.0, deadline_s=60.0, clock=clock)
    assert queue.pairs_per_s == 10.0
    for _ in range(3):
        answer(queue, clock, 100, 1.0)  # 100 pairs/s while busy
    assert queue.pairs_per_s == pytest.approx(100.0)
    # Idle time between requests is not part of the rate.
    clock.now += 50
    for _ in range(3):
        answer(queue, clock, 200, 1.0)
    assert 100.0 < queue.pairs_per_s < 200.0
    # An attempt deadline never trusts a rate above the configured one.
    assert queue.slowest_pairs_per_s() == 10.0


def test_a_window_without_answers_leaves_the_rate_alone() -> None:
    clock = FakeClock()
    queue = ModelQueue("m", 50.0, deadline_s=60.0, clock=clock)
    for _ in range(2):  # one whole window
        answer(queue, clock, 100, 1.0)
    before = queue.pairs_per_s
    for _ in range(3):
        with pytest.raises(TimeoutError), queue.outstanding(10):
            clock.now += RATE_WINDOW_S
            raise TimeoutError  # a lost replica: no answer
    assert queue.pairs_per_s == before
    assert queue.pairs_ahead == 0


def test_every_local_model_gets_a_queue_held_against_the_request_deadline() -> None:
    service = load_config(
        {
            "backends": {
                "m": {"type": "bi_encoder", "model": "packaged:all-MiniLM-L6-v2",
                      "serving": {"pairs_per_s": 40}},
                "co": {"type": "cohere"},
            },
            "limits": {"request_timeout_s": 12},
        }
    )  # fmt: skip
    queues = model_queues(service)
    assert set(queues) == {"m"}
    assert queues["m"].assumed_pairs_per_s == 40 and queues["m"].deadline_s == 12
    # router.max_queue_wait_s (10 s by default) is cut to 80 % of a 12 s deadline.
    assert queues["m"].max_wait_s == pytest.approx(9.6)


def test_the_queue_is_bounded_by_time_well_inside_the_deadline() -> None:
    queue = ModelQueue("m", 100.0, deadline_s=60.0, clock=FakeClock(), max_wait_s=10.0)
    queue.pairs_ahead = 900
    queue.admit(100)  # 10 s of work ahead with its own: admitted
    with pytest.raises(BackendRateLimited) as refused:
        queue.admit(300)  # 12 s: refused, though far inside the 60 s deadline
    assert refused.value.retry_after_s == 2
    assert "10s a request may wait" in refused.value.message


def test_the_rate_is_measured_only_while_a_batch_is_out() -> None:
    clock = FakeClock()
    queue = ModelQueue("m", 50.0, deadline_s=60.0, clock=clock, batch_pairs=64)
    # A quiet moment: one 3-pair request at a time, each answered in 0.1 s (30 pairs/s of
    # latency, not of capacity): nothing is measured, the assumed rate holds.
    for _ in range(100):
        answer(queue, clock, 3, 0.1)
    assert queue.pairs_per_s == 50.0
    # Saturated: 128 pairs out at a time, answered at 200 pairs/s.
    for _ in range(4):
        answer(queue, clock, 128, 0.64)
    assert queue.pairs_per_s == pytest.approx(200.0)


def test_bulk_is_refused_at_its_share_of_the_wait_interactive_is_not() -> None:
    queue = ModelQueue("m", 100.0, 60.0, clock=FakeClock(), max_wait_s=10.0, bulk_share=0.5)
    queue.pairs_ahead = 400
    queue.admit(100, "bulk")  # 5 s of work with its own: exactly bulk's share
    with pytest.raises(BackendRateLimited) as refused:
        queue.admit(200, "bulk")  # 6 s: past bulk's 5 s
    assert refused.value.retry_after_s == 1
    assert "5s a bulk request may wait" in refused.value.message
    queue.admit(200)  # the same wait is well inside an interactive request's 10 s
    queue.pairs_ahead = 0
    queue.admit(2000, "bulk")  # alone, bulk too is admitted whatever its size


def test_each_queue_leaves_bulk_its_models_share() -> None:
    service = load_config(
        {
            "backends": {"m": {"type": "bi_encoder", "serving": {"bulk_queue_share": 0.25}},
                         "n": {"type": "bi_encoder"}},
            "router": {"max_queue_wait_s": 8},
        }
    )  # fmt: skip
    queues = model_queues(service)
    assert queues["m"].max_bulk_wait_s == pytest.approx(2.0)
    assert queues["n"].max_bulk_wait_s == pytest.approx(4.0)  # the default share: half

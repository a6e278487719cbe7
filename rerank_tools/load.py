"""Closed-loop HTTP load in background threads, recording every request's outcome."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests


@dataclass(frozen=True)
class Outcome:
    """One request: when it started (monotonic seconds), how long it took, its HTTP status (None:
    no answer: a client time-out or a refused connection), the order of the results (200 only),
    for any other status the start of the error's message, and whether a 200 was the route's
    degraded last resort (the original order)."""

    started: float
    elapsed_s: float
    status: int | None
    order: list[int] | None
    detail: str | None = None
    degraded: bool = False


@dataclass
class Load:
    """``clients`` threads each sending ``body`` to ``url`` back to back while the context is open.

    ``timeout_s`` is the client's own deadline: a request that reaches it is recorded with status
    None, as a hung request.
    """

    url: str
    body: dict[str, Any]
    clients: int = 4
    timeout_s: float = 30.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                started = time.monotonic()
                status: int | None = None
                order: list[int] | None = None
                detail: str | None = None
                degraded = False
                try:
                    resp = session.post(self.url, json=self.body, timeout=self.timeout_s)
                    status = resp.status_code
                    if status == 200:
                        answer = resp.json()
                        order = [r["index"] for r in answer["results"]]
                        degraded = bool(answer.get("degraded", False))
                    else:
                        detail = resp.text[:200]
                except requests.RequestException as exc:
                    detail = type(exc).__name__
                elapsed = time.monotonic() - started
                outcome = Outcome(started, elapsed, status, order, detail, degraded)
                with self._lock:
                    self.outcomes.append(outcome)

    def set_clients(self, clients: int) -> None:
        """Change the number of client threads (stop and restart them) without losing outcomes."""
        self._stop.set()
        for t in self._threads:
            t.join()
        self._threads.clear()
        self._stop.clear()
        self.clients = clients
        for _ in range(clients):
            t = threading.Thread(target=self._client, daemon=True)
            t.start()
            self._threads.append(t)

    def done_since(self, since: float) -> list[Outcome]:
        """Outcomes of requests that finished at or after ``since`` (monotonic seconds)."""
        with self._lock:
            return [o for o in self.outcomes if o.started + o.elapsed_s >= since]

    def __enter__(self) -> Load:
        self.set_clients(self.clients)
        return self

    def __exit__(self, *exc: object) -> None:
        self.set_clients(0)

"""Mixed traffic: several client groups (tenants) against one service at once, each with its own API
key, traffic class, documents per request, closed-loop clients and conduct after a refusal, reported
per group; and, on request, each group alone first, so that what the mix costs a group is its mixed
figures over its alone ones.

A group's clients start ``start_s`` after the run begins and send until it ends; requests in flight
then finish. After a refusal a ``retry-after`` client waits what ``Retry-After`` says (1 s after a 429
that says nothing), at most until the end; a ``now`` client resends at once, as a client stuck in a
retry loop does. The key is read from the group's environment variable and sent, never recorded.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import httpx

from rerank_client.client import rerank_payload
from rerank_tools.benchmark.loadgen import (
    REFUSED_BACKOFF_S,
    Outcome,
    RequestSample,
    check_loopback,
    post_outcome,
)
from rerank_tools.benchmark.sweep import Emit
from rerank_tools.latency import latency_summary

Resend = Literal["retry-after", "now"]
RESENDS: tuple[Resend, ...] = ("retry-after", "now")
TRAFFIC_CLASSES = ("interactive", "bulk")
#: The header that asks for a traffic class.
CLASS_HEADER = "X-Rerank-Class"
#: The service's targets under a mix: an interactive group's p99 at most twice its alone p99, a bulk
#: group's pairs/s at least 0.8 of its alone pairs/s.
INTERACTIVE_P99_RATIO_MAX = 2.0
BULK_PAIRS_RATIO_MIN = 0.8


@dataclass(frozen=True, slots=True)
class MixGroup:
    """One group of clients: its name in the records, documents per request, closed-loop clients,
    the environment variable holding its API key (None: no ``Authorization``), the traffic class
    it asks for (None: no ``X-Rerank-Class``), its conduct after a refusal, and its start, in
    seconds after the run begins."""

    name: str
    docs: int
    clients: int
    key_env: str | None = None
    traffic_class: str | None = None
    resend: Resend = "retry-after"
    start_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.name,
            "docs_per_request": self.docs,
            "clients": self.clients,
            "key_env": self.key_env,
            "class": self.traffic_class,
            "resend": self.resend,
            "start_s": self.start_s,
        }


def group_keys(groups: Sequence[MixGroup], environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Each keyed group's API key, by group name; ``ValueError`` naming the group and the variable
    when one is empty or unset."""
    keys = {}
    for group in groups:
        if group.key_env is None:
            continue
        key = environ.get(group.key_env, "").strip()
        if not key:
            raise ValueError(f"--mix {group.name}: environment variable {group.key_env} is empty or unset")
        keys[group.name] = key
    return keys


def _ms(seconds: Sequence[float], quantiles: Sequence[int]) -> dict[str, float | None]:
    """Percentiles in milliseconds (``p50_ms``, ...); None where nothing was measured."""
    if not seconds:
        return {f"p{q}_ms": None for q in quantiles}
    summary = latency_summary(seconds, quantiles)
    return {f"p{q}_ms": summary[f"p{q}_ms"] for q in quantiles}


@dataclass(slots=True)
class GroupTally:
    """What one group's measured requests saw."""

    sent: int = 0
    #: Seconds each 200 answer took.
    answered_s: list[float] = field(default_factory=list)
    #: 200 answers that said ``degraded: true``.
    degraded: int = 0
    #: Seconds each refusal (any other HTTP status) took.
    refused_s: list[float] = field(default_factory=list)
    refused_by_status: Counter[str] = field(default_factory=Counter)
    refused_by_code: Counter[str] = field(default_factory=Counter)
    #: Requests without an answer, by exception name; time-outs are counted apart.
    client_errors: Counter[str] = field(default_factory=Counter)
    client_timeouts: int = 0
    #: The last ``RateLimit`` and ``RateLimit-Policy`` headers seen, as sent.
    rate_limit: str | None = None
    rate_limit_policy: str | None = None
    #: Seconds from the group's start to its last answer.
    elapsed_s: float = 0.0

    def add(self, outcome: Outcome) -> None:
        self.rate_limit = outcome.limits.get("RateLimit", self.rate_limit)
        self.rate_limit_policy = outcome.limits.get("RateLimit-Policy", self.rate_limit_policy)
        if outcome.status == 200:
            self.answered_s.append(outcome.elapsed_s)
            self.degraded += int(outcome.degraded)
        elif outcome.status is not None:
            self.refused_s.append(outcome.elapsed_s)
            self.refused_by_status[str(outcome.status)] += 1
            self.refused_by_code[outcome.code or "none"] += 1
        elif outcome.timed_out:
            self.client_timeouts += 1
        else:
            self.client_errors[outcome.detail or "unknown"] += 1

    def to_dict(self, group: MixGroup, phase: str) -> dict[str, Any]:
        answered = len(self.answered_s)
        return {
            "kind": "mix_group",
            "phase": phase,
            **group.to_dict(),
            "duration_s": self.elapsed_s,
            "sent": self.sent,
            "answered": answered,
            "degraded": self.degraded,
            "pairs_per_s": answered * group.docs / self.elapsed_s if self.elapsed_s else 0.0,
            **_ms(self.answered_s, (50, 90, 99)),
            "refused": len(self.refused_s),
            "refused_by_status": dict(self.refused_by_status),
            "refused_by_code": dict(self.refused_by_code),
            **{f"refused_{k}": v for k, v in _ms(self.refused_s, (50, 99)).items()},
            "rate_limit": self.rate_limit,
            "rate_limit_policy": self.rate_limit_policy,
            "client_errors": dict(self.client_errors),
            "client_timeouts": self.client_timeouts,
        }


def backoff_s(outcome: Outcome) -> float:
    """What a client honouring ``Retry-After`` waits after ``outcome``: what the header says (in
    seconds), ``REFUSED_BACKOFF_S`` after a 429 without one, else nothing."""
    try:
        return max(0.0, float(outcome.limits["Retry-After"]))
    except (KeyError, ValueError):
        return REFUSED_BACKOFF_S if outcome.status == 429 else 0.0


def _headers(group: MixGroup, key: str | None) -> dict[str, str]:
    headers = {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if group.traffic_class:
        headers[CLASS_HEADER] = group.traffic_class
    return headers


async def _run_group(
    https: Sequence[httpx.AsyncClient],
    url: str,
    group: MixGroup,
    bodies: Sequence[dict[str, Any]],
    begun: float,
    until: float,
) -> GroupTally:
    """``group``'s closed loop from its start to ``until`` (monotonic seconds): one client on each
    connection of ``https``."""
    await asyncio.sleep(max(0.0, begun + group.start_s - time.monotonic()))
    tally = GroupTally()
    started = time.monotonic()

    async def client(http: httpx.AsyncClient) -> None:
        while time.monotonic() < until:
            body = bodies[tally.sent % len(bodies)]
            tally.sent += 1
            outcome = await post_outcome(http, url, body)
            tally.add(outcome)
            if outcome.status not in (None, 200) and group.resend == "retry-after":
                await asyncio.sleep(max(0.0, min(backoff_s(outcome), until - time.monotonic())))

    await asyncio.gather(*(client(http) for http in https))
    tally.elapsed_s = max(time.monotonic() - started, 1e-9)
    return tally


async def run_mix(
    url: str,
    groups: Sequence[MixGroup],
    traffic: Mapping[int, Sequence[RequestSample]],
    keys: Mapping[str, str],
    *,
    duration_s: float,
    warmup_requests: int = 2,
    timeout_s: float = 60.0,
    model: str | None = None,
    top_n: int | None = None,
) -> dict[str, GroupTally]:
    """Every group at once for ``duration_s`` seconds against ``url``'s ``/rerank``, each client of
    a group on its own connection with the group's key (as independent clients are: one pool of many
    connections costs the load generator more CPU per request than the service, which skews what is
    measured), after ``warmup_requests`` unmeasured requests per group sent one at a time; each
    group's tally, by name. ``traffic`` holds the samples of each group's size."""
    target = check_loopback(url) + "/rerank"
    bodies = {
        g.name: [
            rerank_payload(s.query, s.documents, top_n, model, return_documents=False)
            for s in traffic[g.docs]
        ]
        for g in groups
    }
    async with AsyncExitStack() as stack:
        clients = {
            g.name: [
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        headers=_headers(g, keys.get(g.name)),
                        timeout=timeout_s,
                        limits=httpx.Limits(max_connections=1),
                    )
                )
                for _ in range(g.clients)
            ]
            for g in groups
        }
        for g in groups:
            for i in range(warmup_requests):
                body = bodies[g.name][i % len(bodies[g.name])]
                await post_outcome(clients[g.name][0], target, body)
        begun = time.monotonic()
        until = begun + duration_s
        tallies = await asyncio.gather(
            *(_run_group(clients[g.name], target, g, bodies[g.name], begun, until) for g in groups)
        )
    return {g.name: t for g, t in zip(groups, tallies, strict=True)}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _meets_target(group: MixGroup, p99_ratio: float | None, pairs_ratio: float | None) -> bool | None:
    """Whether the group's class target holds (None: no class asked for, or nothing to compare)."""
    if group.traffic_class == "interactive" and p99_ratio is not None:
        return p99_ratio <= INTERACTIVE_P99_RATIO_MAX
    if group.traffic_class == "bulk" and pairs_ratio is not None:
        return pairs_ratio >= BULK_PAIRS_RATIO_MIN
    return None


def mix_summary(
    groups: Sequence[MixGroup],
    mixed: Mapping[str, dict[str, Any]],
    alone: Mapping[str, dict[str, Any]],
    duration_s: float,
) -> dict[str, Any]:
    """The ``mix`` record: per group its mixed figures and, where it ran alone too, mixed/alone for
    p99 latency and pairs/s, and whether its class's target holds."""
    rows = []
    for group in groups:
        m, a = mixed[group.name], alone.get(group.name)
        row = {
            "group": group.name,
            "class": group.traffic_class,
            "sent": m["sent"],
            "answered": m["answered"],
            "refused": m["refused"],
            "pairs_per_s": m["pairs_per_s"],
            "p99_ms": m["p99_ms"],
        }
        if a is not None:
            p99_ratio = _ratio(m["p99_ms"], a["p99_ms"])
            pairs_ratio = _ratio(m["pairs_per_s"], a["pairs_per_s"])
            row |= {
                "alone_pairs_per_s": a["pairs_per_s"],
                "alone_p99_ms": a["p99_ms"],
                "p99_ratio": p99_ratio,
                "pairs_per_s_ratio": pairs_ratio,
                "meets_target": _meets_target(group, p99_ratio, pairs_ratio),
            }
        rows.append(row)
    return {
        "kind": "mix",
        "duration_s": duration_s,
        "groups": rows,
        "targets": {
            "interactive_p99_ratio_max": INTERACTIVE_P99_RATIO_MAX,
            "bulk_pairs_per_s_ratio_min": BULK_PAIRS_RATIO_MIN,
        },
    }


def measure_mix(
    url: str,
    groups: Sequence[MixGroup],
    traffic: Mapping[int, Sequence[RequestSample]],
    keys: Mapping[str, str],
    emit: Emit,
    *,
    duration_s: float,
    alone: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """With ``alone``, each group by itself for its own part of ``duration_s`` (from its start to
    the end), then all groups at once; emits a ``mix_group`` record per group and phase, then the
    ``mix`` summary, which it returns. ``options`` go to ``run_mix``."""
    alone_records: dict[str, dict[str, Any]] = {}
    if alone:
        for group in groups:
            solo = replace(group, start_s=0.0)
            tally = asyncio.run(
                run_mix(url, [solo], traffic, keys, duration_s=duration_s - group.start_s, **options)
            )
            alone_records[group.name] = tally[group.name].to_dict(group, "alone")
            emit(alone_records[group.name])
    tallies = asyncio.run(run_mix(url, groups, traffic, keys, duration_s=duration_s, **options))
    mixed_records = {g.name: tallies[g.name].to_dict(g, "mixed") for g in groups}
    for record in mixed_records.values():
        emit(record)
    summary = mix_summary(groups, mixed_records, alone_records, duration_s)
    emit(summary)
    return summary

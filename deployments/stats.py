"""Per-replica figures gathered from every replica of a model, not from whichever one a handle
call reaches.

Each model replica reports its own statistics to one small actor per application (``StatsBoard``,
no CPU; detached, so it outlives any one replica and is reused by the next deploy of the
application) after each batch, fire and forget, and on every health check, which Serve runs
periodically. ``GET /v1/stats`` reads the board: a replica that stopped reporting for
``STALE_AFTER_S`` (it died or was scaled down) is left out, and so is one serving another
configuration of the model than the router's (the old replicas of a redeploy, while they stop).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import ray
from ray import serve
from ray.actor import ActorHandle

log = logging.getLogger("ray.serve")

#: A replica silent for this long is no longer counted (three of Serve's default health periods).
STALE_AFTER_S = 30.0


@ray.remote(num_cpus=0)
class StatsBoard:
    """The latest report of each replica, by model and replica id."""

    def __init__(self) -> None:
        self.reports: dict[str, dict[str, tuple[float, dict[str, Any]]]] = {}

    def report(self, model: str, replica: str, stats: dict[str, Any]) -> None:
        self.reports.setdefault(model, {})[replica] = (time.time(), stats)

    def snapshot(self, model: str) -> dict[str, dict[str, Any]]:
        """The fresh reports of ``model``'s replicas, by replica id."""
        now = time.time()
        fresh = {
            replica: stats
            for replica, (at, stats) in self.reports.get(model, {}).items()
            if now - at < STALE_AFTER_S
        }
        self.reports[model] = {r: self.reports[model][r] for r in fresh}
        return fresh


def config_digest(config: dict[str, Any]) -> str:
    """A short digest of a model's configuration, as the model deployment and the router both get
    it (``cfg.model_dump(mode="json")``): which configuration a replica's figures belong to."""
    return hashlib.blake2b(json.dumps(config, sort_keys=True).encode(), digest_size=8).hexdigest()


def board_name() -> str:
    """The board's actor name: one per Serve application."""
    return f"rerank-stats-{serve.get_replica_context().app_name}"


def open_board() -> ActorHandle:
    """The application's board, made by the first replica that asks."""
    return StatsBoard.options(  # type: ignore[attr-defined]
        name=board_name(),
        namespace=ray.get_runtime_context().namespace,
        get_if_exists=True,
        lifetime="detached",
        # It may land on a node that is lost: Ray starts it again elsewhere and the calls made
        # meanwhile wait for it (its figures come back with the replicas' next reports).
        max_restarts=-1,
        max_task_retries=-1,
    ).remote()


class StatsReporter:
    """What a model replica uses to report: best effort (figures, not answers)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.replica = serve.get_replica_context().replica_tag
        self.board: ActorHandle | None = None

    def report(self, stats: dict[str, Any]) -> None:
        try:
            if self.board is None:
                self.board = open_board()
            self.board.report.remote(self.model, self.replica, stats)
        except (ray.exceptions.RayError, ValueError) as exc:
            # The board could not be reached; the next report looks it up again.
            self.board = None
            log.warning("stats of %s not reported: %s", self.model, type(exc).__name__)


#: Figures that add up over replicas; the others (device, settings) are each replica's own.
SUMMED = ("in_flight", "pending_pairs", "refused", "busy_s", "units", "batches", "pairs")


def merge_replica_stats(reports: dict[str, dict[str, Any]], config: str) -> dict[str, Any]:
    """One model's figures from its replicas' reports that carry the ``config`` digest: sums over
    the replicas (counts, batch sizes, score-cache figures, each lane's counts), settings of the
    first (they share one config), and every replica's own figures under ``replicas``."""
    replicas = {r: stats for r, stats in reports.items() if stats.get("config") == config}
    merged: dict[str, Any] = {}
    for stats in replicas.values():
        for key, value in stats.items():
            merged.setdefault(key, value)
    for key in SUMMED:
        merged[key] = sum(r.get(key, 0) for r in replicas.values())
    sizes: dict[str, int] = {}
    for stats in replicas.values():
        for size, count in stats.get("sizes", {}).items():
            sizes[size] = sizes.get(size, 0) + count
    merged["sizes"] = dict(sorted(sizes.items(), key=lambda kv: int(kv[0])))
    caches = [r["cache"] for r in replicas.values() if "cache" in r]
    if caches:
        merged["cache"] = {key: sum(c[key] for c in caches) for key in caches[0]}
    lanes = [r["lanes"] for r in replicas.values() if "lanes" in r]
    if lanes:
        merged["lanes"] = {
            lane: {key: sum(r[lane][key] for r in lanes) for key in figures}
            for lane, figures in lanes[0].items()
        }
    merged["replicas"] = replicas
    return merged

"""One batch of whole queries scored by the service's engine, and its output written once.

The engine is the one the service's model replica runs (``LocalModelBackend``): the same family
steps, runtime, windows and ``max_length``. A batch's pairs (every query's, windows included) go
through it together, cut by its token budget, the next chunk tokenized while the model runs the
current one; each query's scores are then ranked on their own, so ranks are right whatever the
batch holds.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rerank_core.backends.local import LocalModelBackend
from rerank_core.types import top_n_of
from rerank_core.windows import best_per_document

#: A part's columns and their types.
SCHEMA = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("score", pa.float64()),
        ("raw_score", pa.float64()),
        ("rank", pa.int32()),
        ("model", pa.string()),
        ("runtime", pa.string()),
    ]
)
#: The output's columns, in order.
COLUMNS = tuple(SCHEMA.names)


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """A batch's output columns (``COLUMNS``) and its size."""

    columns: dict[str, list[Any]]
    queries: int
    pairs: int


def score_queries(engine: LocalModelBackend, queries: Sequence[dict[str, Any]]) -> ScoredBatch:
    """Score ``queries`` (``{query_id, query, candidates: [[doc_id, text], ...]}``) as one batch:
    each candidate's relevance and raw score (its best window's where windows apply) and its rank
    within its query (1 is best; ties keep input order: the service's own sort)."""
    pairs: list[tuple[str, str]] = []
    spans: list[tuple[int, int, list[int]]] = []
    for query in queries:
        texts, owners = engine.windows_for([text for _, text in query["candidates"]])
        spans.append((len(pairs), len(texts), owners))
        pairs += [(query["query"], text) for text in texts]
    raw = asyncio.run(engine.score_pairs_timed(pairs)).raw if pairs else []
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    model, runtime = engine.config.model, engine.config.runtime
    for query, (start, count, owners) in zip(queries, spans, strict=True):
        candidates = query["candidates"]
        best = best_per_document(raw[start : start + count], owners, len(candidates))
        scored = engine.scored(best)
        rank = {item.index: r for r, item in enumerate(top_n_of(scored, None), start=1)}
        for i, item in enumerate(scored):
            columns["query_id"].append(query["query_id"])
            columns["doc_id"].append(candidates[i][0])
            columns["score"].append(item.score)
            columns["raw_score"].append(item.raw_score)
            columns["rank"].append(rank[i])
            columns["model"].append(model)
            columns["runtime"].append(runtime)
    return ScoredBatch(columns, len(queries), sum(len(q["candidates"]) for q in queries))


def part_path(output: Path, shard: int) -> Path:
    """Where batch ``shard``'s output lies once written."""
    return output / "parts" / f"part-{shard:06d}.parquet"


def write_part(output: Path, shard: int, columns: dict[str, list[Any]]) -> Path:
    """Write a batch's output as one Parquet file, atomically: a file of a unique temporary name,
    renamed into place, so a job killed while writing leaves no part that looks done."""
    final = part_path(output, shard)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(pa.table({name: columns[name] for name in COLUMNS}, schema=SCHEMA), temporary)
    os.replace(temporary, final)
    return final

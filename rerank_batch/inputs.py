"""Readers of a batch job's input, each row checked: good queries out, bad rows with their reason.

Three layouts, told apart by the files given and by the first row:
- **queries**, one row per query: ``{query_id, query, candidates: [{doc_id, text}, ...]}`` (the
  layout of ``trec-dl20/candidates.jsonl``; ``qid`` and ``docid`` are read as the same fields);
- **pairs**, one row per pair: ``{query_id, query, doc_id, text}``; a query's rows need not be
  adjacent;
- a **TREC run** (``qid Q0 docid rank score tag``) with a BEIR-style ``corpus.jsonl`` (``_id``,
  ``title``, ``text``) and ``queries.jsonl`` (``_id``, ``text``).
The first two are read from JSONL or Parquet (by the file's suffix). A row is numbered by its line
(JSONL, run file) or its position from 1 (Parquet), so an error names where to look.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The layouts ``read_input`` tells apart.
LAYOUTS = ("queries", "pairs", "trec")


class InputError(ValueError):
    """An input file cannot be read at all (missing, not JSONL or Parquet): the job cannot start."""


@dataclass(slots=True)
class Query:
    """One query to rerank: its candidates as (doc_id, text) in input order, and where it was
    read (the first row of it)."""

    query_id: str
    query: str
    candidates: list[tuple[str, str]]
    line: int

    @property
    def pairs(self) -> int:
        return len(self.candidates)

    def to_json(self) -> dict[str, Any]:
        return {"query_id": self.query_id, "query": self.query, "candidates": self.candidates}


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row left out of the job: its file, line, query id where it has one, and why."""

    source: str
    line: int
    reason: str
    query_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "query_id": self.query_id, "reason": self.reason}


@dataclass(slots=True)
class Input:
    """What a job reads: the good queries in input order and the rows left out."""

    layout: str
    queries: list[Query] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)

    @property
    def pairs(self) -> int:
        return sum(q.pairs for q in self.queries)


class _Bad(Exception):
    """A row's reason to be left out (raised by the field checks, caught per row)."""

    def __init__(self, reason: str, query_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.query_id = query_id


def _id(row: Mapping[str, Any], names: tuple[str, ...], what: str) -> str:
    """An id field (under any of ``names``): a non-empty string, or an integer read as one."""
    for name in names:
        if name in row and row[name] is not None:
            value = row[name]
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise _Bad(f"{name} must be a string, not {type(value).__name__}")
            value = str(value).strip()
            if not value:
                raise _Bad(f"{name} is empty")
            return value
    raise _Bad(f"no {what} ({' or '.join(names)})")


def _text(row: Mapping[str, Any], name: str, query_id: str | None) -> str:
    value = row.get(name)
    if not isinstance(value, str):
        shown = "missing" if value is None else f"a {type(value).__name__}"
        raise _Bad(f"{name} must be a string, is {shown}", query_id)
    if not value.strip():
        raise _Bad(f"{name} is empty", query_id)
    return value


def _query_row(row: Mapping[str, Any], line: int) -> Query:
    query_id = _id(row, ("query_id", "qid"), "query id")
    query = _text(row, "query", query_id)
    candidates = row.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        raise _Bad("no candidates (a non-empty list is needed)", query_id)
    seen: set[str] = set()
    pairs = []
    for i, candidate in enumerate(candidates):
        if not isinstance(candidate, Mapping):
            raise _Bad(f"candidates[{i}] is not an object", query_id)
        try:
            doc_id = _id(candidate, ("doc_id", "docid"), "doc id")
            text = _text(candidate, "text", query_id)
        except _Bad as exc:
            raise _Bad(f"candidates[{i}]: {exc.reason}", query_id) from None
        if doc_id in seen:
            raise _Bad(f"candidates[{i}]: doc id {doc_id!r} repeats", query_id)
        seen.add(doc_id)
        pairs.append((doc_id, text))
    return Query(query_id, query, pairs, line)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text file, blank lines skipped."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def _json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed row) of a JSONL file, blank lines skipped; a line that is not JSON
    comes out as a ``_Bad``."""
    for number, line in _lines(path):
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, _Bad(f"not JSON ({exc.msg})")


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path} as Parquet: {exc}") from None
    number = 0
    for batch in source.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _rows(path: Path) -> Iterator[tuple[int, Any]]:
    return _parquet_rows(path) if path.suffix.lower() in (".parquet", ".pq") else _json_rows(path)


def _layout_of(row: Mapping[str, Any]) -> str:
    return "queries" if "candidates" in row else "pairs"


def read_rows(path: str | Path) -> Input:
    """A file of query rows or of pair rows (the layout told from its first object)."""
    path = Path(path)
    source = str(path)
    found: Input | None = None
    bad: list[BadRow] = []
    by_id: dict[str, Query] = {}
    docs: dict[str, set[str]] = {}
    for line, row in _rows(path):
        try:
            if isinstance(row, _Bad):
                raise row
            if not isinstance(row, Mapping):
                raise _Bad("not a JSON object")
            if found is None:
                found = Input(_layout_of(row))
            if found.layout == "queries":
                query = _query_row(row, line)
                if query.query_id in by_id:
                    first = by_id[query.query_id].line
                    raise _Bad(f"query id {query.query_id!r} repeats (first at line {first})", query.query_id)
                by_id[query.query_id] = query
                found.queries.append(query)
            else:
                _add_pair(row, line, found, by_id, docs)
        except _Bad as exc:
            bad.append(BadRow(source, line, exc.reason, exc.query_id))
    if found is None:
        found = Input("queries")
    found.bad = bad
    return found


def _add_pair(
    row: Mapping[str, Any], line: int, into: Input, by_id: dict[str, Query], docs: dict[str, set[str]]
) -> None:
    if "candidates" in row:
        raise _Bad("a query row in a file of pair rows")
    query_id = _id(row, ("query_id", "qid"), "query id")
    query = _text(row, "query", query_id)
    doc_id = _id(row, ("doc_id", "docid"), "doc id")
    text = _text(row, "text", query_id)
    known = by_id.get(query_id)
    if known is None:
        known = by_id[query_id] = Query(query_id, query, [], line)
        docs[query_id] = set()
        into.queries.append(known)
    elif known.query != query:
        raise _Bad(f"query text differs from line {known.line}'s for query id {query_id!r}", query_id)
    if doc_id in docs[query_id]:
        raise _Bad(f"doc id {doc_id!r} repeats for query id {query_id!r}", query_id)
    docs[query_id].add(doc_id)
    known.candidates.append((doc_id, text))


def _beir_texts(path: Path, with_title: bool) -> dict[str, str]:
    """``_id`` -> text of a BEIR corpus or queries file (a corpus's title before its text)."""
    texts: dict[str, str] = {}
    for line, row in _json_rows(path):
        if isinstance(row, _Bad) or not isinstance(row, Mapping) or "_id" not in row:
            raise InputError(f"{path}:{line}: expected a JSON object with _id and text")
        # BEIR's convention for rerankers: the title, then the text.
        text = str(row.get("text") or "").strip()
        title = str(row.get("title") or "").strip() if with_title else ""
        texts[str(row["_id"])] = f"{title} {text}" if title else text
    return texts


def read_trec(run: str | Path, corpus: str | Path, queries: str | Path) -> Input:
    """A TREC run's (query, candidate) pairs with texts from a BEIR corpus and queries file;
    candidates in run order (by score, then rank, as trec_eval orders them)."""
    run = Path(run)
    texts = _beir_texts(Path(corpus), with_title=True)
    asked = _beir_texts(Path(queries), with_title=False)
    found = Input("trec")
    by_id: dict[str, Query] = {}
    order: dict[str, list[tuple[float, int, str, str]]] = {}
    seen: dict[str, set[str]] = {}
    for line, raw in _lines(run):
        parts = raw.split()
        try:
            if len(parts) != 6:
                raise _Bad("expected 6 columns (qid Q0 docid rank score tag)")
            qid, _, doc_id, rank, score, _ = parts
            try:
                key = (-float(score), int(rank))
            except ValueError:
                raise _Bad("rank or score is not a number", qid) from None
            if qid not in asked:
                raise _Bad(f"query id {qid!r} is not in {queries}", qid)
            if doc_id not in texts:
                raise _Bad(f"doc id {doc_id!r} is not in {corpus}", qid)
            if not texts[doc_id].strip():
                raise _Bad(f"doc id {doc_id!r} has no text in {corpus}", qid)
            if qid not in by_id:
                by_id[qid] = Query(qid, asked[qid], [], line)
                found.queries.append(by_id[qid])
            if doc_id in seen.setdefault(qid, set()):
                raise _Bad(f"doc id {doc_id!r} repeats for query id {qid!r}", qid)
            seen[qid].add(doc_id)
            order.setdefault(qid, []).append((*key, doc_id, texts[doc_id]))
        except _Bad as exc:
            found.bad.append(BadRow(str(run), line, exc.reason, exc.query_id))
    for qid, entries in order.items():
        entries.sort(key=lambda e: (e[0], e[1]))
        by_id[qid].candidates = [(doc_id, text) for _, _, doc_id, text in entries]
    return found


def read_input(
    path: str | Path, corpus: str | Path | None = None, queries: str | Path | None = None
) -> Input:
    """The job's input: a TREC run with ``corpus`` and ``queries``, else a file of query or pair
    rows. Raises ``InputError`` when a file cannot be read at all."""
    if (corpus is None) != (queries is None):
        raise InputError("a TREC run needs both a corpus and a queries file")
    if not Path(path).is_file():
        raise InputError(f"input {path} is not a file")
    if corpus is not None and queries is not None:
        return read_trec(path, corpus, queries)
    return read_rows(path)

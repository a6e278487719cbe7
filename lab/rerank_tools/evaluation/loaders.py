"""Readers of relevance datasets in their two layouts, and of TREC run and qrels files.

- Self-contained: ``candidates.jsonl`` (one ``{"qid", "query", "candidates": [{"docid", "text",
  "score"?}]}`` a line, candidates in first-stage order) with TREC qrels (``qid 0 docid rel``).
- BEIR: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``),
  ``qrels/test.tsv`` (header, then ``query-id corpus-id score``) and a TREC run file
  (``qid Q0 docid rank score tag``) giving each query's first-stage candidates.

Either way the result is an ``EvalDataset``: queries with their candidates in first-stage order
(at most ``top_k`` each) and the qrels.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: qid -> docid -> graded relevance.
Qrels = dict[str, dict[str, int]]
#: qid -> docids in rank order.
Run = dict[str, list[str]]

#: Datasets ``--dataset`` knows, with their layout and files under ``--data-dir``.
KNOWN_DATASETS = ("trec-dl20", "scifact")


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A first-stage candidate: its id, its text, and the first-stage score where given."""

    docid: str
    text: str
    score: float | None = None


@dataclass(frozen=True, slots=True)
class EvalQuery:
    """A query and its candidates in first-stage order."""

    qid: str
    query: str
    candidates: list[Candidate]


@dataclass(slots=True)
class EvalDataset:
    """Queries with candidates, and the qrels that judge them."""

    name: str
    queries: list[EvalQuery]
    qrels: Qrels = field(default_factory=dict)

    def first_stage_run(self) -> Run:
        """The input order of every query's candidates, as a run."""
        return {q.qid: [c.docid for c in q.candidates] for q in self.queries}

    @property
    def pairs(self) -> int:
        """Number of (query, candidate) pairs."""
        return sum(len(q.candidates) for q in self.queries)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    for number, line in _lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}:{number}: expected a JSON object")
        yield number, obj


def read_qrels(path: str | Path) -> Qrels:
    """Read TREC qrels (``qid iter docid rel``) or BEIR qrels (``query-id corpus-id score``, a
    header line first, tab-separated); the layout is told from the number of columns."""
    path = Path(path)
    qrels: Qrels = {}
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) == 4:
            qid, _, docid, rel = parts
        elif len(parts) == 3:
            qid, docid, rel = parts
        else:
            raise DatasetError(f"{path}:{number}: expected 3 (BEIR) or 4 (TREC) columns")
        try:
            grade = int(float(rel))
        except ValueError:
            if number == 1:
                continue  # BEIR's header line
            raise DatasetError(f"{path}:{number}: relevance {rel!r} is not a number") from None
        qrels.setdefault(qid, {})[docid] = grade
    if not qrels:
        raise DatasetError(f"{path}: no judgments")
    return qrels


def read_trec_run(path: str | Path, top_k: int | None = None) -> dict[str, list[tuple[str, float]]]:
    """Read a TREC run (``qid Q0 docid rank score tag``): each query's (docid, score), best first
    (by score, then rank, as trec_eval orders them), cut to ``top_k``."""
    path = Path(path)
    rows: dict[str, list[tuple[float, int, str]]] = {}
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 6:
            raise DatasetError(f"{path}:{number}: expected 6 columns (qid Q0 docid rank score tag)")
        qid, _, docid, rank, score, _ = parts
        try:
            rows.setdefault(qid, []).append((float(score), int(rank), docid))
        except ValueError:
            raise DatasetError(f"{path}:{number}: rank or score is not a number") from None
    run = {}
    for qid, entries in rows.items():
        entries.sort(key=lambda e: (-e[0], e[1]))
        run[qid] = [(docid, score) for score, _, docid in entries[:top_k]]
    return run


def write_trec_run(path: str | Path, ranked: Mapping[str, Iterable[tuple[str, float]]], tag: str) -> None:
    """Write ``qid -> [(docid, score), ...]`` (best first) as a TREC run file."""
    with Path(path).open("w", encoding="utf-8") as handle:
        for qid, docs in ranked.items():
            for rank, (docid, score) in enumerate(docs, start=1):
                handle.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")


def read_candidates(path: str | Path, top_k: int | None = None) -> list[EvalQuery]:
    """Read a candidates JSONL file: each line's query and its first ``top_k`` candidates."""
    path = Path(path)
    queries = []
    for number, obj in _jsonl(path):
        try:
            candidates = [
                Candidate(
                    docid=str(c["docid"]),
                    text=str(c["text"]),
                    score=None if c.get("score") is None else float(c["score"]),
                )
                for c in obj["candidates"]
            ]
            queries.append(EvalQuery(str(obj["qid"]), str(obj["query"]), candidates[:top_k]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path}:{number}: bad candidates entry ({exc!r})") from None
    return queries


def load_candidates(
    candidates_path: str | Path,
    qrels_path: str | Path,
    top_k: int | None = None,
    name: str | None = None,
) -> EvalDataset:
    """The self-contained layout: candidates JSONL (first-stage order) + qrels."""
    path = Path(candidates_path)
    return EvalDataset(name or path.parent.name, read_candidates(path, top_k), read_qrels(qrels_path))


def _beir_text(obj: Mapping[str, object]) -> str:
    # BEIR's convention for rerankers: the title, then the text.
    title = str(obj.get("title") or "").strip()
    text = str(obj.get("text") or "").strip()
    return f"{title} {text}" if title else text


def read_beir_corpus(path: str | Path, wanted: set[str] | None = None) -> dict[str, str]:
    """A BEIR corpus: docid -> title and text (only the ``wanted`` documents, when given)."""
    corpus = {}
    for _, obj in _jsonl(Path(path)):
        docid = str(obj.get("_id"))
        if wanted is None or docid in wanted:
            corpus[docid] = _beir_text(obj)
    return corpus


def read_beir_queries(path: str | Path) -> dict[str, str]:
    """BEIR queries: qid -> text."""
    path = Path(path)
    queries = {}
    for number, obj in _jsonl(path):
        if "_id" not in obj or "text" not in obj:
            raise DatasetError(f"{path}:{number}: a query needs '_id' and 'text'")
        queries[str(obj["_id"])] = str(obj["text"])
    return queries


def load_beir(
    corpus_path: str | Path,
    queries_path: str | Path,
    qrels_path: str | Path,
    run_path: str | Path,
    top_k: int | None = 100,
    name: str | None = None,
) -> EvalDataset:
    """The BEIR layout: the run file's top ``top_k`` per query are the candidates; only queries
    that are both in the run and in the qrels are kept (BEIR's test split)."""
    qrels = read_qrels(qrels_path)
    run = read_trec_run(run_path, top_k)
    query_text = read_beir_queries(queries_path)
    wanted = {docid for qid, docs in run.items() if qid in qrels for docid, _ in docs}
    corpus = read_beir_corpus(corpus_path, wanted)
    queries = []
    for qid, docs in run.items():
        if qid not in qrels:
            continue
        if qid not in query_text:
            raise DatasetError(f"{queries_path}: query {qid!r} of the run is missing")
        missing = [d for d, _ in docs if d not in corpus]
        if missing:
            raise DatasetError(f"{corpus_path}: documents {missing[:3]} of query {qid!r} are missing")
        candidates = [Candidate(d, corpus[d], s) for d, s in docs]
        queries.append(EvalQuery(qid, query_text[qid], candidates))
    return EvalDataset(name or Path(corpus_path).parent.name, queries, qrels)


def load_named(name: str, data_dir: str | Path, top_k: int | None = 100) -> EvalDataset:
    """A dataset of ``KNOWN_DATASETS`` from its folder under ``data_dir`` (``../shared/data``)."""
    root = Path(data_dir) / name
    if name == "trec-dl20":
        return load_candidates(root / "candidates.jsonl", root / "qrels.txt", top_k, name)
    if name == "scifact":
        return load_beir(
            root / "corpus.jsonl",
            root / "queries.jsonl",
            root / "qrels" / "test.tsv",
            root / "bm25-top100.run",
            top_k,
            name,
        )
    raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS)}")

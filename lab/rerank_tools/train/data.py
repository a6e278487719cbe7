"""Training examples from a relevance dataset: a query-level train/dev split, teacher-labelled pairs
for distillation, and judged pairs with hard negatives from the first-stage candidates."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rerank_tools.evaluation.loaders import EvalDataset, EvalQuery, Qrels

#: Scores (query, text) pairs: the teacher of the distillation stage.
PairTeacher = Callable[[Sequence[tuple[str, str]]], list[float]]


@dataclass(frozen=True, slots=True)
class Pair:
    """One training example: a query, a passage and its target score."""

    query: str
    text: str
    label: float


@dataclass(frozen=True, slots=True)
class Split:
    """Queries to train on and held-out queries to pick the best checkpoint on."""

    train: list[EvalQuery]
    dev: list[EvalQuery]


def split_by_query(dataset: EvalDataset, dev_fraction: float, seed: int) -> Split:
    """A seeded split of the judged queries: ``dev_fraction`` of them (at least one) held out.
    Queries without any judgment teach nothing and are dropped."""
    judged = [q for q in dataset.queries if dataset.qrels.get(q.qid)]
    if len(judged) < 2:
        raise ValueError(f"dataset {dataset.name!r} has {len(judged)} judged queries; need at least 2")
    order = list(judged)
    random.Random(seed).shuffle(order)
    n_dev = min(len(order) - 1, max(1, round(len(order) * dev_fraction)))
    return Split(train=order[n_dev:], dev=order[:n_dev])


def distillation_pairs(
    queries: Sequence[EvalQuery],
    teacher: PairTeacher,
    other_negatives: int,
    seed: int,
    per_query: bool = False,
) -> list[Pair]:
    """Every candidate of every query labelled with the teacher's score, plus ``other_negatives``
    candidates of other queries per query (easy negatives, also teacher-scored), shuffled.

    ``per_query``: each query's labels are standardised by the mean and standard deviation of the
    teacher's scores on its own candidates, so the labels carry the order within a query and
    nothing of the offset between queries."""
    rng = random.Random(seed)
    pool = [(q.qid, c.text) for q in queries for c in q.candidates]
    texts: list[tuple[str, str]] = []
    spans: list[tuple[int, int, int]] = []  # per query: first pair, end of its own, end of all
    for q in queries:
        start = len(texts)
        texts += [(q.query, c.text) for c in q.candidates]
        own_end = len(texts)
        others = [text for qid, text in pool if qid != q.qid]
        texts += [(q.query, t) for t in rng.sample(others, min(other_negatives, len(others)))]
        spans.append((start, own_end, len(texts)))
    scores = list(teacher(texts))
    if per_query:
        for start, own_end, end in spans:
            own = scores[start:own_end]
            if not own:
                continue
            mean = sum(own) / len(own)
            std = (sum((x - mean) ** 2 for x in own) / len(own)) ** 0.5 or 1.0
            scores[start:end] = [(x - mean) / std for x in scores[start:end]]
    pairs = [Pair(query, text, float(s)) for (query, text), s in zip(texts, scores, strict=True)]
    rng.shuffle(pairs)
    return pairs


def judged_pairs(
    queries: Sequence[EvalQuery], qrels: Qrels, max_grade: int, negatives_per_positive: int, seed: int
) -> list[Pair]:
    """Judged candidates with graded labels ``rel / max_grade`` in [0, 1]. Every relevant
    candidate is kept; the negatives are the judged-irrelevant candidates and then the unjudged ones
    (hard negatives: the first stage ranked them high), at most ``negatives_per_positive`` per
    relevant one. Shuffled."""
    rng = random.Random(seed)
    pairs: list[Pair] = []
    for q in queries:
        judged = qrels.get(q.qid, {})
        positives = [c for c in q.candidates if judged.get(c.docid, 0) > 0]
        negatives = [c for c in q.candidates if judged.get(c.docid) == 0]
        unjudged = [c for c in q.candidates if c.docid not in judged]
        rng.shuffle(negatives)
        rng.shuffle(unjudged)
        budget = max(1, len(positives)) * negatives_per_positive
        pairs += [Pair(q.query, c.text, judged[c.docid] / max_grade) for c in positives]
        pairs += [Pair(q.query, c.text, 0.0) for c in (negatives + unjudged)[:budget]]
    rng.shuffle(pairs)
    return pairs

"""Training examples from a relevance dataset: a query-level train/dev split, teacher-labelled pairs
for distillation, and judged pairs with hard negatives from the first-stage candidates."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rerank_tools.evaluation.loaders import Candidate, EvalDataset, EvalQuery, Qrels

#: Scores (query, text) pairs: the teacher of the distillation stage.
PairTeacher = Callable[[Sequence[tuple[str, str]]], list[float]]
#: For each query, the indices of its nearest passages of a pool: ``retrieve(queries, pool, k)``.
Retriever = Callable[[Sequence[str], Sequence[str], int], list[list[int]]]


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
        texts += [(q.query, t) for t in _others(pool, q.qid, other_negatives, rng)]
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


def _others(pool: Sequence[tuple[str, str]], qid: str, k: int, rng: random.Random) -> list[str]:
    """Up to ``k`` distinct pool entries of queries other than ``qid``, by rejection sampling (the
    pool can hold tens of thousands of pseudo-queries' candidates)."""
    if sum(1 for owner, _ in pool if owner != qid) <= k:
        return [text for owner, text in pool if owner != qid]
    picked: dict[int, str] = {}
    while len(picked) < k:
        i = rng.randrange(len(pool))
        if pool[i][0] != qid:
            picked.setdefault(i, pool[i][1])
    return list(picked.values())


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


def crop_queries(
    passages: Sequence[str], n: int, seed: int, words: tuple[int, int] = (3, 8)
) -> list[tuple[int, str]]:
    """``n`` pseudo-queries, each a random span of ``words`` consecutive words of a random passage
    (independent cropping, as unsupervised retrievers train on), with the index of its passage.
    They cost no judgments and no generator model; the teacher labels their candidates."""
    rng = random.Random(seed)
    found: list[tuple[int, str]] = []
    usable = [i for i, p in enumerate(passages) if len(p.split()) >= words[0]]
    if not usable:
        return found
    for _ in range(n):
        source = rng.choice(usable)
        tokens = passages[source].split()
        length = min(len(tokens), rng.randint(*words))
        start = rng.randrange(len(tokens) - length + 1)
        found.append((source, " ".join(tokens[start : start + length]).strip(".,;:!?\"'()")))
    return found


def pseudo_queries(
    queries: Sequence[EvalQuery], n: int, top_k: int, retrieve: Retriever, seed: int
) -> list[EvalQuery]:
    """``n`` cropped pseudo-queries over the passages of ``queries``' candidates (only those: a
    held-out query's passages never leak into training), each with its ``top_k`` nearest passages
    of that pool by ``retrieve`` as candidates, for the teacher to label."""
    pool: dict[str, Candidate] = {}
    for q in queries:
        for c in q.candidates:
            pool.setdefault(c.text, c)
    texts = list(pool)
    crops = crop_queries(texts, n, seed)
    if not crops:
        return []
    nearest = retrieve([query for _, query in crops], texts, top_k)
    return [
        EvalQuery(f"pseudo-{i}", query, [pool[texts[j]] for j in found])
        for i, ((_, query), found) in enumerate(zip(crops, nearest, strict=True))
    ]

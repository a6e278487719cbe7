"""A small relevance dataset over the tiny models' topics, and a start model that must improve.

``write_topic_dataset`` writes both layouts ``rerank-train`` reads (candidates JSONL + TREC qrels,
and BEIR corpus/queries/qrels + run); in every query the relevant candidates come last in the
first-stage order. ``inverted_cross_encoder`` copies the tiny cross-encoder with its classifier's
sign flipped, so it ranks the documents about the query's topic last: training on the judgments
must raise its dev nDCG@10.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.tiny_models import TOPICS, _sample_doc

QUERIES = 16
RELEVANT = 2
IRRELEVANT = 6


def write_topic_dataset(root: Path, seed: int = 7) -> Path:
    """Write the dataset under ``root`` (created) and return ``root``."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = sorted(TOPICS)
    rows, qrels, corpus, queries, run = [], [], [], [], []
    for n in range(QUERIES):
        qid, topic = f"q{n}", names[n % len(names)]
        query = " ".join(rng.sample(TOPICS[topic], 2))
        others = [t for t in names if t != topic]
        docs = [_sample_doc(rng, rng.choice(others), rng.randint(5, 12)) for _ in range(IRRELEVANT)]
        docs += [_sample_doc(rng, topic, rng.randint(5, 12)) for _ in range(RELEVANT)]
        candidates = []
        for i, text in enumerate(docs):
            docid, rel = f"{qid}-d{i}", int(i >= IRRELEVANT)
            candidates.append({"docid": docid, "text": text, "score": float(len(docs) - i)})
            qrels.append(f"{qid} 0 {docid} {rel}")
            corpus.append({"_id": docid, "title": "", "text": text})
            run.append(f"{qid} Q0 {docid} {i + 1} {len(docs) - i} first")
        rows.append({"qid": qid, "query": query, "candidates": candidates})
        queries.append({"_id": qid, "text": query})
    (root / "candidates.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "qrels.txt").write_text("\n".join(qrels) + "\n")
    (root / "corpus.jsonl").write_text("".join(json.dumps(c) + "\n" for c in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "run.trec").write_text("\n".join(run) + "\n")
    return root


def inverted_cross_encoder(tiny_dir: Path, target: Path) -> Path:
    """The tiny cross-encoder with its classifier negated, saved to ``target``."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(str(tiny_dir))
    with torch.no_grad():
        model.classifier.weight.neg_()
        model.classifier.bias.neg_()
    model.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(str(tiny_dir)).save_pretrained(str(target))
    return target


def train_args(data: Path, start: Path, output: Path, *extra: str) -> list[str]:
    """``rerank-train`` arguments for the tiny dataset: judgments only, sized for the tiny model."""
    return [
        "--candidates", str(data / "candidates.jsonl"),
        "--qrels", str(data / "qrels.txt"),
        "--model", str(start),
        "--output-dir", str(output),
        "--recipe", "judgments",
        "--dev-fraction", "0.25",
        "--max-length", "64",
        "--batch-size", "8",
        "--judgment-lr", "3e-3",
        "--judgment-epochs", "6",
        "--eval-every", "5",
        "--patience", "50",
        "--max-minutes", "5",
        "--no-progress",
        *extra,
    ]  # fmt: skip
